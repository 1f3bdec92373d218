"""Reads `notes.mid` with mido: notes of every named track, in ticks and in seconds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mido

from . import EvalError

DRUM_CHANNEL = 9  # 0-based: General MIDI channel 10


@dataclasses.dataclass
class MidiNote:
    start: float  # seconds
    end: float
    pitch: int
    velocity: int
    start_tick: int
    channel: int


@dataclasses.dataclass
class MidiFile:
    ticks_per_beat: int
    tempi: list[tuple[int, int]]  # (tick, microseconds per beat)
    tracks: dict[str, list[MidiNote]]  # by track name, in file order

    def tempo_bpm(self) -> float:
        """The first tempo of the file (the product writes one)."""
        return 60_000_000 / self.tempi[0][1]

    def track(self, name: str) -> list[MidiNote]:
        return self.tracks.get(name, [])


def _tick_to_seconds(tempi: list[tuple[int, int]], tpb: int):
    # piecewise-linear map built once from the tempo changes
    bounds = []  # (tick, seconds at tick, us per beat)
    sec = 0.0
    prev_tick, prev_us = 0, 500_000  # MIDI default tempo 120 bpm until the first Set Tempo
    for tick, us in tempi:
        sec += (tick - prev_tick) * prev_us / 1e6 / tpb
        bounds.append((tick, sec, us))
        prev_tick, prev_us = tick, us
    if not bounds or bounds[0][0] != 0:
        bounds.insert(0, (0, 0.0, 500_000))

    def conv(tick: int) -> float:
        lo = 0
        for i, b in enumerate(bounds):
            if b[0] <= tick:
                lo = i
            else:
                break
        t0, s0, us = bounds[lo]
        return s0 + (tick - t0) * us / 1e6 / tpb

    return conv


def read_midi(path: str | Path) -> MidiFile:
    """Parses a Standard MIDI File; tracks are keyed by their `track_name` (unnamed: `track<i>`)."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path}: no such MIDI file (was `undertone score` run into this folder?)")
    try:
        mf = mido.MidiFile(str(path))
    except Exception as e:  # mido raises several types for a bad file
        raise EvalError(f"{path}: not a readable MIDI file ({e}); re-run `undertone score`") from e
    tpb = mf.ticks_per_beat
    tempi = []
    for tr in mf.tracks:
        tick = 0
        for msg in tr:
            tick += msg.time
            if msg.type == "set_tempo":
                tempi.append((tick, msg.tempo))
    tempi.sort()
    if not tempi:
        tempi = [(0, 500_000)]
    conv = _tick_to_seconds(tempi, tpb)
    tracks: dict[str, list[MidiNote]] = {}
    for i, tr in enumerate(mf.tracks):
        name = None
        tick = 0
        open_notes: dict[tuple[int, int], list[tuple[int, int]]] = {}
        notes: list[MidiNote] = []
        for msg in tr:
            tick += msg.time
            if msg.type == "track_name" and name is None:
                name = msg.name
            elif msg.type == "note_on" and msg.velocity > 0:
                open_notes.setdefault((msg.channel, msg.note), []).append((tick, msg.velocity))
            elif msg.type == "note_off" or (msg.type == "note_on" and msg.velocity == 0):
                stack = open_notes.get((msg.channel, msg.note))
                if stack:
                    on_tick, vel = stack.pop(0)
                    notes.append(MidiNote(conv(on_tick), conv(tick), msg.note, vel, on_tick, msg.channel))
        for (ch, pitch), stack in open_notes.items():  # notes never released end at the track's end
            for on_tick, vel in stack:
                notes.append(MidiNote(conv(on_tick), conv(tick), pitch, vel, on_tick, ch))
        if not notes and name is None:
            continue  # conductor track
        notes.sort(key=lambda n: (n.start_tick, n.pitch))
        key = name if name is not None else f"track{i}"
        tracks.setdefault(key, []).extend(notes)
    return MidiFile(ticks_per_beat=tpb, tempi=tempi, tracks=tracks)

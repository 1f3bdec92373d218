"""Builds small `undertone score`-shaped output folders with known properties.

Synthetic on purpose (see STYLE.md): each input isolates a property the harness
must measure, so the expected figures are known exactly:

* video: 12 s, 160x120, 24 fps; a smooth sinusoid texture panned at a chosen speed
  per bar (ranked like the melody's notes per bar) and a hard cut to a different
  texture; with `warp`, the input cut sits at 5.75 s and the warped `scored.mp4`
  moves it onto the downbeat at 6.0 s (rates 0.958 and 1.042);
* notes.mid: 120 BPM, six 4/4 bars, melody with [2, 3, 8, 6, 10, 4] notes per bar,
  one velocity per bar following saliency, 11 notes on beats 1/3 of which one is
  not a chord tone, 33 notes of which one (F#) is outside C major; a `chords` track;
* music.wav: sine chord pads plus a kick on every beat (one accented kick inside
  bar 1), normalised to -16 LUFS; optionally a click at the section join (6.0 s),
  or extra length.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mido
import numpy as np
import pyloudnorm
import soundfile as sf

FPS = 24
W, H = 160, 120
TEMPO = 120.0
BAR_S = 2.0
BARS = 6
DURATION = BARS * BAR_S
SR = 48000
# px per frame of the pan in each bar, and the melody notes per bar: same ranks.
BAR_SPEED = [0.5, 1.0, 3.0, 2.0, 4.0, 1.5]
BAR_NOTES = [2, 3, 8, 6, 10, 4]
SALIENCY = [0.1, 0.5, 0.3, 0.9, 0.7, 0.2]
VELOCITY = [40, 80, 60, 110, 100, 50]
CHORDS = ["C", "G", "Am", "F", "C", "G"]
CHORD_PITCHES = {"C": [48, 52, 55], "G": [43, 47, 50], "Am": [45, 48, 52], "F": [41, 45, 48]}
# C major scale degrees available to the melody (C4..C6)
SCALE = [60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79, 81, 83, 84]
SECTION_BAR = 3  # the cut's bar: a new section starts at 6.0 s
PLAIN_CUT_S = 6.0
WARP_CUT_S = 5.75
WARPS = [
    {"input_start": 0.0, "input_end": WARP_CUT_S, "output_start": 0.0, "output_end": 6.0, "rate": WARP_CUT_S / 6.0},
    {"input_start": WARP_CUT_S, "input_end": DURATION, "output_start": 6.0, "output_end": DURATION,
     "rate": (DURATION - WARP_CUT_S) / 6.0},
]
TPB = 480
KICK_CLICK = 0.1  # level of the kick beater noise


def _texture(seed: int):
    rng = np.random.default_rng(seed)
    fx = rng.uniform(0.01, 0.05, 6)
    fy = rng.uniform(0.01, 0.05, 6)
    ph = rng.uniform(0, 2 * np.pi, 6)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    base = 128 if seed % 2 == 0 else 70

    def frame(offset: float) -> np.ndarray:
        v = sum(np.sin(2 * np.pi * (fx[k] * (xx - offset) + fy[k] * yy) + ph[k]) for k in range(6))
        return np.clip(base + 18 * v, 0, 255).astype(np.uint8)

    return frame


def _encode(path: Path, frames: list[np.ndarray]) -> None:
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{W}x{H}", "-r", str(FPS),
           "-i", "-", "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)


def input_frames(cut_s: float, bar_in_bounds: list[float]) -> list[np.ndarray]:
    """Frames of the input: bar k's speed applies on input time [bounds[k], bounds[k+1])."""
    a, b = _texture(2), _texture(5)
    out, x = [], 0.0
    for i in range(int(DURATION * FPS)):
        t = i / FPS
        k = min(int(np.searchsorted(bar_in_bounds, t, side="right")) - 1, BARS - 1)
        x += BAR_SPEED[k]
        out.append((a if t < cut_s - 1e-9 else b)(x))
    return out


def to_input(t_out: float, warp: bool) -> float:
    if not warp:
        return t_out
    for w in WARPS:
        if w["output_start"] <= t_out <= w["output_end"]:
            return w["input_start"] + (t_out - w["output_start"]) * w["rate"]
    return t_out


def write_midi(path: Path) -> None:
    mf = mido.MidiFile(type=1, ticks_per_beat=TPB)
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(TEMPO), time=0),
                                mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0)])
    mf.tracks.append(conductor)
    melody, chords = [], []
    bar_ticks = 4 * TPB
    for k in range(BARS):
        chord = CHORDS[k]
        tones = [p for p in SCALE if p % 12 in {q % 12 for q in CHORD_PITCHES[chord]}]
        n = BAR_NOTES[k]
        for j in range(n):
            pos = j * bar_ticks // n
            strong = pos in (0, 2 * TPB)
            pitch = tones[(j + k) % len(tones)] if strong else SCALE[(3 * j + k) % len(SCALE)]
            if k == 2 and pos == 2 * TPB:
                pitch = 74  # D over Am: in the key, not a chord tone (the one strong-beat miss)
            if k == 4 and j == 1:
                pitch = 66  # F#: outside C major and not in the C chord (the one out-of-key note)
            dur = bar_ticks // n
            melody.append((k * bar_ticks + pos, dur, pitch, VELOCITY[k]))
        for p in CHORD_PITCHES[chord]:
            chords.append((k * bar_ticks, bar_ticks, p, 70))
    for name, ch, notes in (("melody", 0, melody), ("chords", 1, chords)):
        evs = []
        for t, d, p, v in notes:
            evs.append((t, 1, mido.Message("note_on", channel=ch, note=p, velocity=v)))
            evs.append((t + d, 0, mido.Message("note_off", channel=ch, note=p, velocity=0)))
        evs.sort(key=lambda e: (e[0], e[1]))
        tr = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)])
        last = 0
        for t, _, m in evs:
            tr.append(m.copy(time=t - last))
            last = t
        mf.tracks.append(tr)
    mf.save(str(path))


def music(click_at_join: bool = False, extra_s: float = 0.0) -> np.ndarray:
    n = int((DURATION + extra_s) * SR)
    t = np.arange(n) / SR
    y = np.zeros(n)
    freq = lambda p: 440.0 * 2 ** ((p - 69) / 12)  # noqa: E731
    for k in range(BARS):
        s, e = int(k * BAR_S * SR), min(int((k + 1) * BAR_S * SR), n)
        env = np.ones(e - s)
        ramp = int(0.010 * SR)  # 10 ms fades: chord changes without clicks
        env[:ramp] = np.linspace(0, 1, ramp)
        env[-ramp:] = np.linspace(1, 0, ramp)
        for p in CHORD_PITCHES[CHORDS[k]]:
            y[s:e] += 0.12 * env * np.sin(2 * np.pi * freq(p + 12) * t[s:e])
    beat = 60.0 / TEMPO
    klen = int(0.25 * SR)
    kt = np.arange(klen) / SR
    kick = np.sin(2 * np.pi * (50 * kt + 60 * (1 - np.exp(-kt * 30)) / 30)) * np.exp(-kt * 18)
    kick[: int(0.002 * SR)] *= np.linspace(0, 1, int(0.002 * SR))
    # the beater's click: 5 ms of decaying noise, as real kicks have
    click = np.random.default_rng(7).standard_normal(int(0.005 * SR)) * np.exp(-np.arange(int(0.005 * SR)) / (0.001 * SR))
    kick[: len(click)] += KICK_CLICK * click
    for b in range(int(DURATION / beat)):
        s = int(b * beat * SR)
        gain = 0.45 if b == 2 else 0.25  # beat 3 of bar 0: the accent, the loudest event inside the template
        e = min(s + klen, n)
        y[s:e] += gain * kick[: e - s]
    stereo = np.stack([y, y], axis=1)
    meter = pyloudnorm.Meter(SR)
    stereo = pyloudnorm.normalize.loudness(stereo, meter.integrated_loudness(stereo), -16.0)
    if click_at_join:
        j = int(SECTION_BAR * BAR_S * SR)
        stereo[j, :] += 0.6
    return stereo


def build(d: Path, warp: bool = False, click_at_join: bool = False, extra_s: float = 0.0) -> Path:
    """Writes input.mp4, notes.mid, music.wav, scored.mp4 and report.json into `d`."""
    d.mkdir(parents=True, exist_ok=True)
    cut_in = WARP_CUT_S if warp else PLAIN_CUT_S
    bounds = [to_input(k * BAR_S, warp) for k in range(BARS)]
    frames = input_frames(cut_in, bounds)
    _encode(d / "input.mp4", frames)
    if warp:
        out = [frames[min(int(round(to_input(j / FPS, True) * FPS)), len(frames) - 1)] for j in range(len(frames))]
        _encode(d / "scored.mp4", out)
    else:
        _encode(d / "scored.mp4", frames)
    write_midi(d / "notes.mid")
    sf.write(str(d / "music.wav"), music(click_at_join, extra_s), SR, subtype="PCM_16")
    beat = 60.0 / TEMPO
    report = {
        "version": 1,
        "input": {"path": "input.mp4", "duration": DURATION, "fps": FPS, "width": W, "height": H},
        "output": {"duration": DURATION, "sample_rate": SR, "warped": warp},
        "tempo_bpm": TEMPO,
        "beats": [i * beat for i in range(int(DURATION / beat))],
        "downbeats": [k * BAR_S for k in range(BARS)],
        "bars": [
            {"index": k, "start": k * BAR_S, "end": (k + 1) * BAR_S, "speed": BAR_SPEED[k] / 100,
             "saliency": SALIENCY[k], "density_class": 0, "strength_class": 0, "energy": 0.5,
             "section_start": k in (0, SECTION_BAR), "section": int(k >= SECTION_BAR), "chord": CHORDS[k],
             "note_count": BAR_NOTES[k], "mean_velocity": VELOCITY[k],
             "template_id": "fixture-A" if k < SECTION_BAR else "fixture-B", "layer": 1, "style": {}}
            for k in range(BARS)
        ],
        "cuts": [{"t": 6.0, "t_input": cut_in, "kind": "cut", "confidence": 1.0}],
        "warps": WARPS if warp else [],
        "timings": {"total": 1.0},
        "preferences": {"seed": 0},
    }
    (d / "report.json").write_text(json.dumps(report))
    return d

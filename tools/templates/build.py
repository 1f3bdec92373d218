"""Builds undertone's template library (`templates/`) from the project's own patterns.

For every style x progression x intensity layer (patterns.py) it writes the 4-bar
loop as MIDI (`templates/midi/`), renders three loops with fluidsynth and the
FluidR3_GM SoundFont at 48 kHz, keeps the middle loop (so the loop starts with the
tails of its own last bar and repeats seamlessly), normalises its loudness per
layer, encodes it as Ogg Vorbis (`templates/audio/`), and writes `templates/index.json`
and `templates/LICENSES`.

usage: build.py --font FluidR3_GM.sf2 --out templates/ [--work DIR] [--only STYLE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pyloudnorm
import soundfile

import patterns as P

SAMPLE_RATE = 48_000
CHANNELS = 2
RENDER_LOOPS = 3  # render 3 loops and keep the middle one: it starts with the previous loop's tails
LEAD_IN_BARS = 1  # silent bar before the loops: room for parts played early (Part.lead_ms)
LAYER_LUFS = [-23.0, -21.5, -20.0]  # backing loudness per layer: sparse is quieter, and the melody sits on top
PEAK_CEILING = 0.89  # -1 dBFS sample peak per template, headroom for the melody mix
VORBIS_QUALITY = "4"  # libvorbis -q 4 (~128 kbit/s stereo): transparent for backing, keeps the folder small
STYLE_ENERGY = {"ambient": 0.1, "lofi": 0.25, "acoustic": 0.4, "pop": 0.55, "cinematic": 0.55}
LAYER_ENERGY_STEP = 0.2


def template_id(style: str, prog: str, layer: int) -> str:
    return f"{style}_{prog}_l{layer}"


def write_midi(path: Path, parts: list[P.Part], tempo: float, loops: int, tail_bars: int = 0, lead_in_bars: int = 0) -> None:
    """One part per track; with `lead_in_bars` (rendering), parts with `lead_ms` are
    played that much early (the lead-in bar makes room for the first bar's notes)."""
    mid = mido.MidiFile(type=1, ticks_per_beat=P.TPB)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo), time=0))
    conductor.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    end = (lead_in_bars + loops * P.BARS + tail_bars) * P.BAR
    conductor.append(mido.MetaMessage("end_of_track", time=end))
    mid.tracks.append(conductor)
    for part in parts:
        tr = mido.MidiTrack()
        tr.append(mido.MetaMessage("track_name", name=part.name, time=0))
        if part.channel != P.DRUMS:
            tr.append(mido.Message("program_change", channel=part.channel, program=part.program, time=0))
        evs = []
        lead = int(round(part.lead_ms / 1000.0 * tempo / 60.0 * P.TPB)) if lead_in_bars else 0
        for k in range(loops):
            for t, d, p, v in part.notes:
                t0 = t + k * P.BARS * P.BAR + lead_in_bars * P.BAR - lead
                evs.append((t0 + d, 0, mido.Message("note_off", channel=part.channel, note=p, velocity=0)))
                evs.append((t0, 1, mido.Message("note_on", channel=part.channel, note=p, velocity=v)))
        evs.sort(key=lambda e: (e[0], e[1]))
        last = 0
        for t, _, msg in evs:
            tr.append(msg.copy(time=t - last))
            last = t
        tr.append(mido.MetaMessage("end_of_track", time=max(0, end - last)))
        mid.tracks.append(tr)
    mid.save(path)


def render(font: Path, midi: Path, wav: Path) -> np.ndarray:
    subprocess.run(
        ["fluidsynth", "-ni", "-q", "-r", str(SAMPLE_RATE), "-g", "0.4", "-O", "float", "-F", str(wav), str(font), str(midi)],
        check=True, stdout=subprocess.DEVNULL,
    )
    audio, sr = soundfile.read(wav, dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE or audio.shape[1] != CHANNELS:
        sys.exit(f"fluidsynth wrote {wav} at {sr} Hz x {audio.shape[1]}; expected {SAMPLE_RATE} x {CHANNELS}")
    return audio


def bar_frames(tempo: float) -> int:
    frames = P.BAR / P.TPB * 60.0 / tempo * SAMPLE_RATE
    if abs(frames - round(frames)) > 1e-6:
        sys.exit(f"tempo {tempo} gives {frames} samples per bar; pick one that gives a whole number")
    return int(round(frames))


def encode(audio: np.ndarray, wav: Path, ogg: Path) -> None:
    soundfile.write(wav, audio, SAMPLE_RATE, subtype="FLOAT")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-c:a", "libvorbis", "-q:a", VORBIS_QUALITY, "-map_metadata", "-1", str(ogg)],
        check=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--font", type=Path, default=Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path(__file__).parent / "work")
    ap.add_argument("--only", help="build only this style (for trying patterns)")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    (args.out / "audio").mkdir(parents=True, exist_ok=True)
    (args.out / "midi").mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    meter = pyloudnorm.Meter(SAMPLE_RATE)
    entries = []
    for style in P.STYLES:
        if args.only and style.name != args.only:
            continue
        frames = bar_frames(style.tempo)
        for prog_id, tonic, mode, chords in P.PROGRESSIONS:
            for layer in range(P.LAYERS):
                tid = template_id(style.name, prog_id, layer)
                rng = random.Random(f"{args.seed}:{tid}")
                parts = style.make(chords, layer, rng)
                midi_rel = f"midi/{tid}.mid"
                write_midi(args.out / midi_rel, parts, style.tempo, loops=1)
                render_mid = args.work / f"{tid}.render.mid"
                write_midi(render_mid, parts, style.tempo, loops=RENDER_LOOPS, tail_bars=1, lead_in_bars=LEAD_IN_BARS)
                audio = render(args.font, render_mid, args.work / f"{tid}.render.wav")[LEAD_IN_BARS * frames :]
                loop_frames = P.BARS * frames
                # File = [first bar from silence][seamless loop]: a section starts with the
                # fresh bar (no ghost tails of the loop's own last bar), then continues into
                # the loop at its second bar.
                loop = np.concatenate([audio[:frames], audio[loop_frames : 2 * loop_frames]])
                if loop.shape[0] != loop_frames + frames:
                    sys.exit(f"{tid}: render too short ({audio.shape[0]} frames)")
                lufs = meter.integrated_loudness(loop[frames:])
                gain = 10 ** ((LAYER_LUFS[layer] - lufs) / 20)
                peak = float(np.max(np.abs(loop))) * gain
                if peak > PEAK_CEILING:
                    gain *= PEAK_CEILING / peak
                loop *= gain
                audio_rel = f"audio/{tid}.ogg"
                encode(loop, args.work / f"{tid}.loop.wav", args.out / audio_rel)
                sha = hashlib.sha256((args.out / audio_rel).read_bytes()).hexdigest()
                mood = style.mood_major if mode == "major" else style.mood_minor
                entries.append({
                    "id": tid,
                    "style": style.name,
                    "mood": mood,
                    "energy": round(min(1.0, STYLE_ENERGY[style.name] + LAYER_ENERGY_STEP * layer), 3),
                    "tempo_bpm": style.tempo,
                    "key": {"tonic": "C D EF G A B".index(tonic), "mode": mode},
                    "progression": prog_id,
                    "chords": [{"root": c.root, "quality": c.quality} for c in chords],
                    "bars": P.BARS,
                    "layer": layer,
                    "instruments": [f"{p.name}:{'drums' if p.channel == P.DRUMS else p.program}" for p in parts],
                    "audio": audio_rel,
                    "midi": midi_rel,
                    "frames": loop_frames,
                    "intro_frames": frames,
                    "sha256": sha,
                })
                print(f"{tid}: {lufs:.1f} LUFS, gain {20 * np.log10(gain):+.1f} dB, "
                      f"{(args.out / audio_rel).stat().st_size / 1e3:.0f} kB", flush=True)
    index = {
        "format": 1,
        "sample_rate": SAMPLE_RATE,
        "channels": CHANNELS,
        "beats_per_bar": 4,
        "ticks_per_beat": P.TPB,
        "templates": entries,
    }
    (args.out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    write_licenses(args.out, entries)


def write_licenses(out: Path, entries: list[dict]) -> None:
    lines = [
        "# Source and licence of every file in templates/",
        "#",
        "# audio/*.ogg  rendered by tools/templates/build.py from the MIDI pattern of the same id, with",
        "#              FluidR3_GM.sf2 (Debian package fluid-soundfont-gm; Frank Wen, MIT licence, below)",
        "#              through fluidsynth; the patterns are undertone's own work (MIT).",
        "# midi/*.mid   undertone's own patterns, written by tools/templates/patterns.py (MIT).",
        "# melody.sf2   cut from FluidR3_GM.sf2 by tools/templates/sfcut/cut.mjs (MIT, Frank Wen).",
        "# index.json   written by tools/templates/build.py (MIT).",
        "#",
        "# file | source | licence",
        "index.json | tools/templates/build.py | MIT (undertone)",
        "melody.sf2 | FluidR3_GM.sf2 cut by tools/templates/sfcut/cut.mjs | MIT (Frank Wen, FluidR3)",
    ]
    for e in entries:
        lines.append(f"{e['midi']} | tools/templates/patterns.py ({e['style']}, {e['progression']}, layer {e['layer']}) | MIT (undertone)")
        lines.append(f"{e['audio']} | {e['midi']} rendered with FluidR3_GM.sf2 by fluidsynth | MIT (Frank Wen, FluidR3; pattern: undertone)")
    lines += [
        "",
        "# FluidR3_GM licence (from Debian's /usr/share/doc/fluid-soundfont-gm/copyright):",
        "#   Copyright (c) 2000-2002, 2008 Frank Wen; Copyright (c) 2008 Toby Smithe",
        "#   \"I hereby release Fluid under the MIT license, as described in COPYING.\"",
        "#   Permission is hereby granted, free of charge, to any person obtaining a copy of this software and",
        "#   associated documentation files (the \"Software\"), to deal in the Software without restriction,",
        "#   including without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense,",
        "#   and/or sell copies of the Software, and to permit persons to whom the Software is furnished to do so,",
        "#   subject to the following conditions: The above copyright notice and this permission notice shall be",
        "#   included in all copies or substantial portions of the Software.",
        "#   THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT",
        "#   LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO",
        "#   EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER",
        "#   IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR",
        "#   THE USE OR OTHER DEALINGS IN THE SOFTWARE.",
    ]
    (out / "LICENSES").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

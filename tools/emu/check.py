"""Host-side checks of one board VM run (tools/emu/run-vm.sh OUT).

Passes when the firmware ran for the whole time and exited cleanly, it captured frames from
the V4L2 camera (its report), it had no underruns, stalls or reopens of the sound device,
and the WAV that virtio-sound wrote on
the host is music: not silence, not a tone (energy spread over several octave bands), with
a beat librosa can track.

    .venv/bin/python tools/emu/check.py OUT [--min-seconds S] [--json FILE]
"""

import argparse
import json
import sys
from pathlib import Path

import librosa
import numpy as np

# Below this RMS the WAV is silence (a 16-bit file's dither sits near -90 dBFS; quiet music
# is still above -40 dBFS).
SILENCE_DBFS = -50.0
# Octave bands (Hz) in which music has energy: bass, low mids, mids, presence, air.
BANDS = [(60, 250), (250, 500), (500, 1000), (1000, 2000), (2000, 4000), (4000, 8000)]
# A band counts when within this many dB of the strongest one; a pure tone fills one band
# and leaves the rest 40-60 dB below.
BAND_WITHIN_DB = 30.0
MIN_BANDS = 4
# Beat tracking: at least this many beats per 10 s (one bar of 4/4 at 60 BPM = 4 s),
# and a tempo in the range music is written in.
MIN_BEATS_PER_10S = 8
TEMPO_RANGE = (50.0, 220.0)


def band_levels_db(y, sr):
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1.0 / sr)
    out = []
    for lo, hi in BANDS:
        e = spec[(freqs >= lo) & (freqs < hi)].sum()
        out.append(10 * np.log10(e + 1e-30))
    return out


def check(out: Path, min_seconds: float):
    results = {}
    failures = []

    rc = (out / "rc").read_text().strip() if (out / "rc").exists() else "missing"
    results["firmware_exit_status"] = rc
    if rc != "0":
        failures.append(f"the firmware exited with status {rc} (see {out/'undertone.log'})")

    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    if report is None:
        failures.append(f"no report at {out/'report.json'}")
    else:
        results["source"] = report.get("source")
        results["audio_device"] = report.get("audio_device")
        results["run_seconds"] = report.get("duration")
        results["frames_seen"] = report.get("frames_seen")
        results["fps"] = report.get("fps")
        audio = report.get("audio", {})
        results["underruns"] = audio.get("underruns")
        results["stalls"] = audio.get("stalls")
        results["reopens"] = audio.get("reopens")
        results["starved"] = audio.get("starved")
        results["alsa_period_frames"] = audio.get("period_frames")
        results["alsa_buffer_frames"] = audio.get("buffer_frames")
        results["headroom_min_s"] = report.get("headroom_min")
        results["stopped_by"] = report.get("stopped_by")
        if not str(report.get("source", "")).startswith("v4l2:"):
            failures.append(f"the source was {report.get('source')}, not a V4L2 device")
        if not report.get("frames_seen"):
            failures.append("no frames were captured from the camera")
        if report.get("stopped_by") != "duration":
            failures.append(f"the run stopped by {report.get('stopped_by')}, not at its duration")
        if audio.get("underruns", 1) != 0:
            failures.append(f"{audio.get('underruns')} underruns")
        # A stall (EIO: the device took nothing within the kernel's wait) and a reopen are
        # gaps in the music like an underrun; a report without the counter counts as one.
        for key in ("stalls", "reopens"):
            if audio.get(key, 1) != 0:
                failures.append(f"{audio.get(key)} {key} of the sound device")

    # Host CPU the emulated CPUs got (run-vm.sh): informative, not a check. The share is time
    # on a host core over time wanted (on a core or waiting for one).
    host = out / "host_cpu.json"
    if host.exists():
        h = json.loads(host.read_text())
        shares = []
        for pair in filter(None, h.get("vcpu_schedstat_ns", "").split(";")):
            run, wait = (int(x) for x in pair.split())
            shares.append(round(run / max(run + wait, 1), 2))
        results["vcpu_host_share"] = shares
        results["host_loadavg"] = h.get("loadavg")

    wav = out / "music.wav"
    if not wav.exists() or wav.stat().st_size <= 44:
        failures.append(f"no audio reached the host WAV {wav}")
        return results, failures
    y, sr = librosa.load(str(wav), sr=None, mono=True)
    # The card plays silence while the firmware starts; judge the part with sound.
    frame = sr // 10
    rms = np.array([np.sqrt(np.mean(y[i : i + frame] ** 2)) for i in range(0, len(y) - frame, frame)])
    loud = np.where(20 * np.log10(rms + 1e-12) > SILENCE_DBFS)[0]
    results["wav_seconds"] = round(len(y) / sr, 2)
    results["wav_rate"] = sr
    if len(loud) == 0:
        failures.append("the WAV is silent")
        return results, failures
    seg = y[loud[0] * frame : (loud[-1] + 1) * frame]
    results["music_seconds"] = round(len(seg) / sr, 2)
    results["rms_dbfs"] = round(float(20 * np.log10(np.sqrt(np.mean(seg**2)) + 1e-12)), 1)
    if len(seg) / sr < min_seconds:
        failures.append(f"only {len(seg)/sr:.1f} s of sound (want >= {min_seconds})")
    levels = band_levels_db(seg, sr)
    top = max(levels)
    results["band_levels_db_rel"] = [round(l - top, 1) for l in levels]
    nb = sum(1 for l in levels if l >= top - BAND_WITHIN_DB)
    results["bands_with_energy"] = nb
    if nb < MIN_BANDS:
        failures.append(f"energy in only {nb} of {len(BANDS)} octave bands (a tone, not music)")
    tempo, beats = librosa.beat.beat_track(y=seg, sr=sr)
    tempo = float(np.atleast_1d(tempo)[0])
    results["librosa_tempo"] = round(tempo, 1)
    results["librosa_beats"] = int(len(beats))
    want = MIN_BEATS_PER_10S * len(seg) / sr / 10
    if len(beats) < want or not (TEMPO_RANGE[0] <= tempo <= TEMPO_RANGE[1]):
        failures.append(f"librosa tracks {len(beats)} beats at {tempo:.0f} BPM (want >= {want:.0f} beats, {TEMPO_RANGE} BPM)")
    return results, failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--min-seconds", type=float, default=8.0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    results, failures = check(a.out, a.min_seconds)
    results["failures"] = failures
    text = json.dumps(results, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    if failures:
        print("board VM test: FAIL\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)
    print("board VM test: pass", file=sys.stderr)


if __name__ == "__main__":
    main()

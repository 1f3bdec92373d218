"""Measures a rendered piece (the renderer's own check; the score-level harness is
eval_score.py): WAV + MIDI written by `undertone templates render` or `undertone score`.

- tempo: librosa's beat tracker tempo vs the planned tempo (within 2 %), and the mean
  / 95th-percentile distance of its beats to the planned beat grid (within 30 ms);
- loudness: integrated LUFS (pyloudnorm), true peak (4x oversampled, scipy), clipped
  samples;
- harmony (from the MIDI): share of melody notes on strong beats (beats 1 and 3) that
  are tones of the chord the backing sounds then, share of melody notes outside the key
  (key = the backing's pitch-class profile, Krumhansl–Kessler);
- joins: spectral flux at each given join time vs the flux of the template material at
  every other beat (a join must stay within the material's own range: <= its maximum).

usage: render_metrics.py WAV --tempo BPM [--midi MID] [--joins t1,t2,...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys

import librosa
import mido
import numpy as np
import pyloudnorm
import scipy.signal
import soundfile

KK_MAJOR = [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]
KK_MINOR = [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]
CHORDS = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "7": (0, 4, 7, 10)}


def tempo_metrics(y, sr, tempo, t0=0.0):
    onset = librosa.onset.onset_strength(y=y, sr=sr)
    est, beats = librosa.beat.beat_track(onset_envelope=onset, sr=sr, start_bpm=tempo)
    est = float(np.atleast_1d(est)[0])
    bt = librosa.frames_to_time(beats, sr=sr)
    period = 60.0 / tempo
    dist = np.abs(((bt - t0) + period / 2) % period - period / 2)
    return {
        "planned_bpm": tempo,
        "librosa_bpm": est,
        "tempo_error_pct": 100.0 * abs(est - tempo) / tempo,
        "beat_offset_mean_ms": 1000.0 * float(np.mean(dist)) if len(dist) else None,
        "beat_offset_p95_ms": 1000.0 * float(np.percentile(dist, 95)) if len(dist) else None,
        "beats": int(len(bt)),
    }


def loudness_metrics(stereo, sr):
    lufs = pyloudnorm.Meter(sr).integrated_loudness(stereo)
    up = scipy.signal.resample_poly(stereo, 4, 1, axis=0)
    tp = 20 * np.log10(max(1e-12, float(np.max(np.abs(up)))))
    return {"lufs": float(lufs), "true_peak_dbtp": tp, "clipped_samples": int(np.sum(np.abs(stereo) >= 0.9999))}


def midi_notes(path):
    mid = mido.MidiFile(path)
    tpb = mid.ticks_per_beat
    tracks = {}
    for tr in mid.tracks:
        name, t, on, notes, chan = None, 0, {}, [], None
        for msg in tr:
            t += msg.time
            if msg.type == "track_name":
                name = msg.name
            elif msg.type == "note_on" and msg.velocity > 0:
                on[(msg.channel, msg.note)] = t
                chan = msg.channel
            elif msg.type in ("note_off", "note_on"):
                s = on.pop((msg.channel, msg.note), None)
                if s is not None:
                    notes.append((s / tpb, (t - s) / tpb, msg.note, msg.channel))
        if notes:
            tracks[name or f"track{len(tracks)}"] = notes
    return tracks


def best_key(hist):
    best = (-2, None)
    for mode, prof in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for tonic in range(12):
            r = np.corrcoef(hist, np.roll(prof, tonic))[0, 1]
            if r > best[0]:
                best = (r, (tonic, mode))
    tonic, mode = best[1]
    steps = (0, 2, 4, 5, 7, 9, 11) if mode == "major" else (0, 2, 3, 5, 7, 8, 10)
    return best[1], {(tonic + s) % 12 for s in steps}


def sounding_chord(backing, beat, window=1.0):
    """Best-matching chord of the backing notes sounding during the beat at `beat`
    (weighted by overlap: strums and arpeggios spread a chord over the beat)."""
    pcs = np.zeros(12)
    for s, d, p, ch in backing:
        overlap = min(s + d, beat + window) - max(s, beat)
        if overlap > 0:
            pcs[p % 12] += overlap
    if pcs.sum() == 0:
        return None
    best = None
    for root in range(12):
        for q, ivs in CHORDS.items():
            tones = {(root + i) % 12 for i in ivs}
            score = sum(pcs[t] for t in tones) - 0.5 * sum(pcs[i] for i in range(12) if i not in tones) - 0.1 * len(ivs)
            if best is None or score > best[0]:
                best = (score, tones)
    return best[1]


def harmony_metrics(tracks):
    melody = tracks.get("melody")
    if not melody:
        return {}
    backing = [n for name, ns in tracks.items() if name != "melody" for n in ns if n[3] != 9]
    hist = np.zeros(12)
    for s, d, p, ch in backing:
        hist[p % 12] += d
    key, scale = best_key(hist)
    strong = [n for n in melody if abs(n[0] - 2 * round(n[0] / 2)) < 1e-3]
    ct = 0
    for s, d, p, ch in strong:
        tones = sounding_chord(backing, s)
        ct += int(tones is not None and p % 12 in tones)
    out_key = sum(1 for n in melody if n[2] % 12 not in scale)
    return {
        "key": f"{key[0]} {key[1]}",
        "melody_notes": len(melody),
        "strong_beat_notes": len(strong),
        "strong_beat_chord_tone_pct": 100.0 * ct / max(1, len(strong)),
        "out_of_key_pct": 100.0 * out_key / max(1, len(melody)),
    }


def join_metrics(y, sr, tempo, joins, t0=0.0):
    hop = 256
    S = np.abs(librosa.stft(y, n_fft=1024, hop_length=hop))
    flux = np.sqrt(np.sum(np.maximum(0.0, np.diff(np.log1p(S), axis=1)) ** 2, axis=0))
    t = librosa.frames_to_time(np.arange(1, S.shape[1]), sr=sr, hop_length=hop)

    def peak(at):
        m = (t >= at - 0.03) & (t <= at + 0.03)
        return float(np.max(flux[m])) if m.any() else 0.0

    period = 60.0 / tempo
    beats = np.arange(t0, t[-1] - period, period)
    material = [peak(b) for b in beats if all(abs(b - j) > period for j in joins)]
    at_joins = [peak(j) for j in joins]
    hi = max(material) if material else 0.0
    return {
        "join_flux": at_joins,
        "material_flux_max": hi,
        "material_flux_p95": float(np.percentile(material, 95)) if material else 0.0,
        "joins_within_material": all(j <= hi for j in at_joins),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wav")
    ap.add_argument("--tempo", type=float, required=True)
    ap.add_argument("--midi")
    ap.add_argument("--joins", default="", help="join times in seconds, comma-separated")
    ap.add_argument("--json")
    args = ap.parse_args()
    stereo, sr = soundfile.read(args.wav, dtype="float32", always_2d=True)
    y = np.mean(stereo, axis=1)
    res = {"file": args.wav, "seconds": len(y) / sr}
    res["tempo"] = tempo_metrics(y, sr, args.tempo)
    res["loudness"] = loudness_metrics(stereo, sr)
    if args.midi:
        res["harmony"] = harmony_metrics(midi_notes(args.midi))
    joins = [float(x) for x in args.joins.split(",") if x]
    if joins:
        res["joins"] = join_metrics(y, sr, args.tempo, joins)
    text = json.dumps(res, indent=1)
    if args.json:
        open(args.json, "w").write(text + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())

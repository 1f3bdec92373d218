"""Reaction figures of a live run (tools/soak/reaction.sh): every scene cut's section change
against the budget of one beat + 100 ms, from the run's report and on the recorded audio.

    python reaction.py REPORT.json PLAYED.wav TRUTH.json

TRUTH.json lists the clip's true cut times (video seconds); empty: the report's cuts only.
The recording's sample n is the master clock's frame n (undertone records what it queues),
so report times and audio times are the same axis.

Audio check: a novelty curve (distance between the mean log-mel spectrum of the 0.3 s after
and the 0.3 s before each 10 ms step: a section change swaps template, layer and harmony,
so the spectrum moves) must peak at the section start the report gives (from 30 ms before
to 120 ms after it: a pad's attack takes a moment to move the spectrum), and the peak must
stand above the 80th percentile of the curve over the whole run. The audio reaction is
that peak's time minus the cut's; it must be within the budget too.
"""
import json
import sys

import librosa
import numpy as np

HOP = 480  # 10 ms at 48 kHz
WIN = 30  # 0.3 s each side
MATCH_S = 0.10  # a detected cut within this of a true one is that cut
PEAK_BEFORE_S = 0.03
PEAK_AFTER_S = 0.12
PEAK_PCT = 80


def novelty(wav):
    y, sr = librosa.load(wav, sr=48000, mono=True)
    S = librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=HOP, n_mels=64),
        ref=np.max,
    )
    n = S.shape[1]
    c = np.concatenate([np.zeros((S.shape[0], 1)), np.cumsum(S, axis=1)], axis=1)
    nov = np.zeros(n)
    for t in range(WIN, n - WIN):
        after = (c[:, t + WIN] - c[:, t]) / WIN
        before = (c[:, t] - c[:, t - WIN]) / WIN
        nov[t] = np.linalg.norm(after - before) / np.sqrt(S.shape[0])
    return nov, sr / HOP


def main():
    report = json.load(open(sys.argv[1]))
    truth = json.load(open(sys.argv[3]))
    music = report["music"]
    cuts = list(music["cuts"])
    nov, rate = novelty(sys.argv[2])
    thresh = np.percentile(nov[WIN:-WIN], PEAK_PCT)
    print(
        f"run: {report['duration']:.1f} s, tempo {music['tempo_bpm']:.1f} BPM, "
        f"{music['bars_total']} bars, {music['cuts_total']} cuts detected, "
        f"underruns {report['audio']['underruns']}, first sound {report.get('first_sound_s')} s"
    )
    if truth:
        offs = [c["t"] - c["pts"] for c in cuts]
        off = float(np.median(offs)) if offs else 0.0
        missed = [t for t in truth if not any(abs(c["pts"] - t) <= MATCH_S for c in cuts)]
        extra = [c["pts"] for c in cuts if not any(abs(c["pts"] - t) <= MATCH_S for t in truth)]
        print(
            f"true cuts {len(truth)}: detected {len(truth) - len(missed)}, missed {missed}, "
            f"extra detections {extra} (video time onto master clock: +{off:.3f} s)"
        )
    print(
        f"{'pts':>7} {'cut@':>8} {'known+':>7} {'section@':>9} {'grid':>4} {'reached+':>9} "
        f"{'budget':>6} {'audio+':>7} {'pct':>4}  verdict"
    )
    ok_report = ok_audio = 0
    worst = -1e9
    for c in cuts:
        t, budget = c["t"], c["budget"]
        r = c.get("reaction")
        at = c["section_at"]
        lo, hi = int((at - PEAK_BEFORE_S) * rate), int((at + PEAK_AFTER_S) * rate) + 1
        seg = nov[max(lo, 0):hi]
        if r is None or len(seg) == 0:
            print(f"{c['pts']:7.2f} {t:8.3f}  (section not reached before the end)")
            continue
        k = int(np.argmax(seg))
        peak_t = (lo + k) / rate
        pct = float((nov[WIN:-WIN] < seg[k]).mean() * 100)
        in_budget = r <= budget + 1e-9
        at_section = seg[k] >= thresh and peak_t - t <= budget
        ok_report += in_budget
        ok_audio += at_section
        worst = max(worst, r - budget)
        print(
            f"{c['pts']:7.2f} {t:8.3f} {c['detected_at'] - t:7.3f} {c['section_at']:9.3f} "
            f"{'yes' if c['on_grid'] else 'no':>4} {r:9.3f} {budget:6.3f} {peak_t - t:7.3f} "
            f"{pct:4.0f}  {'ok' if in_budget else 'LATE'}{'' if at_section else ', no audio peak at the section'}"
        )
    n = sum(1 for c in cuts if c.get("reaction") is not None)
    print(
        f"within budget (report): {ok_report}/{n} cuts whose section was heard before the run ended; "
        f"worst reaction minus budget {worst:+.3f} s"
    )
    print(
    f"confirmed on the audio (novelty peak >= p{PEAK_PCT} at the section start, within the budget "
    f"after the cut): {ok_audio}/{n}"
)


if __name__ == "__main__":
    main()

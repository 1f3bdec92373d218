"""Writes the renderer's test melody (firmware/src/render/testdata/reel.json): the first
16 bars of a 4/4 reel from O'Neill's Music of Ireland (1850, public domain, bundled
with music21), transposed to C major, as `music::NoteSet`s on the I-V-vi-IV progression.

The tune is real; what it lacks is recorded dynamics (no ABC tune carries velocities),
so velocities follow a fixed per-bar curve (a stand-in for the saliency the planner
maps to strength) plus a metric accent: the renderer must keep those per-bar means.

usage: make_fixture.py OUT.json
"""

import json
import sys

from music21 import corpus, interval, key as m21key, pitch

TPB = 480
BAR = 4 * TPB
BARS = 16
PROG = [(0, "major"), (7, "major"), (9, "minor"), (5, "major")]  # I-V-vi-IV in C
BAR_LOUDNESS = [70, 74, 80, 86, 92, 96, 90, 84, 60, 64, 70, 78, 100, 108, 96, 88]


def find_reel():
    for path in sorted(corpus.getPaths(fileExtensions=("abc",))):
        if "oneills1850" not in str(path):
            continue
        text = open(path, encoding="latin-1").read()
        for block in text.split("\nX:")[1:]:
            flat = block.replace(" ", "")
            is_reel = "\nR:reel" in flat.lower().replace("\nr:", "\nR:")
            common_time = "\nM:C|" in flat or "\nM:4/4" in flat
            if is_reel and common_time and ("\nK:D" in flat or "\nK:G" in flat):
                yield "X:" + block


def main(out):
    from music21 import converter
    for abc in find_reel():
        score = converter.parse(abc, format="abc")
        k = score.analyze("key")
        if k.mode != "major":
            continue
        shift = interval.Interval(k.tonic, pitch.Pitch("C"))
        notes = [n for n in score.flatten().notes if n.isNote]
        if not notes:
            continue
        offset0 = notes[0].offset
        # Skip a pickup: start at the first downbeat.
        first_down = next(n.offset for n in notes if n.beat == 1.0)
        sets = []
        for b in range(BARS):
            lo, hi = first_down + 4 * b, first_down + 4 * (b + 1)
            bar_notes = []
            for n in notes:
                if lo <= n.offset < hi:
                    start = int(round((n.offset - lo) * TPB))
                    dur = int(round(float(n.quarterLength) * TPB))
                    p = n.pitch.transpose(shift).midi
                    while p < 60:
                        p += 12
                    while p > 84:
                        p -= 12
                    accent = 10 if start % (2 * TPB) == 0 else (4 if start % TPB == 0 else 0)
                    bar_notes.append({"start": start, "duration": max(60, dur), "pitch": p,
                                      "velocity": min(127, BAR_LOUDNESS[b] + accent - 5), "track": 0})
            root, q = PROG[b % 4]
            sets.append({"bar": b, "chord": {"root": root, "quality": q}, "notes": bar_notes})
        if sum(len(s["notes"]) for s in sets) < BARS * 6:
            continue
        title = score.metadata.title if score.metadata else "?"
        json.dump({"source": f"O'Neill's Music of Ireland (1850), '{title}', via music21 corpus; public domain",
                   "notes": sets}, open(out, "w"), indent=None)
        print(f"wrote {out}: {title}, {sum(len(s['notes']) for s in sets)} notes")
        return
    sys.exit("no suitable reel found")


if __name__ == "__main__":
    main(sys.argv[1])

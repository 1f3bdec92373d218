"""Parse music21's bundled public-domain corpora into raw note lists on a 4/4, 16th-note grid.

Sources (all inside the music21 10.5.1 wheel, see models/notes/README.md for licences):
  oneills1850/*.abc, airdsAirs/*.abc, ryansMammoth/*.abc, miscFolk/*.abc  (folk tunes, one melody)
  bach/bwv*.mxl                                                            (chorales, four voices)
Essen and Palestrina are deliberately not read (non-commercial / rights reserved).

Meters: 4/4, C, 2/2 (C|) are taken as written (a 2/2 bar is a 4/4 bar of the same length);
2/4 bars are paired into one 4/4 bar (aligned on the first full 2/4 bar); every other meter
(6/8 jigs, 9/8, 3/4 airs, ...) is dropped: the product only plays 4/4 on a 16th grid and a
compound meter does not map onto that grid without triplets.

Output: tools/train/work/notes/raw.json with one record per piece:
  {id, source, bars, sections: [bar...], notes: [[track, onset16, dur16, pitch], ...]}
where onset16 counts 16th notes from the first 4/4 bar (bar = onset16 // 16).

Usage: python tools/train/notes/parse.py [--jobs 2] [--limit N]
"""

import argparse
import glob
import json
import logging
import os
import sys
import time
from multiprocessing import Pool

import music21
from music21 import bar as m21bar
from music21 import converter, expressions

log = logging.getLogger("parse")

# Quarter lengths in one 4/4 bar of the product.
BAR_QL = 4.0
# 16th-note steps per quarter note (the grid the product plays on).
STEPS_PER_QL = 4
# Longest duration token, in 16ths (two bars); longer notes are clipped to it.
MAX_DUR16 = 32
# Meters accepted as written; 2/4 is paired into 4/4.
FOUR_FOUR = {"4/4", "2/2"}
TWO_FOUR = {"2/4"}
# A folk tune needs at least this many 4/4 bars to be worth learning from.
MIN_BARS = 4
# Voice order for chorales: track 0 = melody (soprano), 1..3 = the lower voices.
VOICE_NAMES = ["soprano", "alto", "tenor", "bass"]

FOLK_DIRS = ["oneills1850", "airdsAirs", "ryansMammoth", "miscFolk"]


def corpus_root() -> str:
    return os.path.join(os.path.dirname(music21.__file__), "corpus")


def list_tasks():
    root = corpus_root()
    tasks = []
    for d in FOLK_DIRS:
        for f in sorted(glob.glob(os.path.join(root, d, "*.abc"))):
            tasks.append((d, f))
    for f in sorted(glob.glob(os.path.join(root, "bach", "bwv*.mxl"))):
        tasks.append(("bach", f))
    return tasks


def is_section_barline(b) -> bool:
    if b is None:
        return False
    if isinstance(b, m21bar.Repeat):
        return True
    return b.type in ("double", "final", "heavy-light", "light-heavy", "heavy-heavy", "light-light")


def choose_parts(score):
    parts = list(score.parts)
    if len(parts) == 1:
        return parts
    named = {}
    for p in parts:
        name = (p.partName or p.id or "").lower()
        for v in VOICE_NAMES:
            if v in name and v not in named:
                named[v] = p
    if len(named) == 4:
        return [named[v] for v in VOICE_NAMES]
    if len(parts) == 4:
        return parts
    return None


def piece_to_record(score, source: str, pid: str):
    """Returns (record, None) or (None, reason)."""
    # music21's ABC reader marks some pickup bars with a 1/16, 1/8 or 1/4 meter: not real meters.
    meters = {ts.ratioString for ts in score.recurse().getElementsByClass("TimeSignature") if ts.numerator != 1}
    if not meters:
        return None, "no meter"
    if meters <= FOUR_FOUR:
        unit = 4.0
    elif meters <= TWO_FOUR:
        unit = 2.0
    else:
        return None, "meter " + ",".join(sorted(meters))
    parts = choose_parts(score)
    if parts is None:
        return None, "parts"
    notes = []
    sections = {0}
    shift = None
    last_end = 0.0
    realigned = [0]
    for track, part in enumerate(parts):
        part = part.stripTies()
        measures = list(part.getElementsByClass("Measure"))
        if not measures:
            return None, "no measures"
        if shift is None:
            # Align grid bars on the first full measure.
            first_full = next((m for m in measures if abs(m.duration.quarterLength - unit) < 1e-6), None)
            if first_full is None:
                return None, "no full measure"
            shift = (-first_full.offset) % BAR_QL
            if unit == 2.0:
                # the first full 2/4 bar starts a 4/4 bar
                shift = (-first_full.offset) % BAR_QL
        prev_right = None
        for m in measures:
            start = m.offset + shift
            if track == 0:
                if abs(m.duration.quarterLength - unit) < 1e-6 and abs((start / unit) - round(start / unit)) > 1e-6:
                    # A full bar off the grid (a transcription's short bar before it): move
                    # the rest of the tune forward to the next grid line, leaving a rest.
                    if track != 0 or len(parts) != 1:
                        return None, "misaligned bars"
                    delta = (-start) % unit
                    shift += delta
                    start += delta
                    realigned[0] += 1
                if is_section_barline(prev_right) or is_section_barline(m.leftBarline):
                    sections.add(int(-(-start // BAR_QL)))
                prev_right = m.rightBarline
            for n in m.recurse().notes:
                if n.duration.isGrace or n.quarterLength <= 0:
                    continue
                onset_ql = start + n.getOffsetInHierarchy(m)
                on16 = int(round(onset_ql * STEPS_PER_QL))
                if on16 < 0:
                    continue
                dur16 = max(1, min(MAX_DUR16, int(round(n.quarterLength * STEPS_PER_QL))))
                end_ql = onset_ql + n.quarterLength
                last_end = max(last_end, end_ql)
                if track == 0 and any(isinstance(e, expressions.Fermata) for e in n.expressions):
                    sections.add(int(-(-end_ql // BAR_QL)))
                for p in n.pitches:
                    notes.append((track, on16, dur16, int(p.midi)))
    if not notes:
        return None, "empty"
    bars = int(-(-last_end // BAR_QL))
    if bars < MIN_BARS:
        return None, "short"
    notes = sorted(set(notes), key=lambda x: (x[1] // 16, x[1], x[0], -x[3]))
    sections = sorted(b for b in sections if 0 <= b < bars)
    return {"id": pid, "source": source, "bars": bars, "sections": sections, "notes": [list(x) for x in notes]}, None


def parse_task(task):
    source, path = task
    out, skipped = [], {}
    try:
        parsed = converter.parse(path)
    except Exception as e:  # a broken file in the corpus: count it and go on
        return out, {"unparseable file": 1}, path, str(e)
    scores = parsed.scores if isinstance(parsed, music21.stream.Opus) else [parsed]
    for i, sc in enumerate(scores):
        pid = f"{source}/{os.path.basename(path)}#{i}"
        try:
            rec, why = piece_to_record(sc, source, pid)
        except Exception as e:
            rec, why = None, "error " + type(e).__name__
        if rec is None:
            skipped[why] = skipped.get(why, 0) + 1
        else:
            out.append(rec)
    return out, skipped, path, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--out", default="tools/train/work/notes/raw.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    tasks = list_tasks()
    if args.limit:
        tasks = tasks[: args.limit]
    t0 = time.time()
    records, skipped = [], {}
    with Pool(args.jobs) as pool:
        for k, (recs, sk, path, err) in enumerate(pool.imap_unordered(parse_task, tasks, chunksize=4)):
            records.extend(recs)
            for key, v in sk.items():
                skipped[key] = skipped.get(key, 0) + v
            if err:
                log.warning("could not parse %s: %s", path, err)
            if k % 100 == 0:
                log.info("%d/%d files, %d pieces, %.0f s", k, len(tasks), len(records), time.time() - t0)
    records.sort(key=lambda r: r["id"])
    by_source = {}
    for r in records:
        by_source[r["source"]] = by_source.get(r["source"], 0) + 1
    summary = {"music21": music21.__version__, "kept": by_source, "skipped": skipped}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"summary": summary, "pieces": records}, f)
    log.info("kept %s; skipped %s; %.0f s", by_source, skipped, time.time() - t0)


if __name__ == "__main__":
    sys.exit(main())

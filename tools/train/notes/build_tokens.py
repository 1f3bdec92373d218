"""Turn raw.json (parse.py) into the compact token file the trainer reads.

Writes
  tools/train/work/notes/tokens.npz   rows (int16, N x N_FIELDS), piece/bar offsets, split, key shifts
  models/notes/tokens.json            the class edges (density octiles, strength quartiles), counts:
                                      the metrics script and the model card read them.
The held-out test split is every piece whose sha1(id) falls in the last TEST_PERCENT percent.

Usage: python tools/train/notes/build_tokens.py
"""

import argparse
import hashlib
import json
import logging
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import tokens as tk  # noqa: E402

log = logging.getLogger("build_tokens")

# Share of pieces held out for testing (by a stable hash of the piece id).
TEST_PERCENT = 5


def is_test(pid: str) -> bool:
    return int(hashlib.sha1(pid.encode()).hexdigest(), 16) % 100 < TEST_PERCENT


def balanced_edges(values, classes):
    """Class edges for `classes` classes of roughly equal size over values with many ties.

    A value v falls in class searchsorted(edges, v, side="left"), i.e. v <= edges[0] is class 0.
    Edges are strictly increasing values taken from the data, so no class is empty by construction
    unless the data has fewer distinct values than classes.
    """
    v = np.sort(np.asarray(values, dtype=np.float64))
    uniq = np.unique(v)
    edges = []
    for k in range(1, classes):
        e = v[min(len(v) - 1, int(math.ceil(k * len(v) / classes)) - 1)]
        if edges and e <= edges[-1]:
            above = uniq[uniq > edges[-1]]
            e = above[0] if len(above) else edges[-1]
        edges.append(float(e))
    return edges


def bar_features(piece):
    """Per bar: list of notes (track, pos, dur, pitch, s), and per-piece pitch-class histogram."""
    bars = [[] for _ in range(piece["bars"])]
    onset_count = {}
    for tr, on, dur, p in piece["notes"]:
        onset_count[on] = onset_count.get(on, 0) + 1
    pc = np.zeros(12)
    for tr, on, dur, p in piece["notes"]:
        b, pos = divmod(on, tk.STEPS_PER_BAR)
        if b >= len(bars):
            continue
        s = tk.note_strength_value(pos, dur, onset_count[on])
        bars[b].append((tr, pos, dur, p, s))
        pc[p % 12] += dur
    for b in bars:
        b.sort(key=lambda n: (n[1], n[0], -n[3]))
    return bars, pc


def chord_of_bar(notes):
    w = np.zeros(12)
    for tr, pos, dur, p, s in notes:
        inside = min(dur, tk.STEPS_PER_BAR - pos)
        w[p % 12] += inside * (1.5 if pos in (0, 8) else 1.0) * (1.3 if tr == 3 else 1.0)
    return tk.estimate_chord(w)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", default="tools/train/work/notes/raw.json")
    ap.add_argument("--out", default="tools/train/work/notes/tokens.npz")
    ap.add_argument("--stats", default="models/notes/tokens.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    raw = json.load(open(args.raw))
    pieces = raw["pieces"]

    feats = [bar_features(p) for p in pieces]
    train_idx = [i for i, p in enumerate(pieces) if not is_test(p["id"])]

    # Class edges from the training split only.
    counts = np.array([len(b) for i in train_idx for b in feats[i][0]])
    dens_edges = balanced_edges(counts, tk.DENSITY_CLASSES)

    def dens_class(n):
        return int(np.searchsorted(dens_edges, n, side="left"))

    s_all = np.array([n[4] for i in train_idx for b in feats[i][0] for n in b])
    nstr_edges = balanced_edges(s_all, tk.NOTE_STRENGTH_CLASSES)

    def nstr_class(s):
        return int(np.searchsorted(nstr_edges, s, side="left"))

    per_dens = [[] for _ in range(tk.DENSITY_CLASSES)]
    for i in train_idx:
        for b in feats[i][0]:
            if b:
                per_dens[dens_class(len(b))].append(np.mean([n[4] for n in b]))
    str_edges = [balanced_edges(v, tk.STRENGTH_CLASSES) if v else [0.0, 0.0, 0.0] for v in per_dens]

    def str_class(notes):
        if not notes:
            return 0
        d = dens_class(len(notes))
        return int(np.searchsorted(str_edges[d], np.mean([n[4] for n in notes]), side="left"))

    rows, piece_off, bar_off, split, shifts, sources = [], [0], [], [], [], []
    chord_hist = np.zeros(tk.N_CHORDS, dtype=np.int64)
    dens_hist = np.zeros(tk.DENSITY_CLASSES, dtype=np.int64)
    str_hist = np.zeros(tk.STRENGTH_CLASSES, dtype=np.int64)
    for p, (bars, pc) in zip(pieces, feats):
        tonic, minor = tk.estimate_key(pc)
        shifts.append(tk.normalising_shift(tonic, minor))
        split.append(1 if is_test(p["id"]) else 0)
        sources.append(p["source"])
        sections = set(p["sections"])
        prev_chord = tk.chord_id(tonic, 1 if minor else 0)
        piece_bar_offs = []
        since = 0
        for bi, notes in enumerate(bars):
            c = chord_of_bar(notes)
            c = prev_chord if c < 0 else c
            prev_chord = c
            d, st, sec = dens_class(len(notes)), str_class(notes), 1 if bi in sections else 0
            since = 0 if sec else since + 1
            nxt = 1 if (bi + 1 in sections or bi + 1 == len(bars)) else 0
            sbar = min(since, tk.SECTION_BAR_MAX)
            chord_hist[c] += 1
            dens_hist[d] += 1
            str_hist[st] += 1
            piece_bar_offs.append(len(rows))
            ctrl = [d, st, sec, c]

            def row(typ, pos, pitch=tk.NONE_PITCH, dur=tk.NONE_DUR, ns=tk.NONE_NSTR, tr=tk.NONE_TRACK, count=0):
                return [typ, pos, *ctrl, pitch, dur, ns, tr, min(count, tk.MAX_COUNT), nxt, sbar]

            rows.append(row(tk.T_BAR, tk.NONE_POS))
            cur, count = -1, 0
            for tr, pos, dur, pitch, s in notes:
                if pos != cur:
                    rows.append(row(tk.T_POS, pos, count=count))
                    cur = pos
                rows.append(row(tk.T_NOTE, pos, pitch, dur - 1, nstr_class(s), tr, count))
                count += 1
        bar_off.append(piece_bar_offs)
        piece_off.append(len(rows))

    arr = np.array(rows, dtype=np.int16)
    flat_bars = np.array([b for bs in bar_off for b in bs], dtype=np.int64)
    bars_per_piece = np.array([len(bs) for bs in bar_off], dtype=np.int64)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    np.savez_compressed(args.out, rows=arr, piece_off=np.array(piece_off, dtype=np.int64), bar_off=flat_bars,
                        bars_per_piece=bars_per_piece, split=np.array(split, dtype=np.int8),
                        shift=np.array(shifts, dtype=np.int8))
    src_count = {}
    for s, sp in zip(sources, split):
        key = f"{s}/{'test' if sp else 'train'}"
        src_count[key] = src_count.get(key, 0) + 1
    stats = {
        "definition": "see tools/train/notes/tokens.py",
        "density_edges_notes_per_bar": dens_edges,
        "note_strength_edges": nstr_edges,
        "bar_strength_edges_by_density": str_edges,
        "pieces": src_count,
        "parse": raw["summary"],
        "tokens": {"train": int(sum(piece_off[i + 1] - piece_off[i] for i in range(len(pieces)) if not split[i])),
                   "test": int(sum(piece_off[i + 1] - piece_off[i] for i in range(len(pieces)) if split[i]))},
        "bars": int(len(flat_bars)),
        "density_class_hist": dens_hist.tolist(),
        "strength_class_hist": str_hist.tolist(),
        "chord_quality_hist": [int(chord_hist[q::4].sum()) for q in range(4)],
    }
    os.makedirs(os.path.dirname(args.stats), exist_ok=True)
    with open(args.stats, "w") as f:
        json.dump(stats, f, indent=1)
    log.info("%d rows; %s", len(arr), json.dumps(stats)[:1500])


if __name__ == "__main__":
    main()

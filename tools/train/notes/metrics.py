"""The note model's "Done when" figures, computed from MIDI files that `undertone compose` writes.

    .venv/bin/python tools/train/notes/metrics.py [--bin target/release/undertone] [--quick]

Runs `undertone compose` many times (fixed seeds), reads every MIDI file back with mido and
reports (JSON to stdout and tools/train/work/notes/eval/metrics.json):

* density: Spearman rho(requested density class, realised notes per bar) over a grid of every
  density x strength class and several seeds; share of bars whose realised class (the corpus
  octile edges in models/notes/tokens.json) is off by more than one class.
* strength: rho(requested strength class, realised strength class) where the realised class is
  computed from the notes alone (accent + length + simultaneity, see tokens.py; velocity is not
  used), and rho(requested class, mean velocity) (what the renderer plays).
* structure: at the requested section starts (bar b) against the same bars, seeds and controls
  with the flags removed (the run without `--sections-at` bars: neither the section flag at b nor
  the next-section flag at b - 1), and against the corpus' own section starts:
  - cadence before: the melody of bar b - 1 ends on a held note (its last note lasts at least a
    quarter note; the corpus: 53 % of bars before a section start, 13 % of other bars), and the
    melody note count of bar b - 1;
  - novelty after: 1 - Jaccard similarity of bar b's melody (position, pitch class) onset set
    with the union of the 4 bars before it;
  - register jump: |mean melody pitch of bar b - that of bar b - 1|.
* quality: pitch-class entropy (bits, of the 12-bin pitch-class histogram of a 16-bar piece) and
  grooving-pattern similarity (1 - Hamming distance / 16 between the onset patterns of
  consecutive bars, averaged), both as defined in muspy (Dong et al. 2020), for pieces generated
  under the controls of the held-out corpus pieces versus those pieces themselves.
* well-formedness: every note of 10,000 generated bars (varied controls, 200-bar runs that go
  through many KV-window restarts) on the 16th grid, inside its bar, 1..32 16ths long, pitch
  21..108, velocity 1..127, no duplicate note, at most 4 tracks, and the requested bar count.
"""

import argparse
import json
import math
import os
import subprocess
import sys

import mido
import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, os.path.dirname(__file__))
import tokens as tk  # noqa: E402

TPB = 480
STEP = TPB // 4
BAR = TPB * 4
# Extra `compose` arguments for every run (e.g. --no-density-guard).
EXTRA_ARGS = []
CHORD_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
QUAL_SUFFIX = ["", "m", "dim", "7"]
PROGRESSIONS = [["C", "G", "Am", "F"], ["C", "Am", "F", "G"], ["F", "C", "G", "Am"], ["Am", "F", "C", "G"],
                ["Am", "Dm", "G", "E7"]]


def chord_name(cid):
    return CHORD_NAMES[cid // 4] + QUAL_SUFFIX[cid % 4]


def read_notes(path):
    """[(tick, dur, pitch, velocity, track)] from a compose MIDI file."""
    mf = mido.MidiFile(path)
    out = []
    for ti, tr in enumerate(mf.tracks[1:]):
        t, on = 0, {}
        for m in tr:
            t += m.time
            if m.type == "note_on" and m.velocity > 0:
                on.setdefault(m.note, []).append((t, m.velocity))
            elif m.type in ("note_off", "note_on"):
                if on.get(m.note):
                    st, v = on[m.note].pop(0)
                    out.append((st, t - st, m.note, v, m.channel))
    return sorted(out)


def bars_of(notes, n_bars):
    bars = [[] for _ in range(n_bars)]
    for n in notes:
        b = n[0] // BAR
        if 0 <= b < n_bars:
            bars[b].append(n)
    return bars


class Classes:
    def __init__(self, path):
        st = json.load(open(path))
        self.dens = st["density_edges_notes_per_bar"]
        self.strn = st["bar_strength_edges_by_density"]

    def density(self, n):
        return int(np.searchsorted(self.dens, n, side="left"))

    def strength_value(self, bar):
        starts = {}
        for n in bar:
            starts[n[0]] = starts.get(n[0], 0) + 1
        s = [tk.note_strength_value((n[0] % BAR) // STEP, max(1, round(n[1] / STEP)), starts[n[0]]) for n in bar]
        return float(np.mean(s)) if s else 0.0

    def strength(self, bar):
        if not bar:
            return 0
        return int(np.searchsorted(self.strn[self.density(len(bar))], self.strength_value(bar), side="left"))


def compose(binary, out, bars, density, strength, seed, chords, sections=None):
    cmd = [binary, "compose", "--bars", str(bars), "--density", ",".join(map(str, density)),
           "--strength", ",".join(map(str, strength)), "--seed", str(seed), "--chords", ",".join(chords), "-o", out]
    if sections:
        cmd += ["--sections-at", ",".join(map(str, sections))]
    cmd += EXTRA_ARGS
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return read_notes(out)


def pc_entropy(notes):
    h = np.bincount([n[2] % 12 for n in notes], minlength=12).astype(float)
    if h.sum() == 0:
        return 0.0
    p = h[h > 0] / h.sum()
    return float(-(p * np.log2(p)).sum())


def groove(bars):
    pats = []
    for b in bars:
        v = np.zeros(16, dtype=bool)
        for n in b:
            v[(n[0] % BAR) // STEP] = True
        pats.append(v)
    if len(pats) < 2:
        return 1.0
    return float(np.mean([1 - np.logical_xor(a, b).sum() / 16 for a, b in zip(pats, pats[1:])]))


def novelty(bars, b):
    mel = lambda bar: {((n[0] % BAR) // STEP, n[2] % 12) for n in bar if n[4] == 0}  # noqa: E731
    cur = mel(bars[b])
    prev = set().union(*[mel(bars[k]) for k in range(max(0, b - 4), b)])
    if not cur and not prev:
        return 0.0
    return 1 - len(cur & prev) / len(cur | prev)


def return_to_opening(bars, b):
    """Jaccard similarity of bar b's melody (position, pitch class) set with bar 0's."""
    mel = lambda bar: {((n[0] % BAR) // STEP, n[2] % 12) for n in bar if n[4] == 0}  # noqa: E731
    x, y = mel(bars[b]), mel(bars[0])
    return len(x & y) / len(x | y) if x | y else 0.0


def register_jump(bars, b):
    """|mean melody pitch of bar b - that of bar b-1| in semitones."""
    m = lambda bar: [n[2] for n in bar if n[4] == 0]  # noqa: E731
    x, y = m(bars[b]), m(bars[b - 1])
    return abs(np.mean(x) - np.mean(y)) if x and y else 0.0


def held_final_before(bars, b):
    """1 when the melody of bar b-1 ends on a note of at least a quarter (a cadence's long note)."""
    mel = [n for n in bars[b - 1] if n[4] == 0]
    if not mel:
        return 0.0
    last = max(mel, key=lambda n: n[0])
    return float(last[1] >= 4 * STEP)


def melody_notes_before(bars, b):
    return float(sum(1 for n in bars[b - 1] if n[4] == 0))


def corpus_structure(tokens_npz):
    """The cadence measures on the held-out corpus pieces: at their section starts and elsewhere."""
    out = {"held_final_before": {"section_starts": [], "other_bars": []},
           "melody_notes_before": {"section_starts": [], "other_bars": []}}
    for ctrls, notes in heldout_pieces(tokens_npz, bars=10 ** 6, min_bars=2):
        bars = bars_of(notes, len(ctrls))
        for b in range(1, len(ctrls)):
            key = "section_starts" if ctrls[b][2] else "other_bars"
            if not any(n[4] == 0 for n in bars[b - 1]):
                continue
            out["held_final_before"][key].append(held_final_before(bars, b))
            out["melody_notes_before"][key].append(melody_notes_before(bars, b))
    return {k: {kk: float(np.mean(vv)) for kk, vv in v.items()} for k, v in out.items()}


def starts_on_downbeat(bars, b):
    return float(any(n[0] % BAR == 0 for n in bars[b]))


def heldout_pieces(tokens_npz, bars=16, min_bars=8):
    """Held-out pieces' first `bars` bars: their controls and their notes (normalised to C / Am)."""
    z = np.load(tokens_npz)
    rows, off = z["rows"], z["piece_off"]
    out = []
    for p in np.nonzero(z["split"] == 1)[0]:
        k = int(z["shift"][p])
        ctrls, notes, b, pos = [], [], -1, 0
        for r in rows[off[p]:off[p + 1]]:
            if r[tk.F_TYPE] == tk.T_BAR:
                b += 1
                if b >= bars:
                    break
                ctrls.append((int(r[tk.F_DENS]), int(r[tk.F_STR]), int(r[tk.F_SEC]), tk.transpose_chord(int(r[tk.F_CHORD]), k)))
            elif r[tk.F_TYPE] == tk.T_POS:
                pos = int(r[tk.F_POS])
            else:
                notes.append((b * BAR + pos * STEP, (int(r[tk.F_DUR]) + 1) * STEP, int(r[tk.F_PITCH]) + k, 64, int(r[tk.F_TRACK])))
        if len(ctrls) >= min_bars:
            out.append((ctrls, notes))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/undertone")
    ap.add_argument("--work", default="tools/train/work/notes/eval")
    ap.add_argument("--stats", default="models/notes/tokens.json")
    ap.add_argument("--tokens", default="tools/train/work/notes/tokens.npz")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--wellformed-bars", type=int, default=10000)
    ap.add_argument("--structure-pieces", type=int, default=40, help="32-bar pieces, each with and without flags")
    ap.add_argument("--wellformed-seed", type=int, default=9000, help="seed of the first well-formedness run")
    ap.add_argument("--only", default="density,structure,quality,wellformed")
    ap.add_argument("--no-density-guard", action="store_true", help="measure the learned density control alone")
    ap.add_argument("--model", default=None, help="ONNX note model (default: compose's, models/notes/)")
    ap.add_argument("--out", default="metrics.json")
    ap.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: compose's)")
    args = ap.parse_args()
    if args.no_density_guard:
        EXTRA_ARGS.append("--no-density-guard")
    if args.temperature:
        EXTRA_ARGS.extend(["--temperature", str(args.temperature)])
    if args.model:
        EXTRA_ARGS.extend(["--model", args.model])
    os.makedirs(args.work, exist_ok=True)
    cls = Classes(args.stats)
    res = {}
    only = args.only.split(",")
    tmp = os.path.join(args.work, f"t_{os.getpid()}.mid")

    if "density" in only:
        req_d, req_s, real_n, real_dc, real_sc, vel = [], [], [], [], [], []
        for seed in range(1, args.seeds + 1):
            for d in range(8):
                for s in range(4):
                    chords = PROGRESSIONS[(seed + d + s) % len(PROGRESSIONS)]
                    notes = compose(args.bin, tmp, 16, [d], [s], seed * 100 + d * 4 + s, chords, [0, 8])
                    for bar in bars_of(notes, 16):
                        req_d.append(d)
                        req_s.append(s)
                        real_n.append(len(bar))
                        real_dc.append(cls.density(len(bar)))
                        real_sc.append(cls.strength(bar))
                        vel.append(np.mean([n[3] for n in bar]) if bar else 0.0)
        req_d, real_dc, req_s, real_sc = map(np.array, (req_d, real_dc, req_s, real_sc))
        res["density"] = {
            "bars": len(req_d),
            "spearman_class_vs_notes_per_bar": float(spearmanr(req_d, real_n)[0]),
            "off_by_more_than_one_class": float(np.mean(np.abs(req_d - real_dc) > 1)),
            "exact_class": float(np.mean(req_d == real_dc)),
            "mean_abs_class_error_over_7": float(np.mean(np.abs(req_d - real_dc)) / 7),
            "mean_notes_per_class": [float(np.mean(np.array(real_n)[req_d == d])) for d in range(8)],
        }
        res["strength"] = {
            "spearman_class_vs_realised_class": float(spearmanr(req_s, real_sc)[0]),
            "spearman_class_vs_mean_velocity": float(spearmanr(req_s, vel)[0]),
            "exact_class": float(np.mean(req_s == real_sc)),
            "mean_realised_class_per_class": [float(np.mean(real_sc[req_s == s])) for s in range(4)],
        }
        print(json.dumps(res), flush=True)

    if "structure" in only:
        cuts = [8, 16, 24]
        measures = {"held_final_before": held_final_before, "melody_notes_before": melody_notes_before,
                    "novelty": novelty, "return_to_opening": return_to_opening, "register_jump": register_jump,
                    "starts_on_downbeat": starts_on_downbeat}
        got = {k: {"flagged": [], "flag_removed": [], "other_bars": []} for k in measures}
        for seed in range(1, args.structure_pieces + 1):
            chords = PROGRESSIONS[seed % len(PROGRESSIONS)]
            d, s = [3 + seed % 3], [1 + seed % 2]
            a = bars_of(compose(args.bin, tmp, 32, d, s, seed, chords, [0] + cuts), 32)
            b = bars_of(compose(args.bin, tmp, 32, d, s, seed, chords, [0]), 32)
            for k, f in measures.items():
                got[k]["flagged"] += [f(a, c) for c in cuts]
                got[k]["flag_removed"] += [f(b, c) for c in cuts]
                got[k]["other_bars"] += [f(a, c) for c in range(4, 31) if c not in cuts]
        res["structure"] = {"pieces": args.structure_pieces, "section_starts_at": cuts}
        for k, v in got.items():
            res["structure"][k] = {kk: float(np.mean(vv)) for kk, vv in v.items()}
        # one-sided Mann-Whitney U: flagged bars vs the same bars with the flags removed
        from scipy.stats import mannwhitneyu
        for k, alt in (("held_final_before", "greater"), ("melody_notes_before", "less"), ("novelty", "greater"),
                       ("register_jump", "greater")):
            res["structure"][k]["p_flagged_vs_removed"] = float(
                mannwhitneyu(got[k]["flagged"], got[k]["flag_removed"], alternative=alt).pvalue)
        res["structure"]["corpus_heldout"] = corpus_structure(args.tokens)
        print(json.dumps(res["structure"]), flush=True)

    if "quality" in only:
        ent_g, ent_r, gr_g, gr_r, rd, rn = [], [], [], [], [], []
        for i, (ctrls, ref_notes) in enumerate(heldout_pieces(args.tokens)):
            n = len(ctrls)
            notes = compose(args.bin, tmp, n, [c[0] for c in ctrls], [c[1] for c in ctrls], 7000 + i,
                            [chord_name(c[3]) for c in ctrls], [b for b, c in enumerate(ctrls) if c[2]])
            gb, rb = bars_of(notes, n), bars_of(ref_notes, n)
            ent_g.append(pc_entropy(notes))
            ent_r.append(pc_entropy(ref_notes))
            gr_g.append(groove(gb))
            gr_r.append(groove(rb))
            rd += [c[0] for c in ctrls]
            rn += [len(b) for b in gb]
        res["quality"] = {
            "pieces": len(ent_g),
            "pitch_class_entropy": {"generated": float(np.mean(ent_g)), "heldout": float(np.mean(ent_r)),
                                    "rel_diff": float(abs(np.mean(ent_g) - np.mean(ent_r)) / np.mean(ent_r))},
            "grooving_similarity": {"generated": float(np.mean(gr_g)), "heldout": float(np.mean(gr_r)),
                                    "rel_diff": float(abs(np.mean(gr_g) - np.mean(gr_r)) / np.mean(gr_r))},
            "density_spearman_under_corpus_controls": float(spearmanr(rd, rn)[0]),
        }
        print(json.dumps(res["quality"]), flush=True)

    if "wellformed" in only:
        rng = np.random.default_rng(args.wellformed_seed)
        bars_done, bad, runs = 0, [], 0
        while bars_done < args.wellformed_bars:
            n = min(200, args.wellformed_bars - bars_done)
            dens = rng.integers(0, 8, size=n).tolist()
            strn = rng.integers(0, 4, size=n).tolist()
            chords = PROGRESSIONS[runs % len(PROGRESSIONS)]
            notes = compose(args.bin, tmp, n, dens, strn, args.wellformed_seed + runs, chords, list(range(0, n, 8)))
            seen = set()
            for t, dur, p, v, tr in notes:
                key = (t, p, tr)
                ok = (t % STEP == 0 and STEP <= dur <= 32 * STEP and dur % STEP == 0 and 21 <= p <= 108
                      and 1 <= v <= 127 and tr < 4 and t < n * BAR and key not in seen)
                seen.add(key)
                if not ok:
                    bad.append((runs, t, dur, p, v, tr))
            bars_done += n
            runs += 1
        res["wellformed"] = {"bars": bars_done, "runs": runs, "ill_formed_notes": len(bad), "examples": bad[:5]}
        print(json.dumps(res["wellformed"]), flush=True)

    out = os.path.join(args.work, args.out)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

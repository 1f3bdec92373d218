"""Compound-word tokens for the note model, shared by the tokeniser, training, export and metrics.

A piece is a sequence of compound tokens, one row of `N_FIELDS` small integers each:

    BAR  POS NOTE NOTE ... POS NOTE ... BAR POS NOTE ...

* BAR opens a bar. POS (0..15, a 16th-note position) opens an onset; the NOTE tokens after it
  start there. Within one position notes are ordered by track, then by pitch from high to low.
* Every token carries the current bar's controls (density class, strength class, section-start
  flag, chord, the *next* bar's section-start flag and the bar's place in its section), the
  current position, and how many notes the bar already holds: the controls are
  broadcast to every token of the bar rather than written once (CMT writes them once at the bar
  token); the model then never has to look back to find what it was asked.
* NOTE tokens carry pitch, duration (1..32 16ths), note-strength class (0..3) and track (0 melody,
  1..3 lower voices).

Note strength (the corpus has no recorded velocities) is defined from what the notation holds:
    s = accent(position) + min(log2(duration in 16ths), 4) + 0.5 * min(other notes starting with it, 3)
    accent = 4 on beat 1, 3 on beat 3, 2 on beats 2 and 4, 1 on an eighth off-beat, 0 on a 16th
The note-strength class is s cut at the corpus quartiles of s. A bar's strength value is the mean
s of its notes; the bar's strength class is the quartile of that value *among bars of the same
density class* (sparse bars hold long, on-beat notes and so would otherwise always be "strong":
conditioning on density makes every density x strength pair occur in the data).
A bar's density class is its note count (all tracks) cut at the corpus' octile edges.
The chord of a bar is estimated from its pitch classes (duration-weighted, stronger on beats 1
and 3) against the 48 chords root x {major, minor, diminished, dominant 7}.

Structure controls: `section` is 1 on the first bar of a section; `next_section` is 1 when the
*next* bar starts a section, or when this is the piece's last bar (a section ends either way: the
model can close the phrase, as the corpus does with its cadences before repeat signs, double bars
and fermatas); `section_bar` counts the bars since the section started (0 on its first bar),
saturating at SECTION_BAR_MAX (the corpus' sections are mostly 2, 4 or 8 bars long).
"""

import math

import numpy as np

# Field indices of a compound token row.
(F_TYPE, F_POS, F_DENS, F_STR, F_SEC, F_CHORD, F_PITCH, F_DUR, F_NSTR, F_TRACK, F_COUNT, F_NEXT,
 F_SBAR) = range(13)
N_FIELDS = 13
FIELD_NAMES = ["type", "pos", "density", "strength", "section", "chord", "pitch", "duration",
               "note_strength", "track", "count", "next_section", "section_bar"]

# Token types.
T_BAR, T_POS, T_NOTE, T_PAD = 0, 1, 2, 3
N_TYPES_IN = 4   # BAR, POS, NOTE, PAD (PAD only pads short training crops)
N_TYPES_OUT = 3  # the model predicts BAR, POS or NOTE

STEPS_PER_BAR = 16
DENSITY_CLASSES = 8
STRENGTH_CLASSES = 4
NOTE_STRENGTH_CLASSES = 4
N_CHORDS = 48  # root * 4 + quality
QUALITIES = ["major", "minor", "diminished", "dominant7"]
QUALITY_INTERVALS = [(0, 4, 7), (0, 3, 7), (0, 3, 6), (0, 4, 7, 10)]
N_PITCH = 128
MAX_DUR16 = 32
N_TRACKS = 4
MAX_COUNT = 31  # notes-so-far field saturates here
# The bars-since-section-start field saturates here: 8 values cover the corpus' usual 2-, 4- and
# 8-bar sections; longer sections (and the product's long shots) read as "deep in a section".
SECTION_BAR_MAX = 7

# "Not applicable" value of each input field (one past the last real value).
NONE_POS = STEPS_PER_BAR
NONE_PITCH = N_PITCH
NONE_DUR = MAX_DUR16
NONE_NSTR = NOTE_STRENGTH_CLASSES
NONE_TRACK = N_TRACKS

# Input vocabulary size of each field (embedding table sizes).
FIELD_SIZES = [N_TYPES_IN, STEPS_PER_BAR + 1, DENSITY_CLASSES, STRENGTH_CLASSES, 2, N_CHORDS,
               N_PITCH + 1, MAX_DUR16 + 1, NOTE_STRENGTH_CLASSES + 1, N_TRACKS + 1, MAX_COUNT + 1, 2,
               SECTION_BAR_MAX + 1]


def accent(pos: int) -> int:
    if pos == 0:
        return 4
    if pos == 8:
        return 3
    if pos % 4 == 0:
        return 2
    if pos % 2 == 0:
        return 1
    return 0


def note_strength_value(pos: int, dur16: int, simultaneous: int) -> float:
    """s of one note: see the module doc. `simultaneous` counts notes starting at its onset (itself included)."""
    return accent(pos) + min(math.log2(max(dur16, 1)), 4.0) + 0.5 * min(simultaneous - 1, 3)


def chord_id(root: int, quality: int) -> int:
    return (root % 12) * 4 + quality


def transpose_chord(cid: int, k: int) -> int:
    return chord_id(cid // 4 + k, cid % 4)


def estimate_chord(weights: np.ndarray) -> int:
    """Chord (0..47) that best explains a 12-bin pitch-class weight vector; -1 when empty."""
    total = weights.sum()
    if total <= 0:
        return -1
    best, best_score = -1, -1e9
    for root in range(12):
        for q, ivs in enumerate(QUALITY_INTERVALS):
            pcs = [(root + i) % 12 for i in ivs]
            inside = sum(weights[p] for p in pcs)
            score = inside - 0.6 * (total - inside) + 0.3 * weights[root]
            if q == 3:
                # a dominant seventh needs its seventh, and a triad wins when the seventh is weak
                if weights[(root + 10) % 12] < 0.2 * total:
                    continue
                score -= 0.15 * total
            if q == 2:
                score -= 0.05 * total  # diminished is rare: prefer a triad on ties
            if score > best_score:
                best, best_score = chord_id(root, q), score
    return best


# Krumhansl-Kessler key profiles (major, minor), for the transposition that normalises a piece
# to C major / A minor.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(pc_hist: np.ndarray):
    """(tonic, is_minor) by correlation with the Krumhansl-Kessler profiles."""
    best = (0, False, -2.0)
    for tonic in range(12):
        for minor, prof in ((False, KK_MAJOR), (True, KK_MINOR)):
            r = np.corrcoef(pc_hist, np.roll(prof, tonic))[0, 1]
            if r > best[2]:
                best = (tonic, minor, r)
    return best[0], best[1]


def normalising_shift(tonic: int, minor: bool) -> int:
    """Semitones (-6..5) that move the key to C major or A minor."""
    target = 9 if minor else 0
    k = (target - tonic) % 12
    return k - 12 if k >= 6 else k

"""Chord names, chord tones and key (diatonic scale) estimation from chords."""

from __future__ import annotations

import re

NOTE_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# Interval sets of the chord qualities the product names (`music::Chord::name`), plus a
# few common ones a template index might carry.
QUALITY_INTERVALS = {
    "": (0, 4, 7),
    "m": (0, 3, 7),
    "dim": (0, 3, 6),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "aug": (0, 4, 8),
    "sus2": (0, 2, 7),
    "sus4": (0, 5, 7),
}
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
PC_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
_CHORD_RE = re.compile(r"^([A-G])([#b]?)(.*)$")


def chord_pcs(name: str) -> frozenset[int]:
    """Pitch classes of a chord name such as `C`, `Am`, `Bdim`, `G7`, `F#m`, `Eb`."""
    m = _CHORD_RE.match(name.strip())
    if not m or m.group(3) not in QUALITY_INTERVALS:
        raise ValueError(f"unknown chord name {name!r}")
    root = NOTE_PC[m.group(1)] + {"#": 1, "b": -1, "": 0}[m.group(2)]
    return frozenset((root + i) % 12 for i in QUALITY_INTERVALS[m.group(3)])


def diatonic_set(root_of_major: int) -> frozenset[int]:
    return frozenset((root_of_major + i) % 12 for i in MAJOR_SCALE)


def estimate_scale(pc_weights: dict[int, float]) -> tuple[int, frozenset[int]]:
    """The major scale (root, pitch classes) holding the most chord-tone weight.

    Relative minors share the major scale's set, so 12 candidates cover both modes.
    Ties go to the candidate whose tonic triad carries the most weight, then the lowest root.
    """
    best = None
    for root in range(12):
        s = diatonic_set(root)
        inside = sum(w for pc, w in pc_weights.items() if pc in s)
        tonic = sum(pc_weights.get((root + i) % 12, 0.0) for i in (0, 4, 7))
        cand = (inside, tonic, -root)
        if best is None or cand > best[0]:
            best = (cand, root, s)
    return best[1], best[2]


def scale_name(root: int) -> str:
    return f"{PC_NAMES[root]} major / {PC_NAMES[(root + 9) % 12]} minor"

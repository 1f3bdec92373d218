"""The project's own backing patterns: five styles x three intensity layers, written
note by note for any 4-bar progression of `music::PROGRESSIONS`.

A pattern is a list of `Part`s (one MIDI track each) covering one loop of the
progression (4 bars of 4/4 at 480 ticks per beat). Layer 0 is sparse, layer 2 full;
every layer keeps a steady pulse on the beat grid so the tempo stays audible (the
renderer's output is checked with librosa's beat tracker).

Randomness (velocity humanising) comes from a `random.Random` seeded by the caller,
so the same build makes the same files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

TPB = 480  # ticks per beat, as music::TICKS_PER_BEAT
BAR = 4 * TPB
BARS = 4  # music::PROGRESSION_BARS
DRUMS = 9  # General MIDI drum channel (0-based)

# General MIDI drum keys used below.
KICK, RIM, SNARE, CLAP, HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE = 36, 37, 38, 39, 42, 44, 46, 49, 51
TAMBOURINE, SHAKER = 54, 70
TOM_LOW, TOM_MID, TOM_HIGH = 41, 45, 48

QUALITY = {"major": (0, 4, 7), "minor": (0, 3, 7), "diminished": (0, 3, 6), "dominant7": (0, 4, 7, 10)}


@dataclass
class Chord:
    root: int  # pitch class
    quality: str

    def pcs(self) -> list[int]:
        return [(self.root + i) % 12 for i in QUALITY[self.quality]]

    def seventh_pcs(self) -> list[int]:
        """Chord with a colour seventh, as lo-fi and pop keys voice it."""
        if self.quality == "major":
            return self.pcs() + [(self.root + 11) % 12]
        if self.quality == "minor":
            return self.pcs() + [(self.root + 10) % 12]
        return self.pcs()


@dataclass
class Part:
    name: str
    channel: int
    program: int
    notes: list[tuple[int, int, int, int]] = field(default_factory=list)  # (tick, dur, pitch, vel)
    # Played this many milliseconds early when rendered: bowed strings and horns speak
    # slowly, and producers pull such tracks ahead so their attack lands on the beat
    # (measured: FluidR3's strings put librosa's beats ~15 ms late otherwise).
    lead_ms: float = 0.0

    def add(self, tick: int, dur: int, pitch: int, vel: int) -> None:
        # Notes end by their bar's end: the next bar may change chord, and a note ringing
        # across the bar line would blur which chord sounds on its downbeat.
        dur = min(int(dur), BAR - int(tick) % BAR - 5)
        self.notes.append((int(tick), max(1, dur), int(pitch), max(1, min(127, int(vel)))))


def in_range(pc: int, lo: int) -> int:
    """The lowest pitch >= lo with pitch class pc."""
    return lo + ((pc - lo) % 12)


def voicings(pcs: list[int], lo: int, hi: int) -> list[list[int]]:
    """Close-position voicings (every inversion) of the pitch classes inside [lo, hi]."""
    out = []
    for inv in range(len(pcs)):
        order = pcs[inv:] + pcs[:inv]
        for base in range(lo, hi):
            if base % 12 != order[0]:
                continue
            v = [base]
            for pc in order[1:]:
                p = v[-1] + 1
                while p % 12 != pc:
                    p += 1
                v.append(p)
            if v[-1] <= hi:
                out.append(v)
    return out


def lead(prev: list[int] | None, pcs: list[int], lo: int, hi: int) -> list[int]:
    """The voicing nearest the previous one (smooth voice leading)."""
    cands = voicings(pcs, lo, hi)
    if prev is None:
        mid = (lo + hi) / 2
        return min(cands, key=lambda v: abs(sum(v) / len(v) - mid))
    return min(cands, key=lambda v: sum(abs(a - b) for a, b in zip(sorted(v), sorted(prev))) + abs(len(v) - len(prev)) * 3)


def chord_voicings(chords: list[Chord], lo: int, hi: int, sevenths: bool = False) -> list[list[int]]:
    out, prev = [], None
    for c in chords:
        prev = lead(prev, c.seventh_pcs() if sevenths else c.pcs(), lo, hi)
        out.append(prev)
    return out


def bass_note(c: Chord, lo: int = 36) -> int:
    return in_range(c.root, lo)


def fifth(c: Chord) -> int:
    return (c.root + QUALITY[c.quality][2]) % 12


class Humanizer:
    def __init__(self, rng: random.Random, spread: int = 6):
        self.rng, self.spread = rng, spread

    def __call__(self, vel: float) -> int:
        return int(round(vel + self.rng.uniform(-self.spread, self.spread)))


def drum_grid(part: Part, hum: Humanizer, key: int, steps: list[int], vels: list[float] | float, step_ticks: int = TPB // 2,
              swing: int = 0, bars: range = range(BARS)) -> None:
    """Hits on a step grid (default 8ths); `swing` delays odd steps by that many ticks."""
    for b in bars:
        for i, s in enumerate(steps):
            v = vels[i % len(vels)] if isinstance(vels, list) else vels
            t = b * BAR + s * step_ticks + (swing if s % 2 == 1 else 0)
            part.add(t, step_ticks // 2, key, hum(v))


# ---------------------------------------------------------------- styles


def lofi(chords: list[Chord], layer: int, rng: random.Random) -> list[Part]:
    hum = Humanizer(rng)
    swing = 30  # 16th swing of a lazy boom-bap feel, in ticks
    keys = Part("keys", 0, 4)  # Rhodes EP
    for b, (c, v) in enumerate(zip(chords, chord_voicings(chords, 53, 72, sevenths=True))):
        t = b * BAR
        # Left hand: the root, so the seventh voicing (Cmaj7 holds an Em triad) keeps its name.
        keys.add(t, int(3.8 * TPB), bass_note(c, 41), hum(58))
        for p in v:
            keys.add(t, int(1.5 * TPB), p, hum(62))
            keys.add(t + int(2.5 * TPB), int(1.4 * TPB), p, hum(54))
    drums = Part("drums", DRUMS, 0)
    hats = [0, 1, 2, 3, 4, 5, 6, 7]
    drum_grid(drums, hum, HAT, hats, [48, 30], swing=swing)
    if layer == 0:
        drum_grid(drums, hum, RIM, [2, 6], 50)
    parts = [keys, drums]
    if layer >= 1:
        bass = Part("bass", 1, 33)  # fingered bass
        for b, c in enumerate(chords):
            t = b * BAR
            bass.add(t, int(1.4 * TPB), bass_note(c), hum(88))
            bass.add(t + int(1.5 * TPB) + swing, TPB // 2, bass_note(c), hum(70))
            bass.add(t + int(2.5 * TPB) + swing, TPB, in_range(fifth(c), 36), hum(78))
        drum_grid(drums, hum, KICK, [0, 3, 5], [92, 70, 84], swing=swing)
        drum_grid(drums, hum, SNARE, [2, 6], 82)
        parts.append(bass)
    if layer >= 2:
        drum_grid(drums, hum, HAT, [1, 3, 5, 7, 9, 11, 13, 15], 22, step_ticks=TPB // 4, swing=swing // 2)
        drums.add(3 * BAR + int(3.5 * TPB) + swing, TPB // 2, OPEN_HAT, hum(50))
        pad = Part("pad", 2, 89)  # warm pad
        for b, v in enumerate(chord_voicings(chords, 60, 79)):
            for p in v:
                pad.add(b * BAR, BAR - 20, p, hum(46))
        parts.append(pad)
    return parts


def pop(chords: list[Chord], layer: int, rng: random.Random) -> list[Part]:
    hum = Humanizer(rng)
    piano = Part("piano", 0, 0)
    for b, (c, v) in enumerate(zip(chords, chord_voicings(chords, 55, 74))):
        t = b * BAR
        for e in range(8):
            acc = 70 if e % 2 == 0 else 56
            for p in v:
                piano.add(t + e * TPB // 2, TPB // 2 - 30, p, hum(acc))
        piano.add(t, 2 * TPB - 20, bass_note(c, 43), hum(72))
        piano.add(t + 2 * TPB, 2 * TPB - 20, in_range(fifth(c), 43), hum(66))
    parts = [piano]
    drums = Part("drums", DRUMS, 0)
    drum_grid(drums, hum, HAT, list(range(8)), [56, 38] if layer >= 1 else [36, 24])
    parts.append(drums)
    if layer >= 1:
        bass = Part("bass", 1, 34)  # picked bass
        for b, c in enumerate(chords):
            for e in range(8):
                bass.add(b * BAR + e * TPB // 2, TPB // 2 - 40, bass_note(c, 33), hum(84 if e % 2 == 0 else 72))
        drum_grid(drums, hum, KICK, [0, 4, 5] if layer == 1 else [0, 2, 4, 6], 96)
        drum_grid(drums, hum, SNARE, [2, 6], 92)
        parts.append(bass)
    if layer >= 2:
        drum_grid(drums, hum, CLAP, [2, 6], 70)
        drum_grid(drums, hum, HAT, [1, 3, 5, 7, 9, 11, 13, 15], 26, step_ticks=TPB // 4)
        drums.add(0, TPB, CRASH, hum(90))
        pad = Part("pad", 2, 90)  # polysynth pad
        for b, v in enumerate(chord_voicings(chords, 62, 81)):
            for p in v:
                pad.add(b * BAR, BAR - 20, p, hum(50))
        parts.append(pad)
    return parts


def ambient(chords: list[Chord], layer: int, rng: random.Random) -> list[Part]:
    hum = Humanizer(rng, 4)
    pad = Part("pad", 0, 89)  # warm pad
    for b, v in enumerate(chord_voicings(chords, 52, 71)):
        for p in v:
            pad.add(b * BAR, BAR - 10, p, hum(64))
    arp = Part("arpeggio", 1, 46)  # harp
    step = TPB if layer == 0 else TPB // 2
    for b, v in enumerate(chord_voicings(chords, 64, 84)):
        seq = v + [v[0] + 12] + v[1:][::-1]
        n = BAR // step
        for i in range(n):
            arp.add(b * BAR + i * step, step * 2, seq[i % len(seq)], hum(70 if i % (TPB // step * 2) == 0 else 56))
    parts = [pad, arp]
    if layer >= 1:
        bass = Part("bass", 2, 35)  # fretless
        for b, c in enumerate(chords):
            bass.add(b * BAR, 2 * TPB - 20, bass_note(c), hum(76))
            bass.add(b * BAR + 2 * TPB, 2 * TPB - 20, bass_note(c), hum(64))
        parts.append(bass)
    if layer >= 2:
        drums = Part("drums", DRUMS, 0)
        drum_grid(drums, hum, SHAKER, list(range(8)), [52, 36])
        drum_grid(drums, hum, KICK, [0, 4], 64)
        strings = Part("strings", 3, 49)  # slow strings
        for b, v in enumerate(chord_voicings(chords, 67, 86)):
            for p in v:
                strings.add(b * BAR, BAR - 10, p, hum(52))
        parts += [drums, strings]
    return parts


def cinematic(chords: list[Chord], layer: int, rng: random.Random) -> list[Part]:
    hum = Humanizer(rng, 5)
    strings = Part("strings", 0, 49, lead_ms=30.0)  # slow strings, sustained
    for b, v in enumerate(chord_voicings(chords, 55, 74)):
        for p in v:
            strings.add(b * BAR, BAR - 10, p, hum(70 + 6 * layer))
    ostinato = Part("ostinato", 1, 48, lead_ms=25.0)  # string ensemble, short notes
    pizz = Part("pizzicato", 5, 45, lead_ms=20.0)  # doubles the ostinato: a sharp attack marks each 8th
    for b, c in enumerate(chords):
        r, f = bass_note(c, 38), in_range(fifth(c), 38)
        seq = [r, r, f, r, r + 12, r, f, r]
        for e in range(8):
            ostinato.add(b * BAR + e * TPB // 2, TPB // 2 - 90, seq[e], hum(86 if e % 2 == 0 else 68))
            pizz.add(b * BAR + e * TPB // 2, TPB // 2 - 60, seq[e] + 12, hum(84 if e % 2 == 0 else 62))
    # A soft side-stick ticking 8ths (the "clock" of modern trailer scores) keeps the pulse
    # clear under the bowed parts in every layer.
    tick = Part("tick", DRUMS, 0)
    drum_grid(tick, hum, RIM, list(range(8)), [40, 26])
    parts = [strings, ostinato, pizz, tick]
    if layer >= 1:
        timp = Part("timpani", 2, 47)
        horns = Part("horns", 3, 60, lead_ms=30.0)
        for b, (c, v) in enumerate(zip(chords, chord_voicings(chords, 53, 67))):
            timp.add(b * BAR, TPB, bass_note(c, 40), hum(96))
            timp.add(b * BAR + 2 * TPB, TPB, bass_note(c, 40), hum(80))
            for p in v:
                horns.add(b * BAR, 2 * TPB - 30, p, hum(74))
                horns.add(b * BAR + 2 * TPB, 2 * TPB - 30, p, hum(68))
        parts += [timp, horns]
    if layer >= 2:
        drums = Part("drums", DRUMS, 0)
        drum_grid(drums, hum, TOM_LOW, [0, 3, 4, 6], [100, 80, 96, 84])
        drum_grid(drums, hum, TOM_MID, [7], 76)
        drum_grid(drums, hum, SNARE, [2, 6], 70)
        drums.add(0, TPB, CRASH, hum(92))
        basses = Part("contrabass", 4, 43)
        for b, c in enumerate(chords):
            basses.add(b * BAR, BAR - 20, bass_note(c, 28), hum(90))
        parts += [drums, basses]
    return parts


def acoustic(chords: list[Chord], layer: int, rng: random.Random) -> list[Part]:
    hum = Humanizer(rng)
    parts = []
    voic = chord_voicings(chords, 55, 70)
    if layer == 0 or layer == 2:
        pick = Part("fingerpicking", 0, 25 if layer == 0 else 24, lead_ms=15.0)
        for b, (c, v) in enumerate(zip(chords, voic)):
            seq = [bass_note(c, 40), v[0], v[1], v[2], in_range(fifth(c), 40), v[1], v[2], v[0] + 12]
            for e in range(8):
                pick.add(b * BAR + e * TPB // 2, TPB, seq[e], hum(74 if e % 4 == 0 else 60))
        parts.append(pick)
    if layer >= 1:
        strum = Part("strum", 1, 25, lead_ms=25.0)  # steel guitar; the strum's spread centres late
        # D . D U . U D U  (8ths): the common folk-pop strum
        pattern = [(0, 1, 82), (2, 1, 70), (3, -1, 58), (5, -1, 62), (6, 1, 72), (7, -1, 56)]
        for b, (c, v) in enumerate(zip(chords, voic)):
            strings = [bass_note(c, 40)] + v + [v[0] + 12]
            for step, direction, vel in pattern:
                order = strings if direction > 0 else strings[::-1]
                for k, p in enumerate(order):
                    strum.add(b * BAR + step * TPB // 2 + k * 12, TPB - 40, p, hum(vel - 4 * k * (direction < 0)))
        bass = Part("bass", 2, 32)  # acoustic bass
        for b, c in enumerate(chords):
            bass.add(b * BAR, int(1.5 * TPB), bass_note(c, 28), hum(84))
            bass.add(b * BAR + 2 * TPB, TPB, in_range(fifth(c), 28), hum(74))
            bass.add(b * BAR + 3 * TPB, TPB, bass_note(c, 28), hum(70))
        drums = Part("percussion", DRUMS, 0, lead_ms=15.0)
        drum_grid(drums, hum, SHAKER, list(range(8)), [58, 40])
        parts += [strum, bass, drums]
        if layer >= 2:
            drum_grid(drums, hum, KICK, [0, 5], 84)
            drum_grid(drums, hum, RIM, [2, 6], 78)
            drum_grid(drums, hum, TAMBOURINE, [2, 6], 52)
    return parts


@dataclass
class Style:
    name: str
    tempo: float  # native BPM; 11_520_000 / tempo is a whole number of samples per bar at 48 kHz
    mood_major: str
    mood_minor: str
    make: object
    instruments: list[str]


STYLES = [
    Style("lofi", 80.0, "calm", "calm", lofi, ["electric piano", "bass", "drums", "pad"]),
    Style("pop", 120.0, "happy", "dark", pop, ["piano", "bass", "drums", "synth pad"]),
    Style("ambient", 72.0, "calm", "dark", ambient, ["pad", "harp", "fretless bass", "shaker", "strings"]),
    Style("cinematic", 90.0, "epic", "dark", cinematic, ["strings", "pizzicato", "timpani", "horns", "toms", "contrabass"]),
    Style("acoustic", 100.0, "happy", "calm", acoustic, ["steel guitar", "nylon guitar", "acoustic bass", "shaker", "cajon"]),
]

# music::PROGRESSIONS, same order and ids.
PROGRESSIONS = [
    ("I-V-vi-IV", "C", "major", [Chord(0, "major"), Chord(7, "major"), Chord(9, "minor"), Chord(5, "major")]),
    ("I-vi-IV-V", "C", "major", [Chord(0, "major"), Chord(9, "minor"), Chord(5, "major"), Chord(7, "major")]),
    ("IV-I-V-vi", "C", "major", [Chord(5, "major"), Chord(0, "major"), Chord(7, "major"), Chord(9, "minor")]),
    ("i-VI-III-VII", "A", "minor", [Chord(9, "minor"), Chord(5, "major"), Chord(0, "major"), Chord(7, "major")]),
    ("i-iv-VII-V7", "A", "minor", [Chord(9, "minor"), Chord(2, "minor"), Chord(7, "major"), Chord(4, "dominant7")]),
]
LAYERS = 3

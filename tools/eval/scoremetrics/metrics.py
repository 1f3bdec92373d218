"""All figures of one `undertone score` output folder, and their targets (issues 2 and 5)."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path

import numpy as np

from . import EvalError
from . import audio as A
from . import harmony as H
from . import midi as M
from . import video as V

# The planner may shorten the bar before a cut (report `beats` < 4) and the last bar is
# clipped at the video's end: note counts are compared per 4 beats (count × 4 / beats),
# and bars under this many beats are left out of the correlations (too short to count).
MIN_BAR_BEATS = 2.0
BEATS_PER_BAR = 4
# Correlations on fewer bars than this are reported as undefined (a 3-bar clip says nothing).
MIN_BARS_FOR_RHO = 4
# A melody onset is "on" a beat when within this share of a beat of it (a 32nd note);
# the note model writes on a tick grid, so real onsets are either on it or clearly off.
ON_BEAT_TOL_BEATS = 0.125
# Strong beats of 4/4: beats 1 and 3, as offsets in beats from the bar start.
STRONG_BEATS = (0.0, 2.0)
# Chord notes that stop within this share of a beat after a melody onset are the previous
# chord ringing out, not the chord sounding at the onset.
CHORD_RELEASE_TOL_BEATS = 0.25
# Tolerances from the issues.
WARP_CUT_TOL_S = 0.050
BEAT_GRID_TOL_S = 0.030
TEMPO_TOL = 0.02
# Tiny slack for float rounding of times written with millisecond precision.
EPS_S = 1e-3


@dataclasses.dataclass
class Figure:
    """One measured figure. `hits`/`n` are kept for shares so clips can be pooled."""

    value: float | None
    n: int | None = None
    hits: int | None = None
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Target:
    key: str
    label: str
    op: str  # ">=", "<=", "abs<=" (|value - ref| <= tol), "==", "info"
    ref: float = 0.0
    tol: float = 0.0
    agg: str = "pool"  # how the "all" column combines clips: pool | wmean | max | min | worst | sum
    fmt: str = "{:.2f}"

    def text(self) -> str:
        if self.op == "abs<=":
            return f"{self.ref:g} ± {self.tol:g}"
        if self.op == "info":
            return "—"
        return f"{self.op} {self.ref:g}"

    def passes(self, v: float | None) -> bool | None:
        if v is None or (isinstance(v, float) and math.isnan(v)) or self.op == "info":
            return None
        if self.op == ">=":
            return v >= self.ref
        if self.op == "<=":
            return v <= self.ref
        if self.op == "==":
            return v == self.ref
        if self.op == "abs<=":
            return abs(v - self.ref) <= self.tol
        raise ValueError(self.op)


TARGETS = [
    Target("bars", "bars (used for ρ)", "info", agg="sum", fmt="{:.0f}"),
    Target("rho_speed_notes", "ρ(Farneback speed, melody notes per bar of 4 beats)", ">=", 0.8, agg="wmean"),
    Target("rho_saliency_velocity", "ρ(report saliency, melody mean velocity)", ">=", 0.7, agg="wmean"),
    # diagnostics that locate a weak ρ: extract (report speed vs Farneback), compose (notes vs class)
    Target("rho_farneback_report_speed", "diag: ρ(Farneback speed, report speed)", "info", agg="wmean"),
    Target("rho_density_class_notes", "diag: ρ(report density_class, melody notes per 4 beats)", "info", agg="wmean"),
    Target("report_note_count_match", "report note_count = notes.mid melody (share of bars)", "info", agg="pool"),
    Target("cuts", "cuts (PySceneDetect adaptive, input)", "info", agg="sum", fmt="{:.0f}"),
    Target("cut_section_share", "cuts with a section start within ±1 beat", ">=", 0.9, agg="pool"),
    Target("warp_cut_downbeat_share", "--warp: cuts in scored.mp4 within ±50 ms of a downbeat", ">=", 0.95, agg="pool"),
    Target("warp_max_rate_dev", "--warp: max |rate − 1|", "<=", 0.08, agg="max", fmt="{:.3f}"),
    Target("duration_error_frames", "|audio − video duration| (frames)", "<=", 1.0, agg="max"),
    Target("loudness_lufs", "integrated loudness (LUFS)", "abs<=", -16.0, 1.0, agg="worst", fmt="{:.1f}"),
    Target("true_peak_dbtp", "true peak, 4× oversampled (dBTP)", "<=", -1.0, agg="max", fmt="{:.2f}"),
    Target("clipped_samples", "clipped samples", "==", 0.0, agg="sum", fmt="{:.0f}"),
    Target("tempo_error", "librosa tempo vs report (rel. error, ×½/×1/×2)", "<=", TEMPO_TOL, agg="max", fmt="{:.3f}"),
    Target("beat_offset_ms", "librosa beat − nearest planned beat, median (ms)", "info", agg="wmean", fmt="{:+.0f}"),
    Target("beats_on_grid_share", "librosa beats within 30 ms of the planned grid", ">=", 0.9, agg="pool"),
    Target("strong_beat_chord_tone_share", "melody notes on beats 1/3 that are chord tones", ">=", 0.85, agg="pool"),
    Target("out_of_key_share", "melody notes outside the key", "<=", 0.05, agg="pool", fmt="{:.3f}"),
    Target("join_flux_ratio", "max flux at joins / max flux inside template material", "<=", 1.0, agg="max"),
]
TARGET_BY_KEY = {t.key: t for t in TARGETS}


# ---------------------------------------------------------------- time maps


class TimeMap:
    """Output-timeline ⇄ input-timeline map from report.json `warps` (identity when none)."""

    def __init__(self, warps: list[dict]):
        pts = []
        for w in sorted(warps, key=lambda w: w["output_start"]):
            pts.append((float(w["output_start"]), float(w["input_start"])))
            pts.append((float(w["output_end"]), float(w["input_end"])))
        self.out = np.array([p[0] for p in pts])
        self.inp = np.array([p[1] for p in pts])

    def to_input(self, t):
        if len(self.out) == 0:
            return np.asarray(t, dtype=np.float64)
        return self._extrap(t, self.out, self.inp)

    def to_output(self, t):
        if len(self.out) == 0:
            return np.asarray(t, dtype=np.float64)
        return self._extrap(t, self.inp, self.out)

    @staticmethod
    def _extrap(t, xs, ys):
        t = np.asarray(t, dtype=np.float64)
        y = np.interp(t, xs, ys)
        # beyond the warped range the clock runs at rate 1
        y = np.where(t < xs[0], ys[0] + (t - xs[0]), y)
        return np.where(t > xs[-1], ys[-1] + (t - xs[-1]), y)


# ---------------------------------------------------------------- pieces


def spearman(x, y) -> float | None:
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < MIN_BARS_FOR_RHO or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = float(spearmanr(x, y).statistic)
    return None if math.isnan(r) else r


def bar_speeds(bars: list[dict], tmap: TimeMap, motion: V.MotionTrack) -> np.ndarray:
    """Mean Farneback speed over each bar's span, mapped back to input time."""
    out = np.full(len(bars), np.nan)
    for i, b in enumerate(bars):
        a, z = tmap.to_input([b["start"], b["end"]])
        m = (motion.t >= a) & (motion.t < z)
        if m.any():
            out[i] = motion.speed[m].mean()
    return out


def bar_of(bars: list[dict], t: float) -> int | None:
    for i, b in enumerate(bars):
        if b["start"] - EPS_S <= t < b["end"] - EPS_S:
            return i
    return None


def melody_per_bar(bars: list[dict], melody: list[M.MidiNote]) -> tuple[np.ndarray, np.ndarray]:
    counts = np.zeros(len(bars))
    vel_sum = np.zeros(len(bars))
    for n in melody:
        i = bar_of(bars, n.start)
        if i is not None:
            counts[i] += 1
            vel_sum[i] += n.velocity
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_vel = np.where(counts > 0, vel_sum / np.maximum(counts, 1), np.nan)
    return counts, mean_vel


def bar_beats(bars: list[dict], beat: float) -> np.ndarray:
    """Length of each bar in beats, from its span (a short or clipped bar has fewer than 4)."""
    return np.array([(b["end"] - b["start"]) / beat for b in bars])


def notes_per_four_beats(counts: np.ndarray, nbeats: np.ndarray) -> np.ndarray:
    """Note counts scaled to a full 4/4 bar, so a 2-beat bar with 3 notes reads as 6."""
    return counts * BEATS_PER_BAR / np.maximum(nbeats, EPS_S)


def share_within(events, targets, tol: float) -> Figure:
    targets = np.sort(np.asarray(targets, float))
    events = list(events)
    if not events:
        return Figure(None, 0, 0, "no events")
    if not len(targets):
        return Figure(0.0, len(events), 0, "no targets")
    hits = 0
    for e in events:
        j = np.searchsorted(targets, e)
        d = min(abs(e - targets[k]) for k in (j - 1, j) if 0 <= k < len(targets))
        hits += d <= tol + 1e-9
    return Figure(hits / len(events), len(events), hits)


def chord_at(t: float, beat: float, chords: list[M.MidiNote], fallback: frozenset[int] | None):
    """Pitch classes sounding in the chords track during the beat starting at `t`."""
    lo, hi = t - EPS_S, t + beat
    pcs = {n.pitch % 12 for n in chords if n.start < hi and n.end > lo + CHORD_RELEASE_TOL_BEATS * beat}
    if pcs:
        return frozenset(pcs), "track"
    return fallback, "report"


def report_chord(bar: dict) -> frozenset[int] | None:
    name = bar.get("chord")
    if not name:
        return None
    try:
        return H.chord_pcs(name)
    except ValueError:
        return None


# ---------------------------------------------------------------- one folder


def load_report(d: Path) -> dict:
    p = d / "report.json"
    if not p.is_file():
        raise EvalError(f"{p}: no report.json (run `undertone score VIDEO -o {d}` first)")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise EvalError(f"{p}: not valid JSON ({e}); re-run `undertone score`") from e


def resolve_video(d: Path, report: dict, video: str | None) -> Path:
    if video:
        return Path(video)
    p = report.get("input", {}).get("path")
    if not p:
        raise EvalError(f"{d}/report.json has no input.path: give the input video with --video")
    for cand in (Path(p), d / p, d.parent / p):
        if cand.is_file():
            return cand
    raise EvalError(f"{d}/report.json input.path {p!r} not found: give the input video with --video")


def evaluate_dir(d: str | Path, video: str | None = None, cache_dir: Path | None = None,
                 keep_cut_pairs: bool = False) -> dict:
    """Every figure of one output folder: {"figures": {key: Figure}, "details": {...}}."""
    d = Path(d)
    rep = load_report(d)
    bars = rep.get("bars") or []
    if not bars:
        raise EvalError(f"{d}/report.json has no bars: nothing to evaluate")
    tempo = float(rep["tempo_bpm"])
    beat = 60.0 / tempo
    out_info = rep.get("output", {})
    # `output.warped` says whether scored.mp4 was retimed; older reports without it: any warp
    warped = bool(out_info["warped"]) if "warped" in out_info else bool(rep.get("warps"))
    tmap = TimeMap(rep.get("warps") or [])
    vpath = resolve_video(d, rep, video)
    motion = V.motion_track(vpath, cache_dir=cache_dir, keep_cut_pairs=keep_cut_pairs)
    mid = M.read_midi(d / "notes.mid")
    if "melody" not in mid.tracks:
        raise EvalError(f"{d}/notes.mid has no track named 'melody' (tracks: {list(mid.tracks)})")
    melody = mid.tracks["melody"]
    chords = mid.track("chords")
    wav = A.read_wav(d / "music.wav")
    F: dict[str, Figure] = {}
    details: dict = {"video": str(vpath), "warped": warped, "tempo_bpm": tempo, "midi_tracks": list(mid.tracks)}

    # --- motion speed → note density, saliency → velocity
    speeds = bar_speeds(bars, tmap, motion)
    counts, mean_vel = melody_per_bar(bars, melody)
    sal = np.array([float(b.get("saliency", np.nan)) for b in bars])
    nbeats = bar_beats(bars, beat)
    full = nbeats >= MIN_BAR_BEATS - EPS_S
    per4 = notes_per_four_beats(counts, nbeats)
    ok = full & ~np.isnan(speeds)
    F["bars"] = Figure(float(ok.sum()), int(ok.sum()))
    F["rho_speed_notes"] = Figure(spearman(speeds[ok], per4[ok]), int(ok.sum()))
    rep_speed = np.array([float(b.get("speed", np.nan)) for b in bars])
    okr = ok & ~np.isnan(rep_speed)
    F["rho_farneback_report_speed"] = Figure(spearman(speeds[okr], rep_speed[okr]), int(okr.sum()))
    dens = np.array([float(b.get("density_class", np.nan)) for b in bars])
    okd = full & ~np.isnan(dens)
    F["rho_density_class_notes"] = Figure(spearman(dens[okd], per4[okd]), int(okd.sum()))
    okv = full & ~np.isnan(mean_vel) & ~np.isnan(sal)
    F["rho_saliency_velocity"] = Figure(spearman(sal[okv], mean_vel[okv]), int(okv.sum()))
    rep_counts = [b.get("note_count") for b in bars]
    match = sum(1 for rc, c in zip(rep_counts, counts) if rc is not None and int(rc) == int(c))
    F["report_note_count_match"] = Figure(match / len(bars), len(bars), match)
    details["per_bar"] = [
        {"index": b.get("index", i), "start": b["start"], "end": b["end"], "speed_farneback": None if np.isnan(s) else s,
         "beats": float(nb), "melody_notes": int(c), "melody_mean_velocity": None if np.isnan(v) else v, "saliency": b.get("saliency"),
         "section_start": bool(b.get("section_start"))}
        for i, (b, s, c, v, nb) in enumerate(zip(bars, speeds, counts, mean_vel, nbeats))
    ]

    # --- cuts → sections
    cuts_out = [float(c) for c in tmap.to_output(motion.cuts)] if motion.cuts else []
    sections = [b["start"] for b in bars if b.get("section_start")]
    F["cuts"] = Figure(float(len(cuts_out)), len(cuts_out))
    F["cut_section_share"] = share_within(cuts_out, sections, beat)
    details["cuts_input"] = motion.cuts
    details["section_starts"] = sections

    # --- warp
    scored = d / "scored.mp4"
    if warped:
        if not scored.is_file():
            raise EvalError(f"{scored}: missing (a --warp result needs it to check cuts on downbeats)")
        wcuts = V.detect_cuts(scored)
        F["warp_cut_downbeat_share"] = share_within(wcuts, rep.get("downbeats") or [], WARP_CUT_TOL_S)
        rates = [abs(float(w["rate"]) - 1.0) for w in rep.get("warps") or []]
        F["warp_max_rate_dev"] = Figure(max(rates) if rates else 0.0, len(rates))
        details["cuts_scored_mp4"] = wcuts
    else:
        F["warp_cut_downbeat_share"] = Figure(None, detail="not warped")
        F["warp_max_rate_dev"] = Figure(None, detail="not warped")

    # --- duration: audio vs the video it goes with (the warped one when warped)
    ref_video = V.probe(scored) if warped else motion.info
    frame = 1.0 / ref_video.fps if ref_video.fps else 1 / 25
    F["duration_error_frames"] = Figure(abs(wav.duration - ref_video.duration) / frame,
                                        detail=f"audio {wav.duration:.3f} s, video {ref_video.duration:.3f} s")
    details["audio_duration"] = wav.duration
    details["video_duration"] = ref_video.duration

    # --- loudness, peak, clipping
    F["loudness_lufs"] = Figure(A.integrated_loudness(wav))
    F["true_peak_dbtp"] = Figure(A.true_peak_dbtp(wav))
    F["clipped_samples"] = Figure(float(wav.clipped))
    details["wav"] = {"sr": wav.sr, "channels": int(wav.data.shape[1]), "subtype": wav.subtype}

    # --- tempo and beats
    est, lbeats = A.tempo_and_beats(wav)
    factor, err = min(((f, abs(est / (tempo * f) - 1.0)) for f in (1.0, 0.5, 2.0)), key=lambda x: x[1])
    F["tempo_error"] = Figure(err, detail=f"librosa {est:.1f} BPM, report {tempo:.1f} BPM, ×{factor:g}")
    grid = np.asarray(rep.get("beats") or [], float)
    if factor == 2.0 and len(grid) > 1:  # librosa counts eighths: compare on the half-beat grid
        grid = np.sort(np.concatenate([grid, (grid[:-1] + grid[1:]) / 2]))
    if len(grid):
        inside = [b for b in lbeats if grid[0] - BEAT_GRID_TOL_S <= b <= grid[-1] + BEAT_GRID_TOL_S]
    else:
        inside = list(lbeats)
    F["beats_on_grid_share"] = share_within(inside, grid, BEAT_GRID_TOL_S)
    if len(grid) and inside:
        offs = [b - grid[np.argmin(np.abs(grid - b))] for b in inside]
        F["beat_offset_ms"] = Figure(1000 * float(np.median(offs)), len(offs))
    else:
        F["beat_offset_ms"] = Figure(None)
    details["librosa_tempo"] = est
    details["librosa_beats"] = [float(b) for b in lbeats]

    # --- harmony (issue 5)
    strong_n = strong_hits = 0
    sources = {"track": 0, "report": 0}
    # the key per section, from the chords sounding in it (chords track, else report chords)
    sec_of_bar = [int(b.get("section", 0)) for b in bars]
    weights: dict[int, dict[int, float]] = {}
    if chords:
        for n in chords:
            i = bar_of(bars, n.start)
            if i is None:
                continue
            w = weights.setdefault(sec_of_bar[i], {})
            w[n.pitch % 12] = w.get(n.pitch % 12, 0.0) + (n.end - n.start)
    else:
        for i, b in enumerate(bars):
            pcs = report_chord(b)
            if pcs:
                w = weights.setdefault(sec_of_bar[i], {})
                for pc in pcs:
                    w[pc] = w.get(pc, 0.0) + (b["end"] - b["start"])
    scales = {s: H.estimate_scale(w) for s, w in weights.items() if w}
    details["keys"] = {str(s): H.scale_name(r) for s, (r, _) in scales.items()}
    out_key = in_n = 0
    for n in melody:
        i = bar_of(bars, n.start)
        if i is None:
            continue
        b = bars[i]
        pcs, src = chord_at(n.start, beat, chords, report_chord(b))
        pos = (n.start - b["start"]) / beat
        strong = any(abs(pos - s) <= ON_BEAT_TOL_BEATS for s in STRONG_BEATS if s < nbeats[i] - ON_BEAT_TOL_BEATS)
        if strong and pcs:
            strong_n += 1
            strong_hits += (n.pitch % 12) in pcs
            sources[src] += 1
        sc = scales.get(sec_of_bar[i])
        if sc is not None:
            in_n += 1
            out_key += (n.pitch % 12) not in sc[1] and not (pcs and (n.pitch % 12) in pcs)
    F["strong_beat_chord_tone_share"] = Figure(strong_hits / strong_n if strong_n else None, strong_n, strong_hits,
                                               detail=f"chord from track {sources['track']}, report {sources['report']}")
    F["out_of_key_share"] = Figure(out_key / in_n if in_n else None, in_n, out_key)

    # --- joins: section starts and template/layer changes, not bar 0
    joins = []
    for i in range(1, len(bars)):
        b, p = bars[i], bars[i - 1]
        if b.get("section_start") or b.get("template_id") != p.get("template_id") or b.get("layer") != p.get("layer"):
            if b["start"] < wav.duration - A.JOIN_WINDOW_S:
                joins.append(float(b["start"]))
    ft, fv = A.spectral_flux(wav)
    near = np.zeros(len(ft), dtype=bool)
    for j in joins:
        near |= np.abs(ft - j) <= A.JOIN_WINDOW_S
    inside = fv[~near & (ft >= bars[0]["start"] + A.JOIN_WINDOW_S) & (ft <= wav.duration - A.JOIN_WINDOW_S)]
    jflux = [x for x in (A.peak_near(ft, fv, j) for j in joins) if x is not None]
    if jflux and len(inside):
        ref = float(inside.max())
        F["join_flux_ratio"] = Figure(max(jflux) / ref if ref > 0 else float("inf"), len(jflux),
                                      sum(x <= ref for x in jflux), detail=f"{len(jflux)} joins")
    else:
        F["join_flux_ratio"] = Figure(None, 0, detail="no joins")
    details["joins"] = joins
    details["join_flux"] = jflux
    details["inside_flux_p50_p99_max"] = ([float(np.percentile(inside, q)) for q in (50, 99)] + [float(inside.max())]
                                          if len(inside) else [])
    return {"figures": F, "details": details}

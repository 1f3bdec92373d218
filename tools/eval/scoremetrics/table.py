"""Pools figures over clips and prints the markdown table with pass/fail per target."""

from __future__ import annotations

import math

from .metrics import TARGETS, Figure, Target


def _defined(f: Figure | None) -> bool:
    return f is not None and f.value is not None and not (isinstance(f.value, float) and math.isnan(f.value))


def aggregate(t: Target, figs: list[Figure]) -> Figure:
    got = [f for f in figs if _defined(f)]
    if not got:
        return Figure(None)
    if t.agg == "pool":
        n = sum(f.n or 0 for f in got if f.hits is not None)
        hits = sum(f.hits or 0 for f in got if f.hits is not None)
        if n:
            return Figure(hits / n, n, hits)
        return Figure(sum(f.value for f in got) / len(got), len(got))
    if t.agg == "wmean":
        w = [max(f.n or 1, 1) for f in got]
        return Figure(sum(f.value * x for f, x in zip(got, w)) / sum(w), sum(w))
    if t.agg == "max":
        return Figure(max(f.value for f in got))
    if t.agg == "min":
        return Figure(min(f.value for f in got))
    if t.agg == "sum":
        return Figure(sum(f.value for f in got), sum(f.n or 0 for f in got))
    if t.agg == "worst":
        return Figure(max((f.value for f in got), key=lambda v: abs(v - t.ref)))
    raise ValueError(t.agg)


def cell(t: Target, f: Figure | None) -> str:
    if not _defined(f):
        return "n/a"
    txt = t.fmt.format(f.value)
    if f.hits is not None and f.n and t.op != "info":
        txt += f" ({f.hits}/{f.n})"
    ok = t.passes(f.value)
    if ok is None:
        return txt
    return f"{txt} ok" if ok else f"{txt} **FAIL**"


def summarize(results: dict[str, dict]) -> dict[str, Figure]:
    """The "all" column: each target's figures pooled over the clips as its `agg` says."""
    return {t.key: aggregate(t, [r["figures"].get(t.key) for r in results.values()]) for t in TARGETS}


def markdown(results: dict[str, dict]) -> str:
    """One table: a row per metric, a column per clip, then the pooled column."""
    names = list(results)
    allf = summarize(results)
    head = ["metric", "target", *names, "all"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for t in TARGETS:
        row = [t.label.replace("|", "\\|"), t.text()]
        row += [cell(t, results[n]["figures"].get(t.key)) for n in names]
        row.append(cell(t, allf[t.key]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def verdicts(results: dict[str, dict]) -> dict[str, bool | None]:
    """Pass/fail of the pooled column for every target that has one."""
    allf = summarize(results)
    return {t.key: t.passes(allf[t.key].value) for t in TARGETS if t.op != "info"}

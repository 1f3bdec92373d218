#!/usr/bin/env python3
"""Evaluates `undertone score` output folders against the targets of issues 2 and 5.

    tools/eval/eval_score.py DIR [DIR ...] [--video VIDEO ...] [--json FILE]

Each DIR holds what `undertone score VIDEO -o DIR` wrote (music.wav, notes.mid,
scored.mp4, report.json). The input video is read from report.json `input.path`
unless given with --video (once per DIR, in the same order). Prints one markdown
table (a row per metric, a column per DIR, then all DIRs pooled) with pass/fail
per target; --json writes every figure and the per-bar details.
Exit status: 0 when every pooled target passes, 1 when one fails, 2 on bad input.
See docs/guide/evaluation.md for what each metric means.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scoremetrics import EvalError  # noqa: E402
from scoremetrics.metrics import evaluate_dir  # noqa: E402
from scoremetrics.table import markdown, summarize, verdicts  # noqa: E402

DEFAULT_CACHE = HERE / "work" / "cache"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="output folders of `undertone score`")
    ap.add_argument("--video", action="append", default=[],
                    help="input video of each DIR, in order (default: report.json input.path)")
    ap.add_argument("--json", type=Path, help="write every figure and per-bar detail to this file")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="folder caching optical flow and cuts per video content (default: %(default)s)")
    ap.add_argument("--no-cache", action="store_true", help="recompute flow and cuts every time")
    ap.add_argument("--keep-cut-flow", action="store_true",
                    help="keep the flow of frame pairs across a cut (CMT's exact behaviour)")
    ap.add_argument("--name", action="append", default=[], help="column name of each DIR (default: folder name)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.video and len(args.video) != len(args.dirs):
        ap.error(f"--video given {len(args.video)} times for {len(args.dirs)} folders: give it once per DIR or not at all")
    if args.name and len(args.name) != len(args.dirs):
        ap.error(f"--name given {len(args.name)} times for {len(args.dirs)} folders")
    results = {}
    try:
        for i, d in enumerate(args.dirs):
            name = args.name[i] if args.name else d.name
            print(f"evaluating {d} ...", file=sys.stderr)
            results[name] = evaluate_dir(d, args.video[i] if args.video else None,
                                         cache_dir=None if args.no_cache else args.cache,
                                         keep_cut_pairs=args.keep_cut_flow)
    except EvalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown(results))
    v = verdicts(results)
    if args.json:
        out = {
            "clips": {n: {"figures": {k: dataclasses.asdict(f) for k, f in r["figures"].items()},
                          "details": r["details"]} for n, r in results.items()},
            "all": {k: dataclasses.asdict(f) for k, f in summarize(results).items()},
            "pass": v,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, default=float))
    return 0 if all(x is not False for x in v.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# A/B benchmark of two or more `undertone` binaries on one clip: one untimed warm-up of
# each, then RUNS rounds in which every binary scores the clip once, in turn, so the
# machine's noise falls on all of them alike. Prints, per binary, the median wall time and
# the median per-stage times from report.json. Use it to decide whether a change is faster;
# tools/bench/score.sh gives the ratio against a bare decode.
#
#   tools/bench/ab.sh CLIP BINARY BINARY [BINARY...] [-- EXTRA SCORE ARGS...]
#
# Env: RUNS (default 7), OUT (scratch folder; default tools/bench/work/ab).
# RUST_BACKTRACE is cleared for the runs (as on a user's machine) unless KEEP_ENV=1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

usage() { echo "usage: tools/bench/ab.sh CLIP BINARY BINARY [BINARY...] [-- EXTRA SCORE ARGS...]" >&2; exit 2; }
[ $# -ge 3 ] || usage
clip=$1; shift
[ -f "$clip" ] || { echo "tools/bench/ab.sh: $clip: no such clip" >&2; exit 2; }
bins=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  [ -x "$1" ] || { echo "tools/bench/ab.sh: $1: not an executable" >&2; exit 2; }
  bins+=("$1"); shift
done
[ "${1:-}" = "--" ] && shift
[ ${#bins[@]} -ge 2 ] || usage
[ -n "${KEEP_ENV:-}" ] || unset RUST_BACKTRACE
runs=${RUNS:-7}
out=${OUT:-$root/tools/bench/work/ab}
mkdir -p "$out"
rows=$out/rows.txt
: >"$rows"

run() { # BINARY -> appends "index wall analyze compose render write" to $rows
  local k=$1; shift
  rm -rf "$out/run"
  local t0 t1
  t0=$(date +%s.%N)
  "${bins[$k]}" score "$clip" -o "$out/run" --quiet "$@" >/dev/null
  t1=$(date +%s.%N)
  python3 - "$k" "$t0" "$t1" "$out/run/report.json" >>"$rows" <<'PY'
import json, sys
k, t0, t1, path = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
t = json.load(open(path))["timings"]
print(k, t1 - t0, *(t[s] for s in ("analyze", "compose", "render", "write")))
PY
}

echo "clip: $clip; runs: $runs" >&2
for k in "${!bins[@]}"; do run "$k" "$@"; done  # warm-up: page cache, model files
: >"$rows"
for _ in $(seq 1 "$runs"); do
  for k in "${!bins[@]}"; do run "$k" "$@"; done
done
python3 - "$rows" "${bins[@]}" <<'PY'
import statistics, sys
rows, bins = sys.argv[1], sys.argv[2:]
by = {}
for line in open(rows):
    k, *v = line.split()
    by.setdefault(int(k), []).append([float(x) for x in v])
names = ("wall", "analyze", "compose", "render", "write")
print("| binary | " + " | ".join(f"{n} (s)" for n in names) + " |")
print("|---" * (len(names) + 1) + "|")
for k, b in enumerate(bins):
    cols = list(zip(*by[k]))
    print(f"| {b} | " + " | ".join(f"{statistics.median(c):.3f}" for c in cols) + " |")
PY

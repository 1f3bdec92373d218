#!/usr/bin/env bash
# Benchmark of `undertone score` against a bare ffmpeg decode of the same clip at the
# analysis size (issue 2: score ≤ 1.5 × decode). Side by side in one run: one untimed
# warm-up of each, then RUNS alternating timed runs of each; prints the medians, the
# ratios, and the median per-stage times from report.json. `undertone analyze` (decode +
# extraction, what `score` waits for before it can plan) is timed in the same rounds, so the
# cost of extraction beside the decode shows on its own.
#
#   tools/bench/score.sh CLIP [-- EXTRA SCORE ARGS...]
#
# Env: UNDERTONE (binary; default target/release/undertone, else target/debug/undertone),
#      RUNS (default 3), OUT (default tools/bench/work/score).
# The reference is what the issue names, a bare ffmpeg decode at the analysis size and rate
# with ffmpeg's defaults (a frame thread per core):
#   ffmpeg -nostdin -hide_banner -v error -i CLIP -map 0:v:0 -an -sn -dn
#          -vf fps=R,scale=160:H:flags=area,format=gray -f rawvideo -pix_fmt gray -
# with R = min(input fps, 30) and H = 160 × height / width rounded to even
# (source::AnalysisSize defaults: ANALYSIS_WIDTH 160, ANALYSIS_MAX_FPS 30). The file source
# (firmware/src/source/file.rs) decodes the same frames its own way: no H.264 deblocking at a
# 4x or larger downscale, one decoding and one filter thread per decoder, and a long
# constant-rate file in two parts at once (split on a key frame where the MP4 index names
# them). Those choices are part of what `undertone analyze` and `score` are timed with here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

usage() { echo "usage: tools/bench/score.sh CLIP [-- EXTRA SCORE ARGS...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
clip=$1; shift
[ "${1:-}" = "--" ] && shift
[ -f "$clip" ] || { echo "tools/bench/score.sh: $clip: no such clip" >&2; exit 2; }

bin=${UNDERTONE:-}
if [ -z "$bin" ]; then
  if [ -x "$root/target/release/undertone" ]; then bin=$root/target/release/undertone
  elif [ -x "$root/target/debug/undertone" ]; then
    bin=$root/target/debug/undertone
    echo "note: using target/debug ($bin); the shipped binary is 'cargo build --release -p undertone'" >&2
  else echo "tools/bench/score.sh: no undertone binary: run 'cargo build --release -p undertone'" >&2; exit 2
  fi
fi
runs=${RUNS:-3}
out=${OUT:-$root/tools/bench/work/score}
mkdir -p "$out"

# analysis size and rate, as source::AnalysisSize computes them
read -r w h ah rate < <(ffprobe -v error -select_streams v:0 -show_entries stream=width,height,avg_frame_rate,r_frame_rate \
  -of default=nw=1 "$clip" | python3 -c '
import sys
kv = dict(l.strip().split("=", 1) for l in sys.stdin if "=" in l)
def r(s):
    try:
        n, d = s.split("/"); return float(n) / float(d)
    except Exception:
        return 0.0
fps = r(kv.get("avg_frame_rate", "0/0")) or r(kv.get("r_frame_rate", "0/0"))
fps = fps if 0.5 < fps < 1000 else 25.0
fps = min(fps, 30.0)
w, h = int(kv["width"]), int(kv["height"])
MIN_SIDE, MAX_ASPECT = 32, 4  # source::MIN_ANALYSIS_SIDE and MAX_ASPECT
ah = max(MIN_SIDE, min(int(160 * h / w / 2 + 0.5) * 2, 160 * MAX_ASPECT))  # Rust rounds half away from 0
print(w, h, ah, ("%d" % fps) if fps == int(fps) else repr(fps))
')
filter="fps=$rate,scale=160:$ah:flags=area,format=gray"

now() { date +%s.%N; }
decode() { ffmpeg -nostdin -hide_banner -v error -i "$clip" -map 0:v:0 -an -sn -dn -vf "$filter" -f rawvideo -pix_fmt gray - >/dev/null; }
score() { rm -rf "$out/run"; "$bin" score "$clip" -o "$out/run" --quiet "$@" >/dev/null; }
analyze() { "$bin" analyze "$clip" >/dev/null; }

echo "clip: $clip (${w}x${h}); decode filter: $filter; binary: $bin; runs: $runs" >&2
decode; analyze; score "$@"  # warm-up: page cache, model files
dec_times=(); an_times=(); sc_times=(); reports=()
for i in $(seq 1 "$runs"); do
  t0=$(now); decode; t1=$(now)
  dec_times+=("$(python3 -c "print($t1 - $t0)")")
  t0=$(now); analyze; t1=$(now)
  an_times+=("$(python3 -c "print($t1 - $t0)")")
  t0=$(now); score "$@"; t1=$(now)
  sc_times+=("$(python3 -c "print($t1 - $t0)")")
  cp "$out/run/report.json" "$out/report-$i.json"
  reports+=("$out/report-$i.json")
done

python3 - "$clip" "${dec_times[*]}" "${an_times[*]}" "${sc_times[*]}" "${reports[@]}" <<'EOF'
import json, statistics, sys
clip, reports = sys.argv[1], sys.argv[5:]
dec, an, sc = ([float(x) for x in a.split()] for a in sys.argv[2:5])
md, ma, ms = statistics.median(dec), statistics.median(an), statistics.median(sc)
ratio = ms / md if md > 0 else float("inf")
print(f"| clip | ffmpeg decode (s) | undertone analyze (s) | undertone score (s) | analyze / decode | score / decode | target |")
print(f"|---|---|---|---|---|---|---|")
print(f"| {clip.split('/')[-1]} | {md:.3f} | {ma:.3f} | {ms:.3f} | {ma / md:.2f} | {ratio:.2f} | ≤ 1.5 {'ok' if ratio <= 1.5 else 'FAIL'} |")
print()
print("runs (s): decode " + ", ".join(f"{x:.3f}" for x in dec) + "; analyze " + ", ".join(f"{x:.3f}" for x in an)
      + "; score " + ", ".join(f"{x:.3f}" for x in sc))
stages = {}
for p in reports:
    for k, v in (json.load(open(p)).get("timings") or {}).items():
        if isinstance(v, (int, float)):
            stages.setdefault(k, []).append(float(v))
if stages:
    print()
    print("| stage (report.json timings, median) | s | share of total |")
    print("|---|---|---|")
    total = statistics.median(stages["total"]) if "total" in stages else None
    for k, v in stages.items():
        m = statistics.median(v)
        share = f"{m / total:.0%}" if total and k != "total" else ""
        print(f"| {k} | {m:.3f} | {share} |")
EOF

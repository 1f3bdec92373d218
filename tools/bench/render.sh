#!/usr/bin/env bash
# Benchmark of the renderer (issue 5: >= 100x real time on one core, RSS <= 64 MB),
# side by side with fluidsynth rendering the same MIDI in the same run.
#
#   tools/bench/render.sh [GENRE] [TEMPO] [SECONDS]      (defaults: pop 100 60)
#
# 1. `undertone templates render` renders a piece (the O'Neill reel of the render tests,
#    looped, sections every 4 bars) through the template library and the melody synth,
#    and writes the piece's MIDI (fitted melody + the templates' backing parts).
# 2. fluidsynth renders that same MIDI with the full FluidR3_GM at 48 kHz.
# Both are pinned to one core (taskset -c 0); CPU seconds and peak RSS come from
# /usr/bin/time; the renderer also prints the time of its render call alone.
# With CALLGRIND=1 both also run once under `valgrind --tool=callgrind`: instruction counts
# are repeatable on a loaded machine where CPU seconds are not (ratio printed at the end).
# Env: UNDERTONE (binary; default target/release/undertone), RUNS (default 3), OUT, CALLGRIND.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
genre=${1:-pop}; tempo=${2:-100}; seconds=${3:-60}
bin=${UNDERTONE:-$root/target/release/undertone}
[ -x "$bin" ] || { echo "no $bin: run 'cargo build --release -p undertone'" >&2; exit 2; }
font=${FLUIDR3:-/usr/share/sounds/sf2/FluidR3_GM.sf2}
runs=${RUNS:-3}
out=${OUT:-$root/tools/bench/work/render}
mkdir -p "$out"
notes=$root/firmware/src/render/testdata/reel.json

measure() { # label cmd... -> prints "label cpu_s rss_kb" lines into $out/times
  local label=$1; shift
  /usr/bin/time -f "$label %U %S %M %e" -a -o "$out/times" taskset -c 0 "$@" >"$out/$label.log" 2>&1
}
: >"$out/times"
# warm-up (page cache), untimed
"$bin" --data "$root" templates render --notes "$notes" --genre "$genre" --tempo "$tempo" --seconds "$seconds" \
  --out "$out/ours.wav" --midi "$out/piece.mid" >/dev/null
fluidsynth -ni -q -r 48000 -F "$out/fluidsynth.wav" "$font" "$out/piece.mid" >/dev/null 2>&1
for i in $(seq "$runs"); do
  measure ours "$bin" --data "$root" templates render --notes "$notes" --genre "$genre" --tempo "$tempo" \
    --seconds "$seconds" --out "$out/ours.wav" --midi "$out/piece.mid"
  grep -o 'in [0-9.]* s' "$out/ours.log" | awk '{print "ours_render_call", $2}' >>"$out/calls"
  measure fluidsynth fluidsynth -ni -q -r 48000 -F "$out/fluidsynth.wav" "$font" "$out/piece.mid"
done
python3 - "$out/times" "$seconds" "$out/calls" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
secs = float(sys.argv[2])
calls = [float(l.split()[1]) for l in open(sys.argv[3]) if l.strip()][-len([r for r in rows if r[0] == "ours"]):]
def med(label, i):
    return statistics.median(float(r[i]) for r in rows if r[0] == label)
res = {}
for label in ("ours", "fluidsynth"):
    cpu = med(label, 1) + med(label, 2)
    res[label] = cpu
    print(f"{label:11s} cpu {cpu:7.3f} s  wall {med(label, 4):7.3f} s  peak RSS {med(label, 3) / 1024:6.1f} MiB  "
          f"-> {secs / cpu:6.1f}x real time (whole process, one core)")
rc = statistics.median(calls)
print(f"ours render() call alone: {rc:.3f} s -> {secs / rc:.1f}x real time")
print(f"ratio fluidsynth cpu / ours cpu: {res['fluidsynth'] / res['ours']:.2f}")
PY
rm -f "$out/calls"
if [ "${CALLGRIND:-0}" = 1 ]; then
  instr() { # label cmd... -> total instructions executed
    local label=$1; shift
    valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$label" "$@" >"$out/$label.cg.log" 2>&1
    callgrind_annotate "$out/callgrind.$label" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}'
  }
  ours_i=$(instr ours "$bin" --data "$root" templates render --notes "$notes" --genre "$genre" --tempo "$tempo" \
    --seconds "$seconds" --out "$out/ours.wav" --midi "$out/piece.mid")
  fs_i=$(instr fluidsynth fluidsynth -ni -q -r 48000 -F "$out/fluidsynth.wav" "$font" "$out/piece.mid")
  python3 -c "import sys; o, f = int(sys.argv[1]), int(sys.argv[2]); print(f'instructions: ours {o/1e9:.2f} G, fluidsynth {f/1e9:.2f} G, ratio fluidsynth / ours {f/o:.2f}')" "$ours_i" "$fs_i"
fi

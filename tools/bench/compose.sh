#!/usr/bin/env bash
# Note-model speed, side by side on one core: tract (inside `undertone compose`, sampling and
# masks included) against onnxruntime replaying the very same model steps on the same int8 ONNX.
#
#   tools/bench/compose.sh [BARS]        (default 200 bars; needs a release build:
#                                         cargo build --release -p undertone)
#
# Prints two JSON lines and the ratio tract/onnxruntime per model step. Both are pinned to one
# CPU core with taskset (the board's budget is one core for the note model).
set -euo pipefail
cd "$(dirname "$0")/../.."
BARS="${1:-200}"
BIN="${UNDERTONE_BIN:-target/release/undertone}"
PY="${PYTHON:-.venv/bin/python}"
WORK=tools/bench/work
MODEL=models/notes/notes_int8.onnx
mkdir -p "$WORK"
[ -x "$BIN" ] || { echo "compose.sh: $BIN missing: cargo build --release -p undertone" >&2; exit 1; }
[ -x "$PY" ] || { echo "compose.sh: $PY missing: run tools/setup.sh (it makes the project venv)" >&2; exit 1; }
if ! "$PY" -c "import onnxruntime" 2>/dev/null; then
  echo "compose.sh: installing onnxruntime into $PY's venv (tools/bench/requirements.txt)" >&2
  "$PY" -m pip install -q -r tools/bench/requirements.txt
fi
CORE="$(taskset -pc $$ | sed 's/.*: *//; s/[,-].*//')"

tract_json="$(taskset -c "$CORE" "$BIN" compose --bars "$BARS" --density 0,2,4,6,7,5,3,1 --strength 0,1,2,3 \
  --sections-at 0,8,16,24 --seed 1 --timing --steps-out "$WORK/compose_steps.jsonl" -o "$WORK/compose_bench.mid" | tail -n 1)"
ort_json="$(taskset -c "$CORE" "$PY" tools/bench/compose_ort.py "$WORK/compose_steps.jsonl" "$MODEL")"
echo "tract:       $tract_json"
echo "onnxruntime: $ort_json"
"$PY" - "$tract_json" "$ort_json" <<'EOF'
import json, sys
t, o = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({
    "sampled_tokens_per_s_tract": round(t["sampled_tokens_per_s"], 1),
    "ms_per_step_tract_incl_sampling_and_refills": round(t["ms_per_step"], 4),
    "ms_per_step_onnxruntime_incl_refills": round(o["ms_per_step"], 4),
    "tract_over_onnxruntime": round(t["seconds"] / o["seconds"], 2),
}))
EOF

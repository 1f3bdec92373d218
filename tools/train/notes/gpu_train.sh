#!/usr/bin/env bash
# The note model's training run on one GPU: three variants of the same size class side by side
# (a model this small leaves the GPU mostly idle, so three runs cost the wall time of one).
#
#   OUT=DIR tools/train/notes/gpu_train.sh [MINUTES]     (default 7 minutes per variant)
#
# Needs tools/train/work/notes/tokens.npz (build_tokens.py) and python3 with torch and numpy.
# Writes DIR/<variant>.pt (the best held-out step's weights: export.py --ckpt DIR/<variant>.pt)
# and DIR/<variant>.log. Variants:
#   l4d01  4 layers, d 256, FF 1024, dropout 0.1 (the card's architecture)
#   l4d02  the same with dropout 0.2 (the corpus is small: 700 k tokens)
#   l3d01  3 layers, dropout 0.1 (a quarter less work per decoding step)
set -euo pipefail
cd "$(dirname "$0")/../../.."
MIN="${1:-7}"
: "${OUT:?set OUT to the output folder}"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
common=(--device cuda --batch 64 --lr 1e-3 --warmup 200 --steps 1000000 --minutes "$MIN" --threads 4
        --eval-every 200 --ckpt-every 1000 --seed 1234)
pids=()
run() {
  local name="$1"; shift
  "$PY" tools/train/notes/train.py "${common[@]}" --ckpt "/tmp/$name.ckpt" --best "$OUT/$name.pt" "$@" \
    >"$OUT/$name.log" 2>&1 &
  pids+=($!)
}
run l4d01 --layers 4 --dropout 0.1
run l4d02 --layers 4 --dropout 0.2
run l3d01 --layers 3 --dropout 0.1
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
for f in "$OUT"/*.log; do echo "== $f"; grep -E "eval step|best so far|done|Error|error" "$f" | tail -4; done
exit $rc

#!/usr/bin/env bash
# ARM figures, side by side with the native ones in one run: the note model's tokens/s
# (`undertone compose --timing`) and the extraction's frames/s (`undertone analyze`), for the
# native release binary and for the aarch64 one under qemu-user on a Cortex-A53 model
# (QEMU_CPU=cortex-a53). Emulation makes the ARM figures pessimistic: TCG runs typical code
# about 10x slower than the host; a real Cortex-A53 at 1.6-1.8 GHz (i.MX 8M Plus) is nearer
# 3-5x slower than a desktop core, an A76 (Pi 5, RK3588) nearer 1.5-2x.
#
#   tools/cross/bench.sh [BARS] [CLIP]   (defaults: 64 bars, testdata/clips/carphone_pristine.mp4)
#   NATIVE=path/to/undertone tools/cross/bench.sh
# Needs the native release build (cargo build --release -p undertone) and tools/cross/build.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. tools/cross/env.sh
bars=${1:-64}
clip=${2:-testdata/clips/carphone_pristine.mp4}
native=${NATIVE:-target/release/undertone}
arm=${ARM:-$CROSS_TARGET_DIR/$CROSS_TARGET/release/undertone}
qemu=($CROSS_QEMU)
work=tools/cross/work
mkdir -p "$work"
for b in "$native" "$arm"; do [ -x "$b" ] || { echo "bench: $b missing" >&2; exit 1; }; done

compose() { "$@" compose --bars "$bars" --density 0,2,4,6,7,5,3,1 --strength 0,1,2,3 \
  --sections-at 0,8,16,24 --seed 1 --timing -o "$work/bench.mid" | tail -n 1; }
analyze() { "$@" analyze "$clip" --json "$work/bench_analyze.json" 2>&1 | grep -o "extraction: [0-9]* frames/s[^)]*)" ; }

echo "native ($(uname -m)): $native"
n_compose=$(compose "$native"); echo "  compose: $n_compose"
n_analyze=$(analyze "$native"); echo "  analyze: $n_analyze"
echo "aarch64 under ${qemu[*]} ($QEMU_CPU): $arm"
a_compose=$(compose "${qemu[@]}" "$arm"); echo "  compose: $a_compose"
a_analyze=$(analyze "${qemu[@]}" "$arm"); echo "  analyze: $a_analyze"
python3 - "$n_compose" "$a_compose" "$n_analyze" "$a_analyze" <<'PY'
import json, re, sys
nc, ac = json.loads(sys.argv[1]), json.loads(sys.argv[2])
fps = lambda s: float(re.search(r"extraction: (\d+) frames/s", s).group(1))
nf, af = fps(sys.argv[3]), fps(sys.argv[4])
print(json.dumps({
    "tokens_per_s_native": round(nc["sampled_tokens_per_s"], 1),
    "tokens_per_s_a53_qemu": round(ac["sampled_tokens_per_s"], 1),
    "compose_slowdown": round(nc["sampled_tokens_per_s"] / ac["sampled_tokens_per_s"], 1),
    "extract_fps_native": nf,
    "extract_fps_a53_qemu": af,
    "extract_slowdown": round(nf / af, 1),
}))
PY

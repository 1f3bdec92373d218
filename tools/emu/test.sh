#!/usr/bin/env bash
# The board VM test, end to end from a fresh checkout (docs/guide/board.md):
#   1. host packages (tools/emu/setup.sh), 2. the aarch64 firmware (tools/cross/build.sh),
#   3. the initramfs (Debian's arm64 kernel, vivid, snd-aloop, virtio-snd, busybox, the
#      firmware and its data), 4. one boot of QEMU's virt board on a Cortex-A53: the
#      firmware runs from the vivid camera to the virtio-sound card for SECONDS, 5. the host
#      checks (frames captured, no underruns, the WAV is music) with tools/eval's venv.
#
#   tools/emu/test.sh [--play] [SECONDS]     # default: the live music engine, 30 s
#   OUT=dir tools/emu/test.sh                # where the WAV, report and logs go
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
mode=music
secs=30
for a in "$@"; do
  case "$a" in
    --play) mode=play ;;
    [0-9]*) secs=$a ;;
    *) echo "usage: tools/emu/test.sh [--play] [SECONDS]" >&2; exit 2 ;;
  esac
done
out=${OUT:-tools/emu/work/out}
[ "${SKIP_APT:-0}" = 1 ] || tools/emu/setup.sh
tools/cross/build.sh
if [ "$mode" = play ]; then
  # `--play` loops a rendered example through the whole audio path (no music engine).
  mkdir -p tools/emu/work
  ffmpeg -loglevel error -y -i docs/examples/pop.ogg -ar 48000 -ac 2 tools/emu/work/play.wav
  export PLAY_WAV=tools/emu/work/play.wav
fi
tools/emu/build-initramfs.sh
tools/emu/run-vm.sh "$out" "$mode" "$secs"
.venv/bin/python tools/emu/check.py "$out" --min-seconds $((secs / 2)) --json "$out/check.json"

#!/usr/bin/env bash
# The main job in one command on a fresh Debian machine: set-up, release build, then score the
# bundled sample clip (the Big Buck Bunny trailer, CC BY 3.0 Blender Foundation) into out/demo/.
#   tools/demo.sh [VIDEO] [extra `undertone score` flags...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tools/setup.sh
cargo build --release -p undertone
video="${1:-testdata/clips/trailer_bbb.mp4}"
shift || true
target/release/undertone score "$video" -o out/demo "$@"
echo "open out/demo/scored.mp4 to watch it with its music; out/demo/report.png shows how the music follows the video"

#!/usr/bin/env bash
# Fetches held-out clips: real videos that no part of undertone was tuned on, from Debian's
# opencv-doc package (OpenCV's sample data; no other network source), checks their sha256
# and puts them into testdata/clips/heldout/ (ignored by git). They are what
# `tools/eval/run_clips.sh testdata/clips/heldout` and `tools/bench/score.sh` check the
# engine on beside the bundled clips: other codecs (DivX 3, MPEG-4 Part 2, Cinepak), other
# rates (10, 15, 24, 30 fps) and other footage (a film excerpt, a street scene from a fixed
# camera, object-tracking takes). Idempotent.
#
#   clip           what                                          codec, size, rate, length
#   Megamind.avi   an animated film's excerpt with cuts          MPEG-4 Part 2, 720x528, 24 fps, 11.3 s
#   vtest.avi      pedestrians filmed from a fixed camera        DivX 3, 768x576, 10 fps, 79.5 s
#   tree.avi       a tree in wind, frames repeating skipped      Cinepak, 320x240, 15 fps, 29.6 s
#   box.mp4        a hand-held box, tracking demo                H.264, 640x480, 30 fps, 15.2 s
#   cup.mp4        a hand-held cup, tracking demo                H.264, 640x480, 27 fps, 8.1 s
#
# Source and licence: opencv-doc 4.6.0+dfsg-12 (Debian 12 "bookworm", main), files
# usr/share/doc/opencv-doc/examples/data/*.avi and opencv4/html/{box,cup}.mp4.gz; OpenCV's
# samples, under the package's copyright file (/usr/share/doc/opencv-doc/copyright).
#
#   tools/clips/fetch_heldout.sh [DEST]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest="${1:-$root/testdata/clips/heldout}"
cache="$root/build/clips-cache"
mkdir -p "$dest" "$cache"

check() { # file sha256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

declare -A WANT=(
  [Megamind.avi]=0057387cb7e75c8fd1663b62cfdc51fa53f527795d0fe3c1fea2fd159d3130b5
  [vtest.avi]=45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf
  [tree.avi]=4666099d0f704e310047b2f0a5ec9f936cb76a7271de9a2e70a0c57f82ac82dc
  [box.mp4]=62b744b99403f899707c43398a3822441add6160379ab6dd6c12bde9e3075f8d
  [cup.mp4]=37db9cee98f70b1458985a15ad2e5b0183e90e24c281b534afcf812e5986154f
)
all_ok=1
for f in "${!WANT[@]}"; do check "$dest/$f" "${WANT[$f]}" || all_ok=0; done
if [ "$all_ok" = 1 ]; then echo "held-out clips ready in $dest"; exit 0; fi

deb=$cache/opencv-doc_4.6.0+dfsg-12_all.deb
DEB_SHA=4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a
if ! check "$deb" "$DEB_SHA"; then
  # apt-get download needs the package lists (apt-get update once, as root)
  (cd "$cache" && apt-get download opencv-doc=4.6.0+dfsg-12) || {
    echo "error: cannot download opencv-doc 4.6.0+dfsg-12 (run 'apt-get update' first; Debian 12's main archive has it)" >&2
    exit 1
  }
  check "$deb" "$DEB_SHA" || { echo "error: $deb has the wrong checksum; delete it and run again" >&2; exit 1; }
fi
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
dpkg-deb -x "$deb" "$unpacked"
doc=$unpacked/usr/share/doc/opencv-doc
for f in Megamind.avi vtest.avi tree.avi; do cp "$doc/examples/data/$f" "$dest/$f.tmp" && mv "$dest/$f.tmp" "$dest/$f"; done
for f in box.mp4 cup.mp4; do gunzip -c "$doc/opencv4/html/$f.gz" >"$dest/$f.tmp" && mv "$dest/$f.tmp" "$dest/$f"; done
for f in "${!WANT[@]}"; do
  check "$dest/$f" "${WANT[$f]}" || { echo "error: $dest/$f has the wrong checksum" >&2; exit 1; }
done
echo "held-out clips ready in $dest"

#!/usr/bin/env bash
# Renders the listening examples (one per style, 20 s, Ogg Vorbis) with undertone's own
# engine: the O'Neill reel of the render tests (firmware/src/render/testdata/reel.json)
# as the melody, sections of 4 bars with rising energy (so each example walks through the
# intensity layers and two joins). ffmpeg only compresses the engine's WAV.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${UNDERTONE:-$root/target/release/undertone}
[ -x "$bin" ] || bin=$root/target/debug/undertone
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
while read -r genre tempo; do
  "$bin" --data "$root" templates render --notes "$root/firmware/src/render/testdata/reel.json" \
    --genre "$genre" --tempo "$tempo" --seconds 20 --section-bars 4 --out "$work/$genre.wav"
  ffmpeg -nostdin -v error -y -i "$work/$genre.wav" -c:a libvorbis -q:a 4 -map_metadata -1 "$here/$genre.ogg"
done <<'LIST'
lofi 84
pop 116
ambient 76
cinematic 92
acoustic 104
LIST
ls -l "$here"/*.ogg

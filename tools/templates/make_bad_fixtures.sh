#!/usr/bin/env bash
# Writes the renderer's bad-input fixtures (firmware/src/render/testdata/): real Ogg
# Vorbis streams with the wrong sample rate / channel count, cut from a template.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$root/templates/audio/lofi_I-V-vi-IV_l1.ogg"
out="$root/firmware/src/render/testdata"
ffmpeg -v error -y -i "$src" -t 0.5 -ar 44100 -ac 2 -c:a libvorbis -q:a 0 -map_metadata -1 "$out/wrong_rate.ogg"
ffmpeg -v error -y -i "$src" -t 0.5 -ar 48000 -ac 1 -c:a libvorbis -q:a 0 -map_metadata -1 "$out/mono.ogg"
ls -l "$out"

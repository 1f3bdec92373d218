#!/usr/bin/env bash
# Rebuilds templates/ (audio, MIDI patterns, index, LICENSES) and templates/melody.sf2.
# Needs: fluidsynth, ffmpeg (libvorbis), fluid-soundfont-gm, node/npm, and the Python
# packages in requirements.txt (the project's .venv has them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
font="${FLUIDR3:-/usr/share/sounds/sf2/FluidR3_GM.sf2}"
python="${PYTHON:-$root/.venv/bin/python}"
[ -f "$font" ] || { echo "missing $font: apt-get install fluid-soundfont-gm" >&2; exit 1; }
rm -rf "$root/templates/audio" "$root/templates/midi"
(cd "$here" && "$python" build.py --font "$font" --out "$root/templates" --work "$here/work")
(cd "$here/sfcut" && npm ci --no-audit --no-fund >/dev/null && node cut.mjs "$font" "$root/templates/melody.sf2")
du -sh "$root/templates"

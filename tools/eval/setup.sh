#!/usr/bin/env bash
# Sets up the Python environment of tools/eval: the project venv /work/main/.venv
# (or $VENV), created with `python3 -m venv` if absent, with tools/eval/requirements.txt.
# Needs ffmpeg on PATH (the README's setup installs it). Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="${VENV:-$root/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
# scenedetect pulls the GUI build of OpenCV, which needs libGL; both builds ship the same
# `cv2` folder, so put the headless one back on top (same version: nothing else changes).
headless=$(grep -E '^opencv-python-headless==' "$here/requirements.txt" | head -n1)
if [ -n "$headless" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$headless"
fi
command -v ffmpeg >/dev/null || { echo "tools/eval needs ffmpeg: apt-get install ffmpeg" >&2; exit 1; }
"$venv/bin/python" -c "import cv2, librosa, pyloudnorm, scenedetect, mido, soundfile" \
  && echo "tools/eval ready: $venv/bin/python tools/eval/eval_score.py DIR..."

#!/usr/bin/env bash
# The web page's tests beyond `cargo test`: the browser walk-through (Debian's chromium driven by
# playwright-core, tests/web/browser.test.mjs; screenshots to docs/images/web-*.png) and
# schemathesis against /api/openapi.json (tests/web/api_schema.py). Both run a real
# `undertone run` (target/debug/undertone, built by `cargo build`), audio paced by a private
# PulseAudio null sink. Needs what tools/setup.sh installs (chromium, pulseaudio, ffmpeg, sox,
# tests/web/node_modules, the .venv with tools/web/requirements.txt).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
[ -x "${CARGO_TARGET_DIR:-target}/debug/undertone" ] || cargo build -p undertone
(cd tests/web && npm test)
.venv/bin/python tests/web/api_schema.py

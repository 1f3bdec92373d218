#!/usr/bin/env bash
# Runs every test of the project: set-up (idempotent), the Rust workspace tests (unit tests
# next to the code, end-to-end tests of the binary on real clips), and the Python tools' tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tools/setup.sh
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast
if [ -d tools/eval/tests ]; then
  .venv/bin/python -m pytest -q tools/eval/tests
fi
# The Yocto layer: crates list in sync with Cargo.lock, oelint-adv, systemd-analyze on the unit.
tools/yocto/check.sh
# The web page: browser walk-through (chromium + playwright-core) and schemathesis on /api/.
tools/web/test.sh

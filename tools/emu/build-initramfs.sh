#!/usr/bin/env bash
# Builds the board VM's arm64 initramfs in tools/emu/work/: Debian's arm64 kernel (from
# bookworm-backports: 6.12, the first Debian kernel with virtio-sound) with the modules the
# test needs (vivid, snd-aloop, virtio_snd, 9p), busybox, the cross-built firmware with the
# shared libraries it links, ALSA's configuration, and the firmware's data (models/,
# templates/). Packages are fetched with `apt-get download` (arm64 multiarch) and cached.
#
#   tools/emu/build-initramfs.sh [BINARY]   # default: the tools/cross/build.sh output
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. tools/cross/env.sh
work=tools/emu/work
bin=${1:-$CROSS_TARGET_DIR/$CROSS_TARGET/release/undertone}
# The kernel: bookworm's 6.1 lacks CONFIG_SND_VIRTIO; the backports 6.12 has it, vivid and
# snd-aloop. Pinned so the test is the same everywhere (bump with the backports archive).
KERNEL_PKG=${KERNEL_PKG:-linux-image-6.12.95+deb12-arm64-unsigned}
MODULES=(vivid snd-aloop virtio_snd 9p 9pnet_virtio)

[ -x "$bin" ] || { echo "emu: $bin not found; run tools/cross/build.sh first" >&2; exit 1; }
mkdir -p "$work/debs"
need=()
ls "$work"/debs/"${KERNEL_PKG}"_*_arm64.deb >/dev/null 2>&1 || need+=("$KERNEL_PKG:arm64")
ls "$work"/debs/busybox-static_*_arm64.deb >/dev/null 2>&1 || need+=("busybox-static:arm64")
if [ ${#need[@]} -gt 0 ]; then
  echo "emu: apt-get download ${need[*]}"
  (cd "$work/debs" && apt-get download "${need[@]}" 2>&1 | grep -v "unsandboxed" || true)
  for p in "${need[@]}"; do
    ls "$work"/debs/"${p%%:*}"_*_arm64.deb >/dev/null 2>&1 || {
      echo "emu: could not download ${p}. It needs arm64 multiarch and bookworm-backports in apt's" >&2
      echo "sources (tools/emu/setup.sh adds both)." >&2
      exit 1
    }
  done
fi

rm -rf "$work/kernel" "$work/rootfs"
mkdir -p "$work/kernel" "$work/rootfs"
dpkg-deb -x "$work"/debs/"${KERNEL_PKG}"_*_arm64.deb "$work/kernel"
kver=$(ls "$work/kernel/lib/modules")
cp "$work/kernel/boot/vmlinuz-$kver" "$work/vmlinuz"
# The package ships no modules.dep (made at install time): make it for the whole tree.
/sbin/depmod -b "$work/kernel" "$kver"

r=$work/rootfs
mkdir -p $r/bin $r/sbin $r/usr/bin $r/lib $r/proc $r/sys $r/dev $r/tmp $r/root $r/etc \
  $r/usr/share/undertone "$r/lib/modules/$kver"
bb=$(mktemp -d)
dpkg-deb -x "$work"/debs/busybox-static_*_arm64.deb "$bb"
cp "$bb/bin/busybox" $r/bin/busybox
rm -rf "$bb"

# Modules and everything they depend on, from the package's modules.dep, decompressed
# (busybox's modprobe reads plain .ko files), then depmod for the small tree.
python3 - "$work/kernel/lib/modules/$kver" "$r/lib/modules/$kver" "${MODULES[@]}" <<'PY'
import lzma, os, sys
src, dst, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
deps = {}
for line in open(os.path.join(src, "modules.dep")):
    path, _, rest = line.partition(":")
    deps[path] = rest.split()
by_name = {os.path.basename(p).split(".ko")[0].replace("-", "_"): p for p in deps}
todo = [by_name[w.replace("-", "_")] for w in wanted]
seen = set()
while todo:
    p = todo.pop()
    if p in seen:
        continue
    seen.add(p)
    todo.extend(deps[p])
for p in sorted(seen):
    out = os.path.join(dst, p[:-3] if p.endswith(".xz") else p)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    data = open(os.path.join(src, p), "rb").read()
    open(out, "wb").write(lzma.decompress(data) if p.endswith(".xz") else data)
print(f"emu: {len(seen)} modules")
PY
cp "$work/kernel/lib/modules/$kver/modules.order" "$work/kernel/lib/modules/$kver/modules.builtin"* "$r/lib/modules/$kver/" 2>/dev/null || true
sed -i 's/\.ko\.xz$/.ko/' "$r/lib/modules/$kver/modules.order"
/sbin/depmod -b "$r" "$kver"

# The firmware and the shared libraries it needs (the dynamic loader resolves them in /lib).
cp "$bin" $r/usr/bin/undertone
aarch64-linux-gnu-strip $r/usr/bin/undertone
libdirs=(/usr/aarch64-linux-gnu/lib /usr/lib/aarch64-linux-gnu /lib/aarch64-linux-gnu)
copy_needed() {
  local f=$1 lib
  for lib in $(aarch64-linux-gnu-readelf -d "$f" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
    [ -e "$r/lib/$lib" ] && continue
    for d in "${libdirs[@]}"; do
      if [ -e "$d/$lib" ]; then cp -L "$d/$lib" "$r/lib/$lib"; copy_needed "$r/lib/$lib"; break; fi
    done
    [ -e "$r/lib/$lib" ] || { echo "emu: $lib (needed by $f) not found" >&2; exit 1; }
  done
}
copy_needed $r/usr/bin/undertone
cp -L /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 $r/lib/
# alsa-lib's configuration (architecture independent).
mkdir -p $r/usr/share
cp -r /usr/share/alsa $r/usr/share/alsa

# Data: models and templates as the box installs them (/usr/share/undertone), a WAV for
# `--play`, and a clip for the VM's benchmark.
cp -r models templates $r/usr/share/undertone/
if [ -f "${PLAY_WAV:-}" ]; then cp "$PLAY_WAV" $r/usr/share/undertone/play.wav; fi

mkdir -p $r/etc/undertone
cp tools/emu/config.toml $r/etc/undertone/config.toml
cp tools/emu/init.sh $r/init
chmod +x $r/init
(cd $r && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$work/initramfs.cpio"
echo "emu: $work/vmlinuz ($kver), $work/initramfs.cpio ($(du -h "$work/initramfs.cpio" | cut -f1))"

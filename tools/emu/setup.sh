#!/usr/bin/env bash
# Host packages for the board VM test on Debian bookworm (idempotent): QEMU >= 8.2 for
# virtio-sound (bookworm has 7.2; bookworm-backports has 10.0), arm64 multiarch for the
# arm64 kernel, busybox and libasound packages, cpio and kmod's depmod to pack the initramfs.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
changed=0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64; changed=1
fi
if [ "$codename" = bookworm ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
  changed=1
fi
qemu_ok() {
  command -v qemu-system-aarch64 >/dev/null &&
    qemu-system-aarch64 -M virt -device help 2>/dev/null | grep -q virtio-sound-pci
}
missing=()
for p in cpio kmod xz-utils file; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ $changed = 1 ] || [ ${#missing[@]} -gt 0 ] || ! qemu_ok; then
  $SUDO apt-get update -qq
  [ ${#missing[@]} -gt 0 ] && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  if ! qemu_ok; then
    rel=(); [ "$codename" = bookworm ] && rel=(-t bookworm-backports)
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${rel[@]}" qemu-system-arm qemu-user >/dev/null
  fi
fi
qemu_ok || { echo "emu: qemu-system-aarch64 has no virtio-sound-pci (needs QEMU >= 8.2)" >&2; exit 1; }

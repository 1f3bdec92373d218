# This product's RAUC system.conf (two rootfs slots, state on /data) and its keyring: the CA
# from UNDERTONE_RAUC_KEYS_DIR (tools/yocto/make-keys.sh), not meta-rauc's example CA.
# Only with DISTRO = "undertone-os".
FILESEXTRAPATHS:prepend:undertone-os := "${THISDIR}/files:${UNDERTONE_RAUC_KEYS_DIR}:"

# system.conf names the machine: one package per machine.
PACKAGE_ARCH:undertone-os = "${MACHINE_ARCH}"

do_install:prepend:undertone-os() {
    sed -i -e 's|@MACHINE@|${MACHINE}|g' ${UNPACKDIR}/system.conf
}

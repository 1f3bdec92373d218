SUMMARY = "RAUC update bundle of the undertone image"
DESCRIPTION = "Signed RAUC bundle (verity format) carrying the undertone-image rootfs for \
               the inactive A/B slot. Install on the box with 'rauc install FILE.raucb'."
SECTION = "base"
LICENSE = "MIT"

inherit bundle

# Only boxes of the same product and board accept it (system.conf carries the same string).
RAUC_BUNDLE_COMPATIBLE = "undertone-${MACHINE}"
RAUC_BUNDLE_VERSION = "${DISTRO_VERSION}"
RAUC_BUNDLE_DESCRIPTION = "undertone ${DISTRO_VERSION} for ${MACHINE}"
# verity: the payload is checked block by block while it installs, and bundles can stream.
RAUC_BUNDLE_FORMAT = "verity"

RAUC_BUNDLE_SLOTS = "rootfs"
RAUC_SLOT_rootfs = "undertone-image"
RAUC_SLOT_rootfs[fstype] = "ext4"

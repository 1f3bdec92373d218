SUMMARY = "undertone appliance image: the firmware on a read-only rootfs with A/B updates"
DESCRIPTION = "Minimal systemd image that boots into the undertone service. The rootfs is \
               read-only; state lives on the persistent /data partition; RAUC installs \
               signed update bundles into the inactive rootfs slot."
SECTION = "base"
LICENSE = "MIT"

IMAGE_INSTALL = "\
    packagegroup-core-boot \
    undertone \
    undertone-data-partition \
    rauc \
    rauc-mark-good \
    libubootenv-bin \
    u-boot-env \
    ${UNDERTONE_SLOT_KERNEL} \
    alsa-utils-aplay \
    alsa-utils-amixer \
    ${CORE_IMAGE_EXTRA_INSTALL} \
    "

inherit core-image

# No locales, no package manager on the box: updates come only as RAUC bundles.
IMAGE_LINGUAS = ""
IMAGE_FEATURES += "read-only-rootfs"
IMAGE_FEATURES:remove = "package-management"

# Each rootfs slot is a fixed 1 GiB partition (files/wic/*.wks): fail the build early when
# the image no longer fits rather than at flashing time.
IMAGE_ROOTFS_MAXSIZE = "1048576"

# The boot partition holds the boot script (U-Boot picks the slot); wic needs it deployed.
WKS_FILE_DEPENDS:append = " undertone-boot-script"

# Mount points of the boot and data partitions (fstab from base-files) in the read-only rootfs.
ROOTFS_POSTPROCESS_COMMAND += "undertone_mountpoints"
undertone_mountpoints[doc] = "Creates /data and /boot, where fstab mounts the data and boot partitions"
undertone_mountpoints() {
    install -d -m 0755 ${IMAGE_ROOTFS}/data ${IMAGE_ROOTFS}/boot
}

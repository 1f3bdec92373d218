# fstab for the A/B layout (files/wic/*.wks): read-only root, the boot partition (boot script,
# and on the Raspberry Pi the U-Boot environment file), and the persistent /data partition.
# It lives in the rootfs rather than being written by wic, so images installed from a RAUC
# bundle mount the same partitions. Only with DISTRO = "undertone-os".
FILESEXTRAPATHS:prepend:undertone-os := "${THISDIR}/files:"

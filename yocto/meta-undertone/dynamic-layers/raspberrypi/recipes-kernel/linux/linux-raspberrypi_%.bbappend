# RAUC on the Raspberry Pi kernel: meta-rauc adds these options to linux-yocto only (the
# Rockchip boards use linux-yocto); linux-raspberrypi needs them from here.
FILESEXTRAPATHS:prepend:undertone-os := "${THISDIR}/files:"
SRC_URI:append:undertone-os = " file://undertone-rauc.cfg"

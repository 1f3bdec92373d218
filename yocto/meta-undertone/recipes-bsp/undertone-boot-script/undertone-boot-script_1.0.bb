SUMMARY = "U-Boot script for undertone's A/B rootfs slots (RAUC)"
DESCRIPTION = "boot.scr for the boot partition: picks rootfs slot A or B from the U-Boot \
               environment that RAUC maintains, counts the tries, and boots the kernel of \
               the chosen slot."
SECTION = "bootloaders"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://boot.cmd.in;beginline=1;endline=1;md5=b2dccaa94b3629a08bfb4f983cad6f89"

DEPENDS = "u-boot-mkimage-native"
# Replaces meta-raspberrypi's plain boot script (which boots the kernel from the boot partition).
PROVIDES += "u-boot-default-script"

SRC_URI = "file://boot.cmd.in"

S = "${UNPACKDIR}"

inherit deploy nopackages kernel-arch

INHIBIT_DEFAULT_DEPS = "1"

# Per board (U-Boot's own variables such as ${kernel_addr_r} are not bitbake's: they stay as
# written, and the values avoid '&' and '|' for the sed below): the GPT partition numbers of rootfs_a / rootfs_b in files/wic/*.wks (U-Boot reads
# them in hex), the kernel inside the slot, how to boot it, and the base kernel command line.
# Raspberry Pi: the firmware puts cmdline.txt into the device tree it passes on; the kernel
# image is a plain Image booted with the firmware's device tree.
UNDERTONE_PART_A:rpi = "2"
UNDERTONE_PART_B:rpi = "3"
UNDERTONE_KERNEL_FILE:rpi = "/boot/${KERNEL_IMAGETYPE}"
UNDERTONE_BOOT_COMMAND:rpi = "${KERNEL_BOOTCMD} ${kernel_addr_r} - ${fdt_addr}"
UNDERTONE_BOOTARGS_BASE:rpi = "fdt addr ${fdt_addr}; fdt get value bootargs /chosen bootargs"
# Rockchip: eight raw loader/env partitions come first (files/wic/undertone-rockchip.wks), so
# boot is 9, rootfs_a 10 (0xa), rootfs_b 11 (0xb); the kernel is meta-rockchip's FIT image
# (kernel and device tree together), booted with bootm.
UNDERTONE_PART_A:rockchip = "a"
UNDERTONE_PART_B:rockchip = "b"
UNDERTONE_KERNEL_FILE:rockchip = "/boot/fitImage"
UNDERTONE_BOOT_COMMAND:rockchip = "bootm ${kernel_addr_r}"
UNDERTONE_BOOTARGS_BASE:rockchip = 'setenv bootargs "earlycon console=${RK_CONSOLE_DEVICE},${RK_CONSOLE_BAUD}n8"'

COMPATIBLE_MACHINE = "(rpi|rockchip)"

do_compile() {
    sed -e 's|@@PART_A@@|${UNDERTONE_PART_A}|' \
        -e 's|@@PART_B@@|${UNDERTONE_PART_B}|' \
        -e 's|@@KERNEL_FILE@@|${UNDERTONE_KERNEL_FILE}|' \
        -e 's|@@BOOT_COMMAND@@|${UNDERTONE_BOOT_COMMAND}|' \
        -e 's|@@BOOTARGS_BASE@@|${UNDERTONE_BOOTARGS_BASE}|' \
        ${UNPACKDIR}/boot.cmd.in > ${B}/boot.cmd
    if grep -q '@@' ${B}/boot.cmd; then
        bbfatal "boot.cmd still has a placeholder: set UNDERTONE_* for ${MACHINE} in ${FILE}"
    fi
    mkimage -A ${UBOOT_ARCH} -T script -C none -n "undertone A/B boot" -d ${B}/boot.cmd ${B}/boot.scr
}

do_deploy() {
    install -d ${DEPLOYDIR}
    install -m 0644 ${B}/boot.scr ${DEPLOYDIR}/boot.scr
}
addtask deploy after do_compile before do_build

SUMMARY = "Grows undertone's persistent data partition to fill the card on first boot"
DESCRIPTION = "A systemd-repart definition for the data partition of the undertone image: \
               the image is flashed small, and the data partition takes the rest of the \
               card when the box first starts."
SECTION = "base"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://50-undertone-data.conf;beginline=1;endline=1;md5=b2dccaa94b3629a08bfb4f983cad6f89"

SRC_URI = "file://50-undertone-data.conf"

S = "${UNPACKDIR}"

inherit allarch

do_install() {
    install -d ${D}${nonarch_libdir}/repart.d
    install -m 0644 ${UNPACKDIR}/50-undertone-data.conf ${D}${nonarch_libdir}/repart.d/
}

FILES:${PN} += "${nonarch_libdir}/repart.d"
# systemd-repart itself (systemd built with the repart option, recipes-core/systemd).
RDEPENDS:${PN} += "systemd"

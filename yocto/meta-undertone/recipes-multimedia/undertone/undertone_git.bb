SUMMARY = "undertone: background music that follows the camera picture"
DESCRIPTION = "Camera-to-music firmware: watches a V4L2 camera and plays music that follows \
               the picture through ALSA (motion speed to note density, saliency to strength, \
               cuts to new sections). Installs the daemon, its models and templates, the \
               default config and a hardened systemd service."
SECTION = "multimedia"
# No CVE feed knows this product yet; name it so future ones match.
CVE_PRODUCT = "undertone"
# The workspace licence (Cargo.toml [workspace.package]); models/ and templates/ are MIT too
# (templates/LICENSES lists every file's source: undertone's own patterns and FluidR3_GM, MIT).
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=8;endline=8;md5=29c91c89ee62891477a1476375143bef"

# alsa-sys links alsa-lib (found with pkg-config). v4l2-sys-mit runs bindgen in its build
# script, which loads libclang at build time: clang-native (oe-core since 5.2) provides it.
# tract-linalg compiles assembly with the cc crate (the cargo class exports the cross tools).
DEPENDS += "alsa-lib clang-native"

# The firmware comes from the git repository that holds this layer (yocto/meta-undertone),
# at the commit checked out on branch main: `kas build` then builds exactly what is
# committed there. Release builds pin UNDERTONE_SRCREV (a tag's commit) in their kas file;
# another clone can be named with UNDERTONE_GIT_URL / UNDERTONE_GIT_PROTOCOL.
UNDERTONE_GIT_URL ?= "${@os.path.normpath(os.path.join(d.getVar('UNDERTONE_LAYERDIR'), '..', '..'))}"
UNDERTONE_GIT_PROTOCOL ?= "file"
UNDERTONE_GIT_BRANCH ?= "main"
UNDERTONE_SRCREV ?= "${AUTOREV}"
PV = "0.1.0+git"

SRC_URI = "git://${UNDERTONE_GIT_URL};protocol=${UNDERTONE_GIT_PROTOCOL};branch=${UNDERTONE_GIT_BRANCH} \
           file://undertone.service \
           file://config.toml \
           file://undertone-tmpfiles.conf \
           file://60-undertone-gpio.rules \
           "
SRCREV = "${UNDERTONE_SRCREV}"

# Every crate from Cargo.lock, with its sha256: the build never touches the network and cargo
# runs --frozen (cargo.bbclass). Written by tools/yocto/crates.py (the same output as
# `bitbake -c update_crates undertone`); CI fails when it drifts from Cargo.lock.
require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates pkgconfig systemd useradd

# Only the daemon: the workspace also holds the board crate (a library) and test targets.
CARGO_BUILD_FLAGS += "--package undertone --bin undertone"

# bindgen: find libclang in the native sysroot and parse the target's headers (linux/videodev2.h)
# for the target, the way oe-core's meson class sets bindgen_clang_arguments.
# The firmware falls back to the source checkout it was built from for its data; on the box
# there is none, and the build folder's path must not end up in the binary (buildpaths QA).
export UNDERTONE_NO_CHECKOUT = "1"
export LIBCLANG_PATH = "${STAGING_LIBDIR_NATIVE}"
export BINDGEN_EXTRA_CLANG_ARGS = "${HOST_CC_ARCH}${TOOLCHAIN_OPTIONS} --target=${TARGET_SYS}"

# The service runs as its own system user, never root: video (cameras), audio (sound cards),
# gpio (button and LED; base-passwd has no such group, so it is made here).
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system gpio; --system undertone"
USERADD_PARAM:${PN} = "--system --gid undertone --groups video,audio,gpio \
                       --home-dir ${UNDERTONE_STATE_DIR} --no-create-home --shell ${base_sbindir}/nologin undertone"

SYSTEMD_SERVICE:${PN} = "undertone.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

# Writable state (reports, recordings, settings saved from the web page) on the persistent data
# partition; the rootfs is read-only. Made at boot by systemd-tmpfiles (undertone-tmpfiles.conf).
UNDERTONE_STATE_DIR ?= "/data/undertone"

do_install:append() {
    # cargo_do_install put the binary in ${bindir}; the rest is data and configuration.
    install -d ${D}${datadir}/undertone
    cp -R --no-dereference --preserve=mode,links -v ${S}/models ${D}${datadir}/undertone/
    cp -R --no-dereference --preserve=mode,links -v ${S}/templates ${D}${datadir}/undertone/
    install -d ${D}${datadir}/undertone/doc
    install -m 0644 ${S}/docs/ref/config.md ${D}${datadir}/undertone/doc/config.md

    install -d ${D}${sysconfdir}/undertone
    install -m 0644 ${UNPACKDIR}/config.toml ${D}${sysconfdir}/undertone/config.toml

    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${UNPACKDIR}/undertone.service ${D}${systemd_system_unitdir}/undertone.service

    install -d ${D}${nonarch_libdir}/tmpfiles.d
    sed -e 's|@STATE_DIR@|${UNDERTONE_STATE_DIR}|g' ${UNPACKDIR}/undertone-tmpfiles.conf \
        > ${D}${nonarch_libdir}/tmpfiles.d/undertone.conf
    chmod 0644 ${D}${nonarch_libdir}/tmpfiles.d/undertone.conf

    install -d ${D}${nonarch_base_libdir}/udev/rules.d
    install -m 0644 ${UNPACKDIR}/60-undertone-gpio.rules ${D}${nonarch_base_libdir}/udev/rules.d/
}

# Models and templates (~28 MB) in their own package: architecture independent, and a
# debugging image can leave them out.
PACKAGES =+ "${PN}-data"
FILES:${PN}-data += "${datadir}/undertone"
FILES:${PN} += "${nonarch_libdir}/tmpfiles.d/undertone.conf \
                ${nonarch_base_libdir}/udev/rules.d/60-undertone-gpio.rules \
                "
CONFFILES:${PN} = "${sysconfdir}/undertone/config.toml"
RDEPENDS:${PN} += "${PN}-data"

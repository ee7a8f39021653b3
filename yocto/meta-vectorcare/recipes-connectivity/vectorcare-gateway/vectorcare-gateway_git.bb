SUMMARY = "VectorCare Gateway: vital signs from BLE, serial and MQTT devices to FHIR R4"
DESCRIPTION = "Remote-patient-monitoring daemon for home hubs: reads vital signs over \
               Bluetooth LE (BlueZ over D-Bus), serial lines and MQTT, maps them to HL7 FHIR R4 \
               Observations, queues them durably and uploads them with SMART Backend Services auth."
HOMEPAGE = "https://example.invalid/vectorcare/gateway"
SECTION = "net"
CVE_PRODUCT = "vectorcare-gateway"
LICENSE = "Apache-2.0"
# The license line of the workspace manifest (tests/deploy_yocto.rs keeps line and md5 right).
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=9;endline=9;md5=2507bd5f0713f05419cd2f22fa06fe62"

# Pin SRCREV to the commit this layer was taken from: the -crates.inc beside this recipe
# matches that commit's Cargo.lock, and cargo builds with --frozen.
PV = "0.1.0+git"
VECTORCARE_GIT_URI ??= "git://example.invalid/vectorcare/gateway.git;protocol=https;branch=main"
SRC_URI = "${VECTORCARE_GIT_URI}"
SRCREV ??= "${AUTOREV}"

require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates systemd useradd

# Yocto splits debug info and strips by itself, so build the plain `release` profile (its
# `strip` is off, which keeps the already-stripped QA check quiet) and tune it for size here,
# as the `dist` profile does for other builds, panic = "abort" included (docs/DEPLOY.md,
# "Panics"). build.rs adds RELR relocations (glibc >= 2.36 and, on aarch64, binutils >= 2.41:
# any current Yocto release) and drops the unwind tables of this opt-level "z" build.
export CARGO_PROFILE_RELEASE_LTO = "fat"
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS = "1"
export CARGO_PROFILE_RELEASE_OPT_LEVEL = "z"
export CARGO_PROFILE_RELEASE_PANIC = "abort"

# PACKAGECONFIG maps to cargo features through PACKAGECONFIG_CONFARGS ("--features x").
# The build starts from --no-default-features (the device build: no demo/QA-only parts, see
# Cargo.toml [features]); `demo` (embedded MQTT broker + FHIR test double + `demo` command)
# and `simulator` (`simulate`, BlueZ peripheral, `run --simulate-devices`) add them back,
# e.g. for a QA image. ble/serial/mqtt-broker only pull in runtime services.
PACKAGECONFIG ??= "ble serial"
PACKAGECONFIG[ble] = ",,,bluez5"
PACKAGECONFIG[serial] = ""
PACKAGECONFIG[mqtt-broker] = ",,,mosquitto"
PACKAGECONFIG[demo] = "--features demo"
PACKAGECONFIG[simulator] = "--features simulator,,,bluez5"

do_compile() {
    oe_cargo_build --no-default-features ${PACKAGECONFIG_CONFARGS}
}

USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --user-group --groups dialout \
                       --home-dir ${localstatedir}/lib/vectorcare-gateway --no-create-home \
                       --shell ${base_sbindir}/nologin vectorcare-gateway"

SYSTEMD_SERVICE:${PN} = "vectorcare-gateway.service"
SYSTEMD_AUTO_ENABLE:${PN} ?= "enable"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/vectorcare-gateway.service ${D}${systemd_system_unitdir}/
    # The unit calls /usr/bin; keep it right if bindir differs.
    sed -i -e 's#/usr/bin/#${bindir}/#g' ${D}${systemd_system_unitdir}/vectorcare-gateway.service

    # BlueZ access for the service user (the useradd above replaces sysusers.d here, so that
    # the user exists at image build time, also on read-only root file systems).
    install -d ${D}${datadir}/dbus-1/system.d
    install -m 0644 ${S}/systemd/vectorcare-gateway-dbus.conf \
        ${D}${datadir}/dbus-1/system.d/vectorcare-gateway.conf

    install -d -m 0750 -g vectorcare-gateway ${D}${sysconfdir}/vectorcare-gateway
    install -m 0640 -g vectorcare-gateway ${S}/config/gateway.example.toml \
        ${D}${sysconfdir}/vectorcare-gateway/gateway.toml
}

FILES:${PN} += "${systemd_system_unitdir} ${datadir}/dbus-1/system.d"
CONFFILES:${PN} = "${sysconfdir}/vectorcare-gateway/gateway.toml"

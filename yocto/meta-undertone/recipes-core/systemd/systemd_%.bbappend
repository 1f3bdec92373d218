# systemd-repart grows the persistent data partition over the rest of the card on first boot
# (undertone-data-partition); repart needs the openssl option. Only with DISTRO = "undertone-os".
PACKAGECONFIG:append:undertone-os = " repart openssl"

"""meta-undertone as written: the service, the recipe, the A/B layout and the kas pins agree
with each other and with the rest of the repository. Bitbake is not run here (no build host):
these tests pin down what can be checked from the files alone."""

import configparser
import hashlib
import os
import re
import subprocess
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
LAYER = ROOT / "yocto/meta-undertone"
RECIPE_DIR = LAYER / "recipes-multimedia/undertone"
RECIPE = RECIPE_DIR / "undertone_git.bb"
UNIT = RECIPE_DIR / "files/undertone.service"
PACKAGING_UNIT = ROOT / "packaging/systemd/undertone.service"
BOOT_RECIPE = LAYER / "recipes-bsp/undertone-boot-script/undertone-boot-script_1.0.bb"
WKS = {"rpi": LAYER / "files/wic/undertone-rpi.wks", "rockchip": LAYER / "files/wic/undertone-rockchip.wks"}

# Settings in which the Yocto unit differs from packaging/systemd/undertone.service, and why.
# Any other difference in a key both set fails: keep the two units in step.
UNIT_DIFFERENCES = {
    "After": "local-fs.target too: the state folder is on the /data partition",
    "Documentation": "the image installs the config reference under /usr/share/undertone/doc",
    "SupplementaryGroups": "gpio too: the button and LED (the image has a gpio group and udev rule)",
    "DeviceAllow": "char-gpiochip too, for the same button and LED",
    "Environment": "the state folder is /data/undertone (the generic unit uses StateDirectory=)",
}
# Keys only the Yocto unit has: a static user instead of DynamicUser, state on /data, A/B
# boot assessment, and hardening that the generic unit leaves to the distribution.
YOCTO_ONLY_OK = {
    "RequiresMountsFor", "Before", "StartLimitIntervalSec", "StartLimitBurst", "User", "Group",
    "WorkingDirectory", "Environment", "UMask", "ReadWritePaths", "CapabilityBoundingSet",
    "AmbientCapabilities", "ProtectKernelLogs", "ProtectClock", "ProtectHostname", "ProtectProc",
    "LockPersonality", "RestrictNamespaces", "RestrictSUIDSGID", "RemoveIPC",
    "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber", "RequiredBy",
}
# Keys only the generic unit has: DynamicUser's state and config folders under /var/lib and /etc
# do not work on a read-only rootfs; the Yocto unit uses the undertone user and /data instead.
PACKAGING_ONLY_OK = {"DynamicUser", "StateDirectory", "ConfigurationDirectory"}


def read_unit(path: Path) -> dict[str, list[str]]:
    """key -> values (a key may repeat, e.g. DeviceAllow), sections flattened."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def bb_var(path: Path, name: str) -> str:
    """A simple `NAME = "value"` (possibly continued with backslashes) from a recipe."""
    text = path.read_text()
    m = re.search(rf'^{re.escape(name)}\s*\??=\s*"((?:[^"\\]|\\.|\\\n)*)"', text, re.M)
    assert m, f"{name} not found in {path}"
    return " ".join(m.group(1).replace("\\\n", " ").split())


def lic_md5(path: Path, begin: int, end: int) -> str:
    """md5 of lines begin..end as bitbake's insane.bbclass computes it (raw bytes, newlines kept)."""
    m = hashlib.md5()
    for n, line in enumerate(path.read_bytes().splitlines(keepends=True), start=1):
        if begin <= n <= end:
            m.update(line)
    return m.hexdigest()


def test_service_runs_as_its_own_user_never_root():
    unit = read_unit(UNIT)
    assert unit["User"] == ["undertone"] and unit["Group"] == ["undertone"]
    assert "DynamicUser" not in unit
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["CapabilityBoundingSet"] == [""]
    # The recipe creates exactly that user, as a system user in the device groups.
    params = bb_var(RECIPE, "USERADD_PARAM:${PN}")
    assert params.endswith(" undertone") and "--system" in params
    assert "--groups video,audio,gpio" in params
    assert "--shell ${base_sbindir}/nologin" in params
    assert set(unit["SupplementaryGroups"][0].split()) == {"video", "audio", "gpio"}
    assert "--system gpio" in bb_var(RECIPE, "GROUPADD_PARAM:${PN}")


def test_service_is_what_the_issue_asks():
    unit = read_unit(UNIT)
    assert unit["Type"] == ["notify"]
    assert unit["WatchdogSec"] == ["10"]
    assert unit["Restart"] == ["on-failure"]
    assert int(unit["StartLimitBurst"][0]) > 1 and int(unit["StartLimitIntervalSec"][0]) > 0
    assert unit["MemoryMax"] == ["768M"]
    assert unit["ProtectSystem"] == ["strict"]
    # Nothing writable but the state folder on /data.
    assert unit["ReadWritePaths"] == ["/data/undertone"]
    assert unit["WorkingDirectory"] == ["/data/undertone"]
    # A broken update is never marked good: boot-complete.target needs this unit up first.
    assert unit["Before"] == ["boot-complete.target"]
    assert unit["RequiredBy"] == ["boot-complete.target"]
    # SCHED_FIFO for the playback thread must stay possible.
    assert "RestrictRealtime" not in unit and unit["LimitRTPRIO"] == ["50"]


def test_state_folder_is_made_for_the_service_user():
    tmpfiles = (RECIPE_DIR / "files/undertone-tmpfiles.conf").read_text().splitlines()
    rows = [line.split() for line in tmpfiles if line.strip() and not line.startswith("#")]
    assert rows == [["d", "@STATE_DIR@", "0750", "undertone", "undertone", "-", "-"]]
    assert bb_var(RECIPE, "UNDERTONE_STATE_DIR") == "/data/undertone"


def test_units_agree_with_the_generic_packaging_unit():
    ours, theirs = read_unit(UNIT), read_unit(PACKAGING_UNIT)
    for key in sorted(set(ours) & set(theirs)):
        if key in UNIT_DIFFERENCES:
            continue
        assert ours[key] == theirs[key], (
            f"{key}: {UNIT.name} has {ours[key]}, packaging/systemd has {theirs[key]}; "
            "change both, or list the difference with its reason in UNIT_DIFFERENCES"
        )
    assert set(ours) - set(theirs) <= YOCTO_ONLY_OK, set(ours) - set(theirs) - YOCTO_ONLY_OK
    assert set(theirs) - set(ours) <= PACKAGING_ONLY_OK, set(theirs) - set(ours) - PACKAGING_ONLY_OK


def test_licence_checksums_match_the_files():
    m = re.search(r"file://Cargo.toml;beginline=(\d+);endline=(\d+);md5=(\w+)", RECIPE.read_text())
    begin, end, md5 = int(m.group(1)), int(m.group(2)), m.group(3)
    lines = (ROOT / "Cargo.toml").read_text().splitlines()[begin - 1:end]
    assert lines == ['license = "MIT"'], "the recipe's licence line moved in Cargo.toml: update LIC_FILES_CHKSUM"
    assert lic_md5(ROOT / "Cargo.toml", begin, end) == md5
    m = re.search(r"file://boot.cmd.in;beginline=(\d+);endline=(\d+);md5=(\w+)", BOOT_RECIPE.read_text())
    script = BOOT_RECIPE.parent / "files/boot.cmd.in"
    assert lic_md5(script, int(m.group(1)), int(m.group(2))) == m.group(3)


def test_installs_what_the_firmware_looks_for():
    text = RECIPE.read_text()
    paths = (ROOT / "firmware/src/paths.rs").read_text()
    assert 'INSTALLED_DATA_DIR: &str = "/usr/share/undertone"' in paths
    assert "${D}${datadir}/undertone" in text
    for folder in ("models", "templates"):
        assert f"${{S}}/{folder} ${{D}}${{datadir}}/undertone/" in text
        assert (ROOT / folder).is_dir()
    assert "${D}${sysconfdir}/undertone/config.toml" in text
    # The unit names no --config: the firmware reads /etc/undertone/config.toml, and the copy
    # saved in its state folder, which must be the unit's writable folder.
    unit = read_unit(UNIT)
    assert unit["ExecStart"] == ["/usr/bin/undertone run"]
    live = (ROOT / "firmware/src/live/config.rs").read_text()
    assert 'DEFAULT_STATE_DIR: &str = "/data/undertone"' in live
    assert "UNDERTONE_STATE_DIR=/data/undertone" in unit["Environment"][0].split()


def test_default_config_is_valid_and_documented():
    """config.toml sets only what the image needs (the web page's state on /data) and shows the
    rest as comments; each commented setting, uncommented, is TOML with keys the firmware knows
    (docs/ref/config.md; the [web] fields of firmware/src/web/settings.rs)."""
    text = (RECIPE_DIR / "files/config.toml").read_text()
    assert tomllib.loads(text) == {"web": {"data_dir": "/data/undertone"}}
    settings = "\n".join(
        line[2:] if line.startswith("# ") else line
        for line in text.splitlines()
        if re.match(r"(# )?(\[\w+\]|\w+ = )", line)
    )
    parsed = tomllib.loads(settings)
    reference = (ROOT / "docs/ref/config.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", reference, re.M))
    keys = {k for k in parsed if k not in ("music", "web")} | set(parsed.get("music", {}))
    assert keys and keys <= documented, keys - documented
    web = (ROOT / "firmware/src/web/settings.rs").read_text()
    web_struct = web[web.index("pub struct WebConfig"):]
    web_fields = set(re.findall(r"^\s+pub (\w+):", web_struct[: web_struct.index("}")], re.M))
    assert set(parsed["web"]) <= web_fields, set(parsed["web"]) - web_fields
    # The only writable place the service has.
    for path in (parsed["report"], parsed["record"], parsed["web"]["data_dir"]):
        assert path.startswith("/data/undertone")


def wks_parts(path: Path) -> list[str]:
    return [line.split("--part-name")[1].split()[0] for line in path.read_text().splitlines() if line.startswith("part ")]


@pytest.mark.parametrize("board", sorted(WKS))
def test_partition_layout_matches_rauc_and_the_boot_script(board):
    names = wks_parts(WKS[board])
    assert names[-4:] == ["boot", "rootfs_a", "rootfs_b", "data"]
    # U-Boot addresses the slots by partition number, in hex.
    text = BOOT_RECIPE.read_text()
    for slot, name in (("A", "rootfs_a"), ("B", "rootfs_b")):
        number = re.search(rf'^UNDERTONE_PART_{slot}:{board} = "(\w+)"', text, re.M).group(1)
        assert int(number, 16) == names.index(name) + 1, f"{board}: slot {slot} is not partition {number}"
    conf = configparser.ConfigParser()
    conf.read(LAYER / "recipes-core/rauc/files/system.conf")
    devices = [conf[s]["device"] for s in ("slot.rootfs.0", "slot.rootfs.1")]
    assert devices == ["/dev/disk/by-partlabel/rootfs_a", "/dev/disk/by-partlabel/rootfs_b"]
    assert [conf[s]["bootname"] for s in ("slot.rootfs.0", "slot.rootfs.1")] == ["A", "B"]
    assert conf["system"]["data-directory"].startswith("/data/")
    # The data partition is grown on first boot by systemd-repart: its rule matches the GPT type
    # of a DPS "var" partition and the label.
    data_line = next(l for l in WKS[board].read_text().splitlines() if "--part-name data" in l)
    assert "--part-type 4d21b016-b534-45c2-a9fb-5c16e091fd2d" in data_line
    repart = configparser.ConfigParser()
    repart.read(LAYER / "recipes-core/undertone-data-partition/files/50-undertone-data.conf")
    assert dict(repart["Partition"]) == {"type": "var", "label": "data"}
    fstab = (LAYER / "recipes-core/base-files/files/fstab").read_text()
    assert re.search(r"^PARTLABEL=data\s+/data\s+ext4", fstab, re.M)
    assert re.search(r"^/dev/root\s+/\s+auto\s+ro\s", fstab, re.M)


def test_bundle_is_accepted_by_the_boxes_it_is_for():
    conf = configparser.ConfigParser()
    conf.read(LAYER / "recipes-core/rauc/files/system.conf")
    bundle = LAYER / "recipes-core/bundles/undertone-bundle_1.0.bb"
    assert conf["system"]["compatible"].replace("@MACHINE@", "${MACHINE}") == bb_var(bundle, "RAUC_BUNDLE_COMPATIBLE")
    assert bb_var(bundle, "RAUC_SLOT_rootfs") == "undertone-image"


def test_kas_files_pin_every_layer_to_a_commit_of_one_release():
    layer_conf = (LAYER / "conf/layer.conf").read_text()
    release = re.search(r'^LAYERSERIES_COMPAT_undertone = "(\w+)"', layer_conf, re.M).group(1)
    for board in ("rpi5", "rock5b"):
        kas = yaml.safe_load((ROOT / "kas" / f"{board}.yml").read_text())
        repos = dict(kas.get("repos", {}))
        for inc in kas["header"].get("includes", []):
            repos.update(yaml.safe_load((ROOT / inc).read_text())["repos"])
        assert repos["undertone"]["layers"] == {"yocto/meta-undertone": None}
        for name, repo in repos.items():
            if name == "undertone":
                continue
            assert repo["url"].startswith("https://"), name
            assert re.fullmatch(r"[0-9a-f]{40}", repo["commit"]), f"{board}: {name} is not pinned"
            if name != "bitbake":
                assert repo["branch"] == release, f"{board}: {name} is on {repo['branch']}, not {release}"
        assert kas["machine"] and yaml.safe_load((ROOT / "kas/common.yml").read_text())["distro"] == "undertone-os"


def test_oelint_catches_a_broken_recipe(tmp_path):
    """The lint step is live: the layer as committed is clean, a recipe without LICENSE is not."""
    copy = tmp_path / "meta-undertone"
    shutil.copytree(LAYER, copy)
    recipe = copy / "recipes-core/images/undertone-image.bb"
    env = {**os.environ, "OELINT_CONFIG": str(ROOT / "tools/yocto/oelint.cfg")}
    py = str(ROOT / ".venv/bin/python")
    run = lambda: subprocess.run([py, "-m", "oelint_adv", "--quiet", str(recipe)], env=env,
                                 capture_output=True, text=True)
    clean = run()
    assert clean.returncode == 0, clean.stderr
    recipe.write_text(recipe.read_text().replace('LICENSE = "MIT"\n', ""))
    broken = run()
    assert broken.returncode != 0 and "LICENSE" in broken.stderr


def test_kas_files_match_the_kas_schema():
    """kas's own JSON schema (kas 5.5) accepts every kas file, so `kas build` gets past loading them."""
    import json

    import jsonschema
    import kas

    schema = json.loads((Path(kas.__file__).parent / "schema-kas.json").read_text())
    for path in sorted((ROOT / "kas").glob("*.yml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)

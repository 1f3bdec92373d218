//! Board profiles: what one board model has and where (camera, ALSA PCM, GPIO lines for the
//! button and the LED, watchdog, accelerator). One TOML file per board in `board/profiles/`,
//! built into the binary; a path to a TOML file of the same shape selects a custom board.
//!
//! Parsing is strict: an unknown key is an error that names it, so a typo in a profile never
//! silently drops the button.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The profiles built into the binary: (name, TOML text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("generic", include_str!("../profiles/generic.toml")),
    ("rpi5", include_str!("../profiles/rpi5.toml")),
    ("rock5b", include_str!("../profiles/rock5b.toml")),
    ("imx8mp", include_str!("../profiles/imx8mp.toml")),
    ("qemu-virt", include_str!("../profiles/qemu-virt.toml")),
];

/// Where an installed box keeps its own profiles (`NAME.toml`); one there overrides the
/// built-in profile of the same name, so a board can be re-wired without a new firmware.
pub const PROFILE_DIR: &str = "/etc/undertone/boards";

/// Valid watchdog timeouts, s: most SoC watchdogs count to 15–60 s at most (the BCM2712's
/// caps near 15 s), and under 2 s a busy system resets for nothing.
pub const WATCHDOG_TIMEOUT_RANGE: (u32, u32) = (2, 60);

/// Valid ALSA period sizes, frames: from 2.7 ms at 48 kHz (below that, period wakeups cost
/// measurable CPU on a Cortex-A53) to 171 ms (above it, the clock's resolution and the
/// queued latency eat the reaction budget of a beat plus 100 ms).
pub const AUDIO_PERIOD_FRAMES_RANGE: (u32, u32) = (128, 8192);
/// Valid numbers of periods in the ALSA hardware buffer: ALSA needs two to play one while the
/// other is written; past 32 the buffer is latency, not safety.
pub const AUDIO_PERIODS_RANGE: (u32, u32) = (2, 32);
/// The longest ALSA hardware buffer a profile may ask for, ms: everything queued in the
/// device is audio a scene cut can no longer change.
pub const AUDIO_BUFFER_MAX_MS: u32 = 1000;
/// The sample rate the firmware plays at (for the buffer's length in ms).
const AUDIO_RATE: u32 = 48_000;

/// A board profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Human name of the board ("Raspberry Pi 5").
    pub name: String,
    /// Frame source the firmware uses on this board (`v4l2:/dev/videoN`).
    pub camera: String,
    /// ALSA PCM the music plays on.
    pub audio_device: String,
    /// ALSA period size in frames at 48 kHz (128–8192). None: the firmware's default
    /// (1024 frames, 21.3 ms). A board whose CPU is scheduled in bursts (an emulated one, a
    /// busy single-core SoC) wakes the playback thread less often with a larger period.
    #[serde(default)]
    pub audio_period_frames: Option<u32>,
    /// Periods in the ALSA hardware buffer (2–32). None: the firmware's default (4). The
    /// buffer, period × periods, is what the playback thread may be late by before the
    /// device runs dry; at most 1 s.
    #[serde(default)]
    pub audio_periods: Option<u32>,
    /// What can run the models besides the CPU; the firmware runs them on the CPU (tract)
    /// on every board today, so this is recorded for reports and future back ends.
    pub accelerator: Accelerator,
    /// The button (short press: dislike, long press: like). None: no button.
    pub button: Option<LineSpec>,
    /// The status LED. None: no LED.
    pub led: Option<LineSpec>,
    /// A hardware watchdog the firmware feeds while its engine makes progress. None: only
    /// systemd's watchdog.
    pub watchdog: Option<WatchdogSpec>,
    /// Where the profile came from (`builtin rpi5` or a file path), for messages.
    #[serde(skip)]
    pub origin: String,
}

/// Accelerators on the supported boards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accelerator {
    /// CPU only.
    None,
    /// Rockchip RK3588 NPU (`rknpu`, 6 TOPS int8).
    Rk3588Npu,
    /// NXP i.MX 8M Plus NPU (VeriSilicon VIP8000, 2.3 TOPS int8).
    Imx8mpNpu,
}

/// One GPIO line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineSpec {
    /// The GPIO chip: a device path (`/dev/gpiochip0`) or the chip's label as
    /// `gpiodetect` prints it (`pinctrl-rp1`), which survives renumbering between kernels.
    pub chip: String,
    /// The line: its offset on the chip, or its name as `gpioinfo` prints it (`GPIO17`).
    pub line: LineRef,
    /// The line is active low (a button to ground with a pull-up; an LED to the supply).
    #[serde(default)]
    pub active_low: bool,
}

/// A line by offset or by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum LineRef {
    Offset(u32),
    Name(String),
}

impl std::fmt::Display for LineRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineRef::Offset(n) => write!(f, "{n}"),
            LineRef::Name(s) => write!(f, "{s:?}"),
        }
    }
}

/// The hardware watchdog.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogSpec {
    /// Device node, normally `/dev/watchdog`.
    pub device: PathBuf,
    /// Seconds without a kick before the board resets (2–60).
    pub timeout_s: u32,
}

/// Why a profile could not be used. Each names the profile and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("board profile {name:?} is not built in (built in: {known}) nor in {PROFILE_DIR}/{name}.toml; give one of those names, add that file, or give the path of a profile TOML file")]
    Unknown { name: String, known: String },
    #[error("{path}: cannot read the board profile: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("board profile {origin}: {detail}(see docs/guide/board.md for the keys)")]
    Parse { origin: String, detail: String },
    #[error("board profile {origin}: `{key}` {detail}")]
    Invalid {
        origin: String,
        key: &'static str,
        detail: String,
    },
}

impl Profile {
    /// A profile by name (`PROFILE_DIR/NAME.toml` if present, else the built-in one), or a
    /// profile file when `spec` is a path (contains `/` or ends in `.toml`).
    pub fn resolve(spec: &str) -> Result<Profile, ProfileError> {
        Profile::resolve_in(spec, Path::new(PROFILE_DIR))
    }

    /// [`Profile::resolve`] with another folder of installed profiles.
    pub fn resolve_in(spec: &str, dir: &Path) -> Result<Profile, ProfileError> {
        if spec.contains('/') || spec.ends_with(".toml") {
            return Profile::load(Path::new(spec));
        }
        let installed = dir.join(format!("{spec}.toml"));
        if installed.is_file() {
            return Profile::load(&installed);
        }
        match BUILTIN.iter().find(|(n, _)| *n == spec) {
            Some((n, text)) => Profile::parse(text, &format!("builtin {n}")),
            None => Err(ProfileError::Unknown {
                name: spec.to_string(),
                known: BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Profile::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let mut p: Profile = toml::from_str(text).map_err(|e| ProfileError::Parse {
            origin: origin.to_string(),
            detail: e.to_string(),
        })?;
        p.origin = origin.to_string();
        p.validate()?;
        Ok(p)
    }

    fn validate(&self) -> Result<(), ProfileError> {
        let invalid = |key, detail: String| ProfileError::Invalid {
            origin: self.origin.clone(),
            key,
            detail,
        };
        if !(self.camera.starts_with("v4l2:/") || self.camera.starts_with("file:")) {
            return Err(invalid(
                "camera",
                format!("is {:?}; give v4l2:/dev/videoN (or file:CLIP)", self.camera),
            ));
        }
        if self.audio_device.trim().is_empty() {
            return Err(invalid(
                "audio_device",
                "is empty; give an ALSA PCM (`aplay -L` lists them)".into(),
            ));
        }
        for (key, value, (lo, hi)) in [
            (
                "audio_period_frames",
                self.audio_period_frames,
                AUDIO_PERIOD_FRAMES_RANGE,
            ),
            ("audio_periods", self.audio_periods, AUDIO_PERIODS_RANGE),
        ] {
            if let Some(v) = value {
                if !(lo..=hi).contains(&v) {
                    return Err(invalid(key, format!("is {v}; give {lo} to {hi}")));
                }
            }
        }
        if let (Some(f), Some(n)) = (self.audio_period_frames, self.audio_periods) {
            let ms = u64::from(f) * u64::from(n) * 1000 / u64::from(AUDIO_RATE);
            if ms > u64::from(AUDIO_BUFFER_MAX_MS) {
                return Err(invalid(
                    "audio_periods",
                    format!(
                        "is {n}: {n} periods of {f} frames hold {ms} ms, over the \
                         {AUDIO_BUFFER_MAX_MS} ms a scene cut may wait; give fewer periods \
                         or a smaller `audio_period_frames`"
                    ),
                ));
            }
        }
        for (key, l) in [("button.chip", &self.button), ("led.chip", &self.led)] {
            if let Some(l) = l {
                if l.chip.trim().is_empty() {
                    return Err(invalid(
                        key,
                        "is empty; give /dev/gpiochipN or the chip label `gpiodetect` prints"
                            .into(),
                    ));
                }
            }
        }
        if let Some(w) = &self.watchdog {
            let (lo, hi) = WATCHDOG_TIMEOUT_RANGE;
            if !(lo..=hi).contains(&w.timeout_s) {
                return Err(invalid(
                    "watchdog.timeout_s",
                    format!("is {}; give {lo} to {hi} seconds", w.timeout_s),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_profile_parses() {
        for (name, _) in BUILTIN {
            let p = Profile::resolve(name).unwrap();
            assert_eq!(p.origin, format!("builtin {name}"));
            assert_eq!(
                p.button.is_some() && p.led.is_some(),
                *name != "generic",
                "{name}"
            );
        }
        let rpi = Profile::resolve("rpi5").unwrap();
        assert_eq!(rpi.button.unwrap().line, LineRef::Name("GPIO17".into()));
        let vm = Profile::resolve("qemu-virt").unwrap();
        assert_eq!(vm.camera, "v4l2:/dev/video0");
        assert_eq!(vm.accelerator, Accelerator::None);
        assert_eq!(
            Profile::resolve("rock5b").unwrap().accelerator,
            Accelerator::Rk3588Npu
        );
    }

    #[test]
    fn an_installed_profile_overrides_the_builtin() {
        let dir = tempfile::tempdir().unwrap();
        let text = BUILTIN[1].1.replace("GPIO17", "GPIO22");
        std::fs::write(dir.path().join("rpi5.toml"), text).unwrap();
        let p = Profile::resolve_in("rpi5", dir.path()).unwrap();
        assert_eq!(p.button.unwrap().line, LineRef::Name("GPIO22".into()));
        assert!(p.origin.ends_with("rpi5.toml"), "{}", p.origin);
        let p = Profile::resolve_in("rock5b", dir.path()).unwrap();
        assert_eq!(p.origin, "builtin rock5b");
    }

    #[test]
    fn an_unknown_name_lists_the_builtins() {
        let e = Profile::resolve("rpi4").unwrap_err().to_string();
        assert!(e.contains("\"rpi4\""), "{e}");
        assert!(
            e.contains("generic, rpi5, rock5b, imx8mp, qemu-virt"),
            "{e}"
        );
    }

    #[test]
    fn a_typo_names_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("myboard.toml");
        std::fs::write(
            &path,
            "name = \"x\"\ncamera = \"v4l2:/dev/video0\"\naudio_device = \"default\"\naccelerator = \"none\"\n[button]\nchip = \"/dev/gpiochip0\"\nlnie = 3\n",
        )
        .unwrap();
        let e = Profile::resolve(path.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("myboard.toml"), "{e}");
        assert!(e.contains("lnie"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let base = "name = \"x\"\naudio_device = \"default\"\naccelerator = \"none\"\n";
        let e = Profile::parse(&format!("{base}camera = \"/dev/video0\"\n"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`camera`"), "{e}");
        let e = Profile::parse(
            &format!("{base}camera = \"v4l2:/dev/video0\"\n[watchdog]\ndevice = \"/dev/watchdog\"\ntimeout_s = 600\n"),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`watchdog.timeout_s` is 600"), "{e}");
        let e = Profile::parse(
            &format!("{base}camera = \"v4l2:/dev/video0\"\naccelerator2 = 1\n"),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("accelerator2"), "{e}");
    }

    #[test]
    fn the_audio_buffer_keys_are_checked() {
        let base = "name = \"x\"\ncamera = \"v4l2:/dev/video0\"\naudio_device = \"default\"\naccelerator = \"none\"\n";
        let p = Profile::parse(base, "t").unwrap();
        assert_eq!((p.audio_period_frames, p.audio_periods), (None, None));
        let p = Profile::parse(
            &format!("{base}audio_period_frames = 2048\naudio_periods = 8\n"),
            "t",
        )
        .unwrap();
        assert_eq!(
            (p.audio_period_frames, p.audio_periods),
            (Some(2048), Some(8))
        );
        for (line, key, range) in [
            (
                "audio_period_frames = 64",
                "`audio_period_frames` is 64",
                "128 to 8192",
            ),
            (
                "audio_period_frames = 100000",
                "`audio_period_frames` is 100000",
                "128 to 8192",
            ),
            ("audio_periods = 1", "`audio_periods` is 1", "2 to 32"),
            ("audio_periods = 33", "`audio_periods` is 33", "2 to 32"),
        ] {
            let e = Profile::parse(&format!("{base}{line}\n"), "board t")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("board t") && e.contains(key) && e.contains(range),
                "{e}"
            );
        }
        // Each in range, together too long: 8192 × 32 frames = 5.5 s.
        let e = Profile::parse(
            &format!("{base}audio_period_frames = 8192\naudio_periods = 32\n"),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`audio_periods` is 32") && e.contains("5461 ms"),
            "{e}"
        );
        let e = Profile::parse(&format!("{base}audio_periods = \"many\"\n"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("audio_periods"), "{e}");
    }

    #[test]
    fn only_the_vm_asks_for_a_bigger_audio_buffer() {
        for (name, _) in BUILTIN {
            let p = Profile::resolve(name).unwrap();
            if *name == "qemu-virt" {
                assert_eq!(
                    (p.audio_period_frames, p.audio_periods),
                    (Some(2048), Some(6))
                );
            } else {
                assert_eq!(
                    (p.audio_period_frames, p.audio_periods),
                    (None, None),
                    "{name}"
                );
            }
        }
    }
}

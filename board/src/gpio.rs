//! GPIO lines on the device: a profile's [`LineSpec`] opened as a `linux-embedded-hal`
//! [`CdevPin`] (the GPIO character device; sysfs GPIO is deprecated), with errors that
//! name the role, the chip, the line and what exists instead.

use std::path::{Path, PathBuf};

use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::CdevPin;

use crate::profile::{LineRef, LineSpec};

/// The consumer label the kernel shows for our lines (`gpioinfo`).
pub const CONSUMER: &str = "undertone";
/// Where GPIO character devices live.
const DEV_DIR: &str = "/dev";

/// Why a line could not be opened. Each message names the role (`button`/`led`), the chip
/// and the line as the profile gives them, and the key to fix.
#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    #[error("{role}: GPIO chip {chip:?} not found (chips here: {available}); fix `{role}.chip` in board profile {profile}")]
    ChipNotFound {
        role: &'static str,
        chip: String,
        available: String,
        profile: String,
    },
    #[error("{role}: cannot open GPIO chip {path}: {detail}; fix `{role}.chip` in board profile {profile} or the device's permissions")]
    ChipOpen {
        role: &'static str,
        path: PathBuf,
        detail: String,
        profile: String,
    },
    #[error("{role}: GPIO chip {chip:?} has lines 0 to {last}, not line {line}; fix `{role}.line` in board profile {profile}")]
    LineOutOfRange {
        role: &'static str,
        chip: String,
        line: u32,
        last: u32,
        profile: String,
    },
    #[error("{role}: GPIO chip {chip:?} has no line named {name:?}; fix `{role}.line` in board profile {profile} (`gpioinfo` lists the names)")]
    LineNameNotFound {
        role: &'static str,
        chip: String,
        name: String,
        profile: String,
    },
    #[error("{role}: line {line} of GPIO chip {chip:?} is in use by {consumer:?}; free it or pick another line in board profile {profile}")]
    LineBusy {
        role: &'static str,
        chip: String,
        line: String,
        consumer: String,
        profile: String,
    },
    #[error("{role}: cannot request line {line} of GPIO chip {chip:?}: {detail} (board profile {profile})")]
    Request {
        role: &'static str,
        chip: String,
        line: String,
        detail: String,
        profile: String,
    },
}

/// Direction to request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    /// Output, starting low (inactive).
    Output,
}

/// GPIO chips on this machine: (path, label, lines), sorted by path.
pub fn list_chips() -> Vec<(PathBuf, String, u32)> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(DEV_DIR) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("gpiochip") {
                continue;
            }
            if let Ok(c) = Chip::new(e.path()) {
                out.push((e.path(), c.label().to_string(), c.num_lines()));
            }
        }
    }
    out.sort();
    out
}

fn describe(chips: &[(PathBuf, String, u32)]) -> String {
    if chips.is_empty() {
        return "none".into();
    }
    chips
        .iter()
        .map(|(p, l, n)| format!("{} {l:?} with {n} lines", p.display()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn find_chip(role: &'static str, spec: &str, profile: &str) -> Result<Chip, GpioError> {
    let open = |path: &Path| {
        Chip::new(path).map_err(|e| GpioError::ChipOpen {
            role,
            path: path.to_path_buf(),
            detail: e.to_string(),
            profile: profile.to_string(),
        })
    };
    let not_found = || GpioError::ChipNotFound {
        role,
        chip: spec.to_string(),
        available: describe(&list_chips()),
        profile: profile.to_string(),
    };
    if spec.starts_with('/') {
        let path = Path::new(spec);
        if !path.exists() {
            return Err(not_found());
        }
        return open(path);
    }
    // A label (`pinctrl-rp1`) or a kernel name (`gpiochip0`).
    for (path, label, _) in list_chips() {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if label == spec || name.as_deref() == Some(spec) {
            return open(&path);
        }
    }
    Err(not_found())
}

/// Opens one line of a profile as a pin. `role` names it in errors (`button`, `led`).
pub fn open_line(
    role: &'static str,
    spec: &LineSpec,
    dir: Direction,
    profile: &str,
) -> Result<CdevPin, GpioError> {
    let mut chip = find_chip(role, &spec.chip, profile)?;
    let n = chip.num_lines();
    let offset = match &spec.line {
        LineRef::Offset(o) => {
            if *o >= n {
                return Err(GpioError::LineOutOfRange {
                    role,
                    chip: spec.chip.clone(),
                    line: *o,
                    last: n.saturating_sub(1),
                    profile: profile.to_string(),
                });
            }
            *o
        }
        LineRef::Name(name) => (0..n)
            .find(|&i| {
                chip.get_line(i)
                    .and_then(|l| l.info())
                    .is_ok_and(|info| info.name() == Some(name.as_str()))
            })
            .ok_or_else(|| GpioError::LineNameNotFound {
                role,
                chip: spec.chip.clone(),
                name: name.clone(),
                profile: profile.to_string(),
            })?,
    };
    let request_err = |detail: String| GpioError::Request {
        role,
        chip: spec.chip.clone(),
        line: spec.line.to_string(),
        detail,
        profile: profile.to_string(),
    };
    let line = chip
        .get_line(offset)
        .map_err(|e| request_err(e.to_string()))?;
    let info = line.info().map_err(|e| request_err(e.to_string()))?;
    if info.is_used() {
        return Err(GpioError::LineBusy {
            role,
            chip: spec.chip.clone(),
            line: spec.line.to_string(),
            consumer: info.consumer().unwrap_or("the kernel").to_string(),
            profile: profile.to_string(),
        });
    }
    let mut flags = match dir {
        Direction::Input => LineRequestFlags::INPUT,
        Direction::Output => LineRequestFlags::OUTPUT,
    };
    if spec.active_low {
        flags |= LineRequestFlags::ACTIVE_LOW;
    }
    let handle = line
        .request(flags, 0, CONSUMER)
        .map_err(|e| request_err(e.to_string()))?;
    CdevPin::new(handle).map_err(|e| request_err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_chip_is_named_with_the_key_to_fix() {
        let spec = LineSpec {
            chip: "/dev/gpiochip97".into(),
            line: LineRef::Offset(3),
            active_low: false,
        };
        let e = open_line("button", &spec, Direction::Input, "builtin rpi5")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("button: GPIO chip \"/dev/gpiochip97\" not found (chips here: "),
            "{e}"
        );
        assert!(
            e.ends_with("fix `button.chip` in board profile builtin rpi5"),
            "{e}"
        );
        let spec = LineSpec {
            chip: "no-such-label".into(),
            line: LineRef::Name("GPIO17".into()),
            active_low: true,
        };
        let e = open_line("led", &spec, Direction::Output, "x.toml")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("led: GPIO chip \"no-such-label\" not found"),
            "{e}"
        );
        assert!(e.contains("fix `led.chip` in board profile x.toml"), "{e}");
    }
}

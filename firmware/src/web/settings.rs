//! The `[web]` section of the config: where the page keeps its state, the output volume,
//! the daily schedule and the board profile. Strict like the rest of the config; every
//! field has a default, so a config without `[web]` is valid.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::live::config::ConfigError;

/// Default state folder: systemd's `StateDirectory=undertone` (see packaging/systemd).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/undertone";
/// Output volume range, dB: below -60 dB the music is inaudible in any venue; the engine
/// never amplifies (0 dB is the mastered level).
pub const VOLUME_DB_RANGE: (f32, f32) = (-60.0, 0.0);
/// Session lifetime range, hours (one hour to a month).
pub const SESSION_HOURS_RANGE: (u32, u32) = (1, 720);
/// The gain sent while the schedule says "off": far below hearing, so the engine keeps
/// running (warm models, devices open) and the music returns without a restart.
pub const SCHEDULE_MUTE_DB: f32 = -120.0;

/// `[web]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Folder for the page's state: the password hash, the setup code, uploaded templates
    /// (`templates/`) and config backups. Default: `/var/lib/undertone`.
    pub data_dir: PathBuf,
    /// Output volume in dB, -60 to 0. Default: 0 (the mastered level).
    pub volume_db: f32,
    /// Daily start/stop time of the music. Default: off (music all day).
    pub schedule: Schedule,
    /// Board profile (the `undertone-board` name of the hardware: pins of the button and
    /// LED). Default: `generic`.
    pub board: String,
    /// How long a login lasts, hours (1–720). Default: 12.
    pub session_hours: u32,
}

/// `[web.schedule]`: music plays from `start` to `stop` each day, local time (a stop
/// earlier than the start runs over midnight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Schedule {
    /// Use the schedule. Default: `false`.
    pub enabled: bool,
    /// `HH:MM`, 24-hour. Default: `08:00`.
    pub start: String,
    /// `HH:MM`, 24-hour. Default: `23:00`.
    pub stop: String,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            enabled: false,
            start: "08:00".into(),
            stop: "23:00".into(),
        }
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            volume_db: 0.0,
            schedule: Schedule::default(),
            board: "generic".into(),
            session_hours: 12,
        }
    }
}

/// Minutes after midnight of `HH:MM`.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

impl Schedule {
    /// Whether music should play at `minute` (minutes after local midnight).
    pub fn plays_at(&self, minute: u32) -> bool {
        if !self.enabled {
            return true;
        }
        let (Some(a), Some(b)) = (parse_hhmm(&self.start), parse_hhmm(&self.stop)) else {
            return true;
        };
        match a.cmp(&b) {
            std::cmp::Ordering::Less => (a..b).contains(&minute),
            std::cmp::Ordering::Greater => minute >= a || minute < b,
            std::cmp::Ordering::Equal => true,
        }
    }
}

/// Minutes after midnight, local time (the box's timezone).
pub fn local_minute() -> u32 {
    // SAFETY: time(NULL) and localtime_r with a zeroed out-struct owned here.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        (tm.tm_hour * 60 + tm.tm_min) as u32
    }
}

impl WebConfig {
    /// Checks every value; the error names the key and the valid range.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &'static str, detail: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            detail,
        };
        if !self.data_dir.is_absolute() {
            return Err(bad(
                "web.data_dir",
                format!(
                    "= {:?} is not an absolute path; give a folder such as {DEFAULT_DATA_DIR}",
                    self.data_dir
                ),
            ));
        }
        let (lo, hi) = VOLUME_DB_RANGE;
        if !(self.volume_db.is_finite() && (lo..=hi).contains(&self.volume_db)) {
            return Err(bad(
                "web.volume_db",
                format!("= {} is out of range; give {lo} to {hi} dB", self.volume_db),
            ));
        }
        for (key, v) in [
            ("web.schedule.start", &self.schedule.start),
            ("web.schedule.stop", &self.schedule.stop),
        ] {
            if parse_hhmm(v).is_none() {
                return Err(bad(
                    key,
                    format!("= {v:?} is not a time; give HH:MM, 24-hour (e.g. 08:30)"),
                ));
            }
        }
        let ok_board = !self.board.is_empty()
            && self.board.len() <= 32
            && self
                .board
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok_board {
            return Err(bad(
                "web.board",
                format!(
                    "= {:?} is not a profile name; give lowercase letters, digits and '-' (e.g. generic, rpi4)",
                    self.board
                ),
            ));
        }
        let (lo, hi) = SESSION_HOURS_RANGE;
        if !(lo..=hi).contains(&self.session_hours) {
            return Err(bad(
                "web.session_hours",
                format!(
                    "= {} is out of range; give {lo} to {hi} hours",
                    self.session_hours
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_windows_including_over_midnight() {
        let mut s = Schedule {
            enabled: true,
            start: "08:00".into(),
            stop: "23:00".into(),
        };
        assert!(!s.plays_at(7 * 60 + 59));
        assert!(s.plays_at(8 * 60));
        assert!(!s.plays_at(23 * 60));
        s.start = "22:00".into();
        s.stop = "02:30".into();
        assert!(s.plays_at(23 * 60));
        assert!(s.plays_at(60));
        assert!(!s.plays_at(3 * 60));
        s.enabled = false;
        assert!(s.plays_at(3 * 60));
        assert_eq!(parse_hhmm("24:00"), None);
        assert_eq!(parse_hhmm("8:00"), None);
        assert_eq!(parse_hhmm("08:05"), Some(485));
    }

    #[test]
    fn bad_values_name_the_key() {
        let p = Path::new("/etc/undertone/config.toml");
        for (c, key) in [
            (
                WebConfig {
                    volume_db: 3.0,
                    ..Default::default()
                },
                "web.volume_db",
            ),
            (
                WebConfig {
                    data_dir: "rel".into(),
                    ..Default::default()
                },
                "web.data_dir",
            ),
            (
                WebConfig {
                    board: "../x".into(),
                    ..Default::default()
                },
                "web.board",
            ),
            (
                WebConfig {
                    schedule: Schedule {
                        enabled: true,
                        start: "25:00".into(),
                        stop: "01:00".into(),
                    },
                    ..Default::default()
                },
                "web.schedule.start",
            ),
        ] {
            let e = c.validate(p).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        WebConfig::default().validate(p).unwrap();
    }
}

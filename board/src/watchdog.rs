//! The hardware watchdog (`/dev/watchdog`, the kernel's watchdog API): beside systemd's
//! watchdog (which restarts the service), this one resets the whole board when the kernel
//! or userspace wedges. It is fed only while the engine makes progress (see `task`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `WDIOC_SETTIMEOUT` = `_IOWR('W', 6, int)` from `linux/watchdog.h`.
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;

#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    #[error("watchdog {path}: cannot open: {source} (is the driver loaded, and is nothing else — systemd's RuntimeWatchdogSec — holding it?)")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("watchdog {path}: cannot set a {timeout_s} s timeout: {source}")]
    Timeout {
        path: PathBuf,
        timeout_s: u32,
        source: std::io::Error,
    },
    #[error("watchdog {path}: cannot kick: {source}")]
    Kick {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An open watchdog. Dropping it disarms it with the magic close ('V'), so a clean stop
/// does not reset the board (unless the kernel was built with `nowayout`).
#[derive(Debug)]
pub struct Watchdog {
    file: Option<File>,
    path: PathBuf,
    timeout: Duration,
}

impl Watchdog {
    /// Opens and arms the watchdog with `timeout_s`; the driver may round it (see
    /// [`Watchdog::timeout`]).
    pub fn open(path: &Path, timeout_s: u32) -> Result<Watchdog, WatchdogError> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|source| WatchdogError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let mut t: libc::c_int = timeout_s as libc::c_int;
        // SAFETY: the ioctl reads and writes one int through a valid pointer on an open fd.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_SETTIMEOUT as _, &mut t) };
        let wd = Watchdog {
            file: Some(file),
            path: path.to_path_buf(),
            timeout: Duration::from_secs(t.max(1) as u64),
        };
        if rc != 0 {
            return Err(WatchdogError::Timeout {
                path: path.to_path_buf(),
                timeout_s,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(wd)
    }

    /// The timeout the driver accepted.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Restarts the countdown.
    pub fn kick(&mut self) -> Result<(), WatchdogError> {
        if let Some(f) = self.file.as_mut() {
            f.write_all(b"\0").map_err(|source| WatchdogError::Kick {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(mut f) = self.file.take() {
            if let Err(e) = f.write_all(b"V") {
                tracing::warn!(path = %self.path.display(), error = %e, "watchdog: magic close failed; the board may reset");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_says_what_to_check() {
        let e = Watchdog::open(Path::new("/dev/no-watchdog-here"), 15)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("watchdog /dev/no-watchdog-here: cannot open"),
            "{e}"
        );
        assert!(e.contains("driver loaded"), "{e}");
    }
}

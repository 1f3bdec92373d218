//! systemd's notification protocol (`sd_notify(3)`): one datagram per message to the Unix
//! socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
//! Without the variable (not started by systemd, or `Type=simple`) every call is a no-op.
//!
//! The engine sends `READY=1` once the first audio is queued, `WATCHDOG=1` from its
//! processing loop (so a wedged loop, not just a dead process, gets restarted), a
//! `STATUS=` line people see in `systemctl status`, and `STOPPING=1` on shutdown.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={path:?}: {source} (is systemd's notify socket reachable from this process?)")]
    Socket {
        path: String,
        source: std::io::Error,
    },
}

/// A connection to systemd's notify socket (or nothing, when not under systemd).
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr, String)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a no-op notifier when it is unset or empty.
    pub fn from_env() -> Result<Notifier, NotifyError> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(p) if !p.is_empty() => Notifier::to_socket(&p),
            _ => Ok(Notifier { target: None }),
        }
    }

    /// To the socket at `path` (`@name` = abstract namespace).
    pub fn to_socket(path: &str) -> Result<Notifier, NotifyError> {
        let err = |source| NotifyError::Socket {
            path: path.to_string(),
            source,
        };
        let addr = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).map_err(err)?,
            None => SocketAddr::from_pathname(path).map_err(err)?,
        };
        let sock = UnixDatagram::unbound().map_err(err)?;
        // Never block the processing loop on a full notify queue (a slow or stuck reader):
        // a message that does not fit is dropped; the next WATCHDOG/STATUS follows soon.
        sock.set_nonblocking(true).map_err(err)?;
        Ok(Notifier {
            target: Some((sock, addr, path.to_string())),
        })
    }

    /// Whether messages go anywhere.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// Sends raw `KEY=VALUE` lines (newline-separated) in one datagram.
    pub fn send(&self, msg: &str) -> Result<(), NotifyError> {
        let Some((sock, addr, path)) = &self.target else {
            return Ok(());
        };
        match sock.send_to_addr(msg.as_bytes(), addr) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tracing::debug!(socket = %path, "notify queue full; message dropped");
                Ok(())
            }
            Err(source) => Err(NotifyError::Socket {
                path: path.clone(),
                source,
            }),
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// `WATCHDOG=1`: the processing loop is alive.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.send("WATCHDOG=1")
    }

    /// `STATUS=...` (one line, shown by `systemctl status`).
    pub fn status(&self, status: &str) -> Result<(), NotifyError> {
        self.send(&format!("STATUS={}", one_line(status)))
    }

    /// `STOPPING=1`: a clean shutdown has begun.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.send("STOPPING=1")
    }
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC` (systemd's advice), or `None`
/// when the watchdog is off (or `$WATCHDOG_PID` names another process).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_on_a_bound_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to_socket(path.to_str().unwrap()).unwrap();
        assert!(n.is_active());
        n.ready("playing\nlive").unwrap();
        n.watchdog().unwrap();
        n.status("camera missing").unwrap();
        n.stopping().unwrap();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..4 {
            let k = server.recv(&mut buf).unwrap();
            got.push(String::from_utf8(buf[..k].to_vec()).unwrap());
        }
        assert_eq!(
            got,
            [
                "READY=1\nSTATUS=playing live",
                "WATCHDOG=1",
                "STATUS=camera missing",
                "STOPPING=1"
            ]
        );
    }

    #[test]
    fn abstract_socket_works() {
        let name = format!("undertone-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::to_socket(&format!("@{name}")).unwrap();
        n.watchdog().unwrap();
        let mut buf = [0u8; 64];
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"WATCHDOG=1");
    }

    #[test]
    fn a_reader_that_never_reads_does_not_block_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to_socket(path.to_str().unwrap()).unwrap();
        // Far more than any datagram queue holds (net.unix.max_dgram_qlen is 512 at most).
        for _ in 0..10_000 {
            n.watchdog().unwrap();
        }
        let mut buf = [0u8; 64];
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"WATCHDOG=1");
    }

    #[test]
    fn without_a_socket_everything_is_a_no_op() {
        let n = Notifier { target: None };
        assert!(!n.is_active());
        n.ready("x").unwrap();
        n.watchdog().unwrap();
    }

    #[test]
    fn missing_socket_is_an_error_naming_it() {
        let n = Notifier::to_socket("/nonexistent/undertone.sock").unwrap();
        let e = n.watchdog().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/undertone.sock"), "{e}");
    }
}

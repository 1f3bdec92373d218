//! Recent log lines for the System page: a `tracing` writer that copies every line to
//! stderr (the journal on the box) and keeps the last [`LOG_LINES`] in memory.
//!
//! The binary installs it with `.with_writer(undertone::web::logs::TeeStderr)`; without
//! it the page says the log is in the journal.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;

/// Lines kept (a few minutes of a busy log, a few days of a quiet one; ~40 KB).
pub const LOG_LINES: usize = 400;
/// Longest line kept; longer ones are cut (a runaway message must not fill memory).
const MAX_LINE: usize = 1000;

static RING: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Keeps one log line.
pub fn push(line: &str) {
    let line = line.trim_end();
    if line.is_empty() {
        return;
    }
    let mut cut: String = line.chars().take(MAX_LINE).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    let mut r = RING.lock().unwrap_or_else(|e| e.into_inner());
    if r.len() == LOG_LINES {
        r.pop_front();
    }
    r.push_back(cut);
}

/// The kept lines, oldest first; `None` when the tee is not installed.
pub fn recent() -> Option<Vec<String>> {
    if !INSTALLED.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    Some(
        RING.lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect(),
    )
}

/// A `tracing_subscriber` writer: stderr plus the in-memory ring.
#[derive(Debug, Clone, Copy, Default)]
pub struct TeeStderr;

/// One event's writer; the line is kept when it is dropped.
pub struct TeeWriter {
    buf: Vec<u8>,
}

impl Write for TeeWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for TeeWriter {
    fn drop(&mut self) {
        let _ = std::io::stderr().write_all(&self.buf);
        let text = String::from_utf8_lossy(&self.buf);
        // The fmt layer colours its output on a terminal; keep the page's copy plain.
        let plain = strip_ansi(&text);
        for l in plain.lines() {
            push(l);
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' && it.peek() == Some(&'[') {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for TeeStderr {
    type Writer = TeeWriter;
    fn make_writer(&'a self) -> TeeWriter {
        INSTALLED.store(true, std::sync::atomic::Ordering::Relaxed);
        TeeWriter {
            buf: Vec::with_capacity(256),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_plain_recent_lines() {
        {
            let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(&TeeStderr);
            w.write_all(b"\x1b[32m INFO\x1b[0m web: hello\n").unwrap();
        }
        let r = recent().unwrap();
        assert!(r.iter().any(|l| l == " INFO web: hello"), "{r:?}");
        for i in 0..LOG_LINES + 5 {
            push(&format!("line {i}"));
        }
        let r = recent().unwrap();
        assert_eq!(r.len(), LOG_LINES);
        assert_eq!(r.last().unwrap(), &format!("line {}", LOG_LINES + 4));
    }
}

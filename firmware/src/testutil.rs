//! Helpers shared by the library's unit tests.

use std::path::Path;
use std::process::Command;

/// Writes `path` from ffmpeg's lavfi `source`, encoded with `codec` (ffmpeg arguments).
pub fn lavfi_video(path: &Path, source: &str, codec: &[&str]) {
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", source])
        .args(codec)
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "ffmpeg could not write {}", path.display());
}

//! Helpers shared by the end-to-end tests: the binary, the real clips, temp folders.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// A real clip from `testdata/clips/` (put there by `tools/clips/fetch.sh`, which `tools/test.sh` runs).
pub fn clip(name: &str) -> PathBuf {
    let p = root().join("testdata/clips").join(name);
    assert!(
        p.exists(),
        "{} is missing: run tools/clips/fetch.sh (tools/test.sh does)",
        p.display()
    );
    p
}

/// Runs the `undertone` binary with the repository as its data folder.
pub fn undertone(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_undertone"));
    c.arg("--data").arg(root());
    for a in args {
        c.arg(a.as_ref());
    }
    c.output().expect("run undertone")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Names of the entries of a folder (sorted), hidden ones included.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

/// A download cut off part-way, written as `dir/part.mp4`: bikes.mp4 with its index first
/// (`+faststart`, as streamed files are), cut at 60 % of its bytes. It states 10 s of video;
/// its picture stops where the bytes do.
pub fn cut_off_download(dir: &Path) -> PathBuf {
    let whole = dir.join("whole.mp4");
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-i"])
        .arg(clip("bikes.mp4"))
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(&whole)
        .status()
        .expect("run ffmpeg");
    assert!(made.success(), "ffmpeg could not write {}", whole.display());
    let bytes = std::fs::read(&whole).unwrap();
    let part = dir.join("part.mp4");
    std::fs::write(&part, &bytes[..bytes.len() * 6 / 10]).unwrap();
    part
}

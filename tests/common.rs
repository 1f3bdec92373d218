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

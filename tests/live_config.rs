//! A config save killed at any moment leaves the old or the new file, never a torn one.
//!
//! The test re-runs its own binary as a child that saves two large, valid configs in
//! turn as fast as it can (1 MB each, so a kill often lands inside a write), reporting
//! each save on stdout; the parent kills it with SIGKILL after a varying number of saves
//! and checks the file. Synchronisation is by the child's output lines, not by sleeping.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use undertone::live::config::Config;

const CHILD_ENV: &str = "UNDERTONE_TEST_CONFIG_WRITER";

/// Two valid configs, each padded with a 1 MB comment so a write takes a while.
fn versions() -> [String; 2] {
    let pad = |c: char| {
        format!(
            "# {}\n",
            std::iter::repeat_n(c, 1 << 20).collect::<String>()
        )
    };
    [
        format!("{}fps = 10\naudio_device = \"plughw:0,0\"\n", pad('a')),
        format!("{}fps = 20\naudio_device = \"plughw:1,0\"\n", pad('b')),
    ]
}

/// The child: saves the two versions in turn forever (only when started by the parent).
#[test]
fn config_writer_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let path = Path::new(&path);
    let v = versions();
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        Config::save_text(&v[(i % 2) as usize], path).unwrap();
        writeln!(out, "saved {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn killed_config_save_leaves_the_old_or_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let v = versions();
    std::fs::write(&path, &v[0]).unwrap();
    let exe = std::env::current_exe().unwrap();
    for round in 0..12u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "config_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Kill after a varying number of completed saves; the next one is under way.
        let mut saves = 0;
        while saves <= round % 4 {
            let l = lines.next().expect("the writer stopped").unwrap();
            if l.starts_with("saved ") {
                saves += 1;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text == v[0] || text == v[1],
            "round {round}: torn config ({} bytes)",
            text.len()
        );
        let c = Config::load(&path).unwrap();
        assert!(c.fps == 10.0 || c.fps == 20.0);
    }
}

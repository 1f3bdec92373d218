//! `undertone run` end to end: config errors, a paced run with its report and recording,
//! SIGTERM with systemd notification, and a source that appears late.
//!
//! Audio goes to PulseAudio's null sink through ALSA (`live_pulse.rs`), so playback is paced
//! in real time like a sound card; the music is a WAV looped with `--play` (a synthetic
//! chord: it isolates the audio path, the music engine is tested elsewhere). Readiness comes
//! from the `READY=1` the binary sends to a notify socket the test binds, never a sleep.

mod common;
mod live_pulse;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{clip, stderr};
use live_pulse::{paced_args, read_json as report, undertone_run as undertone, Pulse};

fn run<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    undertone().args(args).output().unwrap()
}

/// 2 s of an A-minor chord at 48 kHz stereo, 16-bit.
fn chord_wav(path: &Path) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..96_000 {
        let t = i as f32 / 48_000.0;
        let v: f32 = [220.0f32, 261.63, 329.63]
            .iter()
            .map(|f| (t * f * std::f32::consts::TAU).sin() * 0.2)
            .sum();
        let s = (v * 32767.0) as i16;
        w.write_sample(s).unwrap();
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn config_with_an_unknown_key_is_rejected_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "source = \"file:x.mp4\"\naudio_devcie = \"hw:0\"\n").unwrap();
    let o = run(&["--config", cfg.to_str().unwrap(), "--duration", "1"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("audio_devcie") && e.contains(cfg.to_str().unwrap()),
        "{e}"
    );
}

#[test]
fn impossible_values_are_rejected_naming_key_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "fps = 500\n").unwrap();
    let o = run(&["--config", cfg.to_str().unwrap()]);
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("`fps`") && e.contains("1 to 120"),
        "{e}"
    );
    // A flag is checked like the key it overrides.
    std::fs::write(&cfg, "").unwrap();
    let o = run(&["--config", cfg.to_str().unwrap(), "--source", "/dev/video0"]);
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("`source`") && e.contains("v4l2:"),
        "{e}"
    );
    let o = run(&["--config", "/nonexistent/undertone.toml"]);
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("/nonexistent/undertone.toml"),
        "{e}"
    );
}

#[test]
fn paced_run_writes_a_complete_report_and_recording() {
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(dir.path());
    let wav = dir.path().join("chord.wav");
    chord_wav(&wav);
    let rep = dir.path().join("report.json");
    let rec = dir.path().join("rec.wav");
    let mut args = paced_args(&clip("bikes.mp4"), &pulse.pcm(), &rep, Some(&rec));
    args.extend(["--play", wav.to_str().unwrap(), "--duration", "3"].map(String::from));
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&rep);
    assert_eq!(r["stopped_by"], "duration");
    // bikes.mp4 is 25 fps; replayed in real time for 3 s.
    let frames = r["frames_seen"].as_u64().unwrap();
    assert!((50..=80).contains(&frames), "frames {frames}");
    assert_eq!(r["audio"]["underruns"], 0, "{r}");
    assert_eq!(r["audio"]["state"], "running");
    assert_eq!(
        r["camera_states"].as_array().unwrap().last().unwrap()["state"],
        "running"
    );
    // Headroom never fell below one ALSA period (1024 frames = 21.3 ms).
    let hmin = r["headroom_min"].as_f64().unwrap();
    assert!(hmin >= 1024.0 / 48_000.0, "headroom_min {hmin}");
    let rec = hound::WavReader::open(&rec).unwrap();
    assert!(
        rec.duration() >= 48_000 * 3,
        "recorded {} frames",
        rec.duration()
    );
    drop(pulse);
}

/// Spawns `undertone run` with a notify socket; returns the child and the socket.
fn spawn_notified(dir: &Path, args: &[String]) -> (Child, UnixDatagram) {
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let child = undertone()
        .args(args)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, sock)
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock
        .recv(&mut buf)
        .expect("no notification from undertone within 30 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn wait_for(sock: &UnixDatagram, prefix: &str, seen: &mut Vec<String>) {
    loop {
        let m = recv(sock);
        seen.push(m.clone());
        if m.starts_with(prefix) {
            return;
        }
    }
}

#[test]
fn sigterm_stops_cleanly_with_report_and_recording_complete() {
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(dir.path());
    let wav = dir.path().join("chord.wav");
    chord_wav(&wav);
    let rep = dir.path().join("report.json");
    let rec = dir.path().join("rec.wav");
    let mut args = paced_args(&clip("trailer_bbb.mp4"), &pulse.pcm(), &rep, Some(&rec));
    args.extend(["--play".to_string(), wav.display().to_string()]);
    let (child, sock) = spawn_notified(dir.path(), &args);
    let mut seen = Vec::new();
    wait_for(&sock, "READY=1", &mut seen);
    // Two watchdog pings prove the loop runs (WATCHDOG_USEC=0.4 s: one every 0.2 s).
    wait_for(&sock, "WATCHDOG=1", &mut seen);
    wait_for(&sock, "WATCHDOG=1", &mut seen);
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_for(&sock, "STOPPING=1", &mut seen);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&rep);
    assert_eq!(r["stopped_by"], "signal");
    assert!(r["frames_seen"].as_u64().unwrap() > 0);
    // The recording is a complete WAV (header sizes match the data).
    let mut w = hound::WavReader::open(&rec).unwrap();
    let n = w
        .samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
        .len();
    assert!(
        n > 0 && n as u32 == w.duration() * 2,
        "{n} samples, {} frames",
        w.duration()
    );
    assert!(seen.iter().any(|m| m.contains("STATUS=camera")), "{seen:?}");
    // No temporary files left next to the outputs.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn source_that_appears_late_is_captured_within_two_seconds_and_music_never_stops() {
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(dir.path());
    let wav = dir.path().join("chord.wav");
    chord_wav(&wav);
    let rep = dir.path().join("report.json");
    let late: PathBuf = dir.path().join("camera.mp4");
    let mut args = paced_args(&late, &pulse.pcm(), &rep, None);
    args.extend(["--play", wav.to_str().unwrap(), "--duration", "8"].map(String::from));
    let (child, sock) = spawn_notified(dir.path(), &args);
    let mut seen = Vec::new();
    wait_for(&sock, "READY=1", &mut seen);
    let ready_at = Instant::now();
    assert!(seen.last().unwrap().contains("camera missing"), "{seen:?}");
    // Let the backoff grow to its maximum (the worst case), then the "camera" arrives.
    for _ in 0..8 {
        wait_for(&sock, "WATCHDOG=1", &mut seen);
    }
    let staged = dir.path().join(".camera.mp4.tmp");
    std::fs::copy(clip("bikes.mp4"), &staged).unwrap();
    std::fs::rename(&staged, &late).unwrap();
    let appeared = ready_at.elapsed().as_secs_f64();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&rep);
    let states = r["camera_states"].as_array().unwrap();
    assert_eq!(states[0]["state"], "missing");
    let ready_t = states[0]["t"].as_f64().unwrap();
    let running_t = states
        .iter()
        .find(|s| s["state"] == "running")
        .unwrap_or_else(|| panic!("never running: {r}"))["t"]
        .as_f64()
        .unwrap();
    // Run-time of the file's arrival: READY was sent at the first state change.
    let back = running_t - (ready_t + appeared);
    assert!(
        back <= 2.0,
        "capture back {back:.2} s after the source appeared ({r})"
    );
    assert!(r["frames_seen"].as_u64().unwrap() > 0);
    assert_eq!(r["audio"]["underruns"], 0, "music never stopped: {r}");
    assert_eq!(r["audio"]["state"], "running");
}

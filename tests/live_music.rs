//! The live music engine end to end: `undertone run` with the music engine (no `--play`) on
//! PulseAudio's null sink through ALSA (paced in real time, no sound card), a montage of
//! real clips replayed as a camera, the report and the recording checked.
//!
//! Reaction: every detected cut's section change reaches the PCM within one beat + 100 ms
//! (report), at a section-start bar that begins after the audio already queued when the cut
//! was known. Fallback: while the camera is missing the music plays calm fallback bars and
//! never stops; once it is back the bars follow the picture.

mod common;
mod live_pulse;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{clip, stderr};
use live_pulse::{paced_args, read_json as report, undertone_run, Pulse};
use serde_json::Value;

/// `undertone run` with the default configuration (no config file).
fn undertone() -> Command {
    let mut c = undertone_run();
    c.args(["--config", "/dev/null"]);
    c
}

/// Real segments joined by hard cuts at 25 fps, 320x240: (clip, start s, length s).
const SEGMENTS: [(&str, f64, f64); 4] = [
    ("bikes.mp4", 0.0, 3.0),
    ("bigbuckbunny.mp4", 0.5, 2.8),
    ("carphone_pristine.mp4", 0.0, 3.2),
    ("bikes.mp4", 5.0, 3.0),
];

/// Builds the montage; returns it and its cut times (video seconds).
fn montage(dir: &Path) -> (PathBuf, Vec<f64>) {
    let out = dir.join("montage.mp4");
    let mut args: Vec<String> = vec!["-v".into(), "error".into(), "-y".into()];
    let mut filter = String::new();
    for (i, (c, s, l)) in SEGMENTS.iter().enumerate() {
        args.extend(["-ss", &s.to_string(), "-t", &l.to_string(), "-i"].map(String::from));
        args.push(clip(c).to_string_lossy().into_owned());
        filter += &format!(
            "[{i}:v]fps=25,scale=320:240,setsar=1,format=yuv420p,trim=duration={l},setpts=PTS-STARTPTS[v{i}];"
        );
    }
    for i in 0..SEGMENTS.len() {
        filter += &format!("[v{i}]");
    }
    filter += &format!("concat=n={}:v=1:a=0[out]", SEGMENTS.len());
    args.extend(["-filter_complex", &filter, "-map", "[out]"].map(String::from));
    args.extend(
        [
            "-c:v", "libx264", "-crf", "20", "-preset", "veryfast", "-an",
        ]
        .map(String::from),
    );
    args.push(out.to_string_lossy().into_owned());
    let st = Command::new("ffmpeg").args(&args).status().unwrap();
    assert!(st.success(), "ffmpeg failed to build the montage");
    let mut t = 0.0;
    let cuts = SEGMENTS[..SEGMENTS.len() - 1]
        .iter()
        .map(|(_, _, l)| {
            t += l;
            t
        })
        .collect();
    (out, cuts)
}

fn rms_dbfs(wav: &Path, from_s: f64) -> (f64, u32) {
    let mut r = hound::WavReader::open(wav).unwrap();
    let frames = r.duration();
    let skip = (from_s * 48_000.0) as usize * 2;
    let s: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
    let tail = &s[skip.min(s.len())..];
    let ms = tail
        .iter()
        .map(|&v| (v as f64 / 32768.0).powi(2))
        .sum::<f64>()
        / tail.len().max(1) as f64;
    (10.0 * ms.max(1e-12).log10(), frames)
}

#[test]
fn every_cut_starts_a_section_within_one_beat_and_100_ms() {
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(dir.path());
    let (video, truth) = montage(dir.path());
    let rep = dir.path().join("report.json");
    let rec = dir.path().join("played.wav");
    let o = undertone()
        .args(paced_args(&video, &pulse.pcm(), &rep, Some(&rec)))
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&rep);
    assert_eq!(r["stopped_by"], "end of file");
    assert_eq!(r["audio"]["underruns"], 0, "{}", r["audio"]);
    assert!(
        r["headroom_min"].as_f64().unwrap() >= 1024.0 / 48_000.0,
        "{}",
        r["headroom_min"]
    );
    let m = &r["music"];
    let bars = m["bars"].as_array().unwrap();
    assert!(bars.len() >= 4, "{m}");
    assert_eq!(bars[0]["section_start"], true);
    // Bars tile the master clock.
    for w in bars.windows(2) {
        let (e, s) = (
            w[0]["end"].as_f64().unwrap(),
            w[1]["start"].as_f64().unwrap(),
        );
        assert!((e - s).abs() < 1e-6, "{} then {}", w[0], w[1]);
    }
    let cuts = m["cuts"].as_array().unwrap();
    let found = truth
        .iter()
        .filter(|&&t| {
            cuts.iter()
                .any(|c| (c["pts"].as_f64().unwrap() - t).abs() < 0.1)
        })
        .count();
    assert!(found >= truth.len() - 1, "found {found} of {truth:?}: {m}");
    let mut reached = 0;
    for c in cuts {
        let Some(reaction) = c["reaction"].as_f64() else {
            continue; // the clip ended before its section was heard
        };
        reached += 1;
        let budget = c["budget"].as_f64().unwrap();
        assert!(reaction <= budget, "late: {c}");
        assert!(reaction >= 0.0, "{c}");
        // The section's bar starts where the planner said, after the audio queued then.
        let at = c["section_at"].as_f64().unwrap();
        assert!(at >= c["queued_until"].as_f64().unwrap() - 1e-9, "{c}");
        let bar = bars
            .iter()
            .find(|b| b["index"] == c["section_bar"])
            .unwrap_or_else(|| panic!("no bar {}", c["section_bar"]));
        assert_eq!(bar["section_start"], true, "{bar}");
        assert!(
            (bar["start"].as_f64().unwrap() - at).abs() < 1e-6,
            "{bar} {c}"
        );
    }
    assert!(reached >= 2, "{m}");
    // Music was audible from the first sound on, and recorded frame for frame.
    let first = r["first_sound_s"].as_f64().unwrap();
    assert!(first < 10.0);
    let (db, frames) = rms_dbfs(&rec, 1.0);
    assert!(db > -40.0, "recording RMS {db:.1} dBFS");
    assert!(frames as f64 >= 48_000.0 * 10.0, "{frames} frames");
    drop(pulse);
}

#[test]
fn a_missing_camera_plays_the_calm_fallback_then_the_picture() {
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(dir.path());
    let rep = dir.path().join("report.json");
    let late = dir.path().join("camera.mp4");
    let child = undertone()
        .args(paced_args(&late, &pulse.pcm(), &rep, None))
        .args(["--duration", "12"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The camera appears once the first bars have been planned without it (the report is
    // rewritten every 5 s: wait for the first one that shows bars).
    let t0 = std::time::Instant::now();
    loop {
        if let Ok(b) = std::fs::read(&rep) {
            if let Ok(v) = serde_json::from_slice::<Value>(&b) {
                if v["music"]["bars_total"].as_u64().unwrap_or(0) >= 1 {
                    break;
                }
            }
        }
        assert!(t0.elapsed().as_secs() < 30, "no report with bars");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let staged = dir.path().join(".camera.mp4.tmp");
    std::fs::copy(clip("bikes.mp4"), &staged).unwrap();
    std::fs::rename(&staged, &late).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&rep);
    assert_eq!(
        r["audio"]["underruns"], 0,
        "music never stopped: {}",
        r["audio"]
    );
    let bars = r["music"]["bars"].as_array().unwrap();
    let fallback: Vec<&Value> = bars.iter().filter(|b| b["fallback"] == true).collect();
    assert!(!fallback.is_empty(), "{bars:?}");
    for b in &fallback {
        assert_eq!(b["density_class"], 1, "{b}");
        assert_eq!(b["strength_class"], 1, "{b}");
    }
    assert!(bars.iter().any(|b| b["fallback"] == false), "{bars:?}");
    // Same tempo throughout.
    let tempo = bars[0]["tempo_bpm"].as_f64().unwrap();
    assert!(bars
        .iter()
        .all(|b| b["tempo_bpm"].as_f64().unwrap() == tempo));
    drop(pulse);
}

#[test]
fn sigterm_with_the_engine_stops_cleanly_with_the_music_report_complete() {
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(dir.path());
    let rep = dir.path().join("report.json");
    let rec = dir.path().join("played.wav");
    let child = undertone()
        .args(paced_args(
            &clip("trailer_bbb.mp4"),
            &pulse.pcm(),
            &rep,
            Some(&rec),
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until two bars have been heard (the report is rewritten every 5 s).
    let t0 = std::time::Instant::now();
    loop {
        let heard = std::fs::read(&rep)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map(|v| {
                v["music"]["bars"]
                    .as_array()
                    .map(|b| b.iter().filter(|b| !b["heard_at"].is_null()).count())
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        if heard >= 2 {
            break;
        }
        assert!(t0.elapsed().as_secs() < 40, "no bars heard");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&rep);
    assert_eq!(r["stopped_by"], "signal");
    assert!(r["music"]["bars_total"].as_u64().unwrap() >= 2, "{r}");
    let mut w = hound::WavReader::open(&rec).unwrap();
    let n = w
        .samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
        .len();
    assert!(n > 0 && n as u32 == w.duration() * 2);
    drop(pulse);
}

//! End-to-end tests of `undertone score` and `undertone refine` on real clips: the outputs,
//! determinism, refinement, and every bad input (message, exit code, nothing left behind).

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{clip, entries, stderr, undertone};

const OUTPUTS: [&str; 6] = [
    "analysis.json",
    "music.wav",
    "notes.mid",
    "report.json",
    "report.png",
    "scored.mp4",
];

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// A bad input must fail with one clear line naming `name` and `what`, exit non-zero and
/// leave the output folder absent (or as it was).
fn assert_rejected(args: &[&dyn AsRef<std::ffi::OsStr>], out: &Path, name: &str, what: &[&str]) {
    let o = undertone(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "expected failure, got success: {err}");
    assert!(err.contains(name), "error should name {name}: {err}");
    assert!(
        what.iter().any(|w| err.to_lowercase().contains(w)),
        "error should say one of {what:?}: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        entries(out).is_empty(),
        "nothing may be left behind in {}: {:?}",
        out.display(),
        entries(out)
    );
}

#[test]
fn scores_a_real_clip_with_all_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let video = clip("bigbuckbunny.mp4");
    let o = undertone(&[&"score", &video, &"-o", &out, &"--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(entries(&out), OUTPUTS.to_vec());

    let r = report(&out);
    let duration = r["input"]["duration"].as_f64().unwrap();
    let fps = r["input"]["fps"].as_f64().unwrap();
    assert!((duration - 5.28).abs() < 0.1, "duration {duration}");

    // music.wav: 48 kHz stereo, as long as the video ± one frame, not silent, not clipped.
    let mut wav = hound::WavReader::open(out.join("music.wav")).unwrap();
    let spec = wav.spec();
    assert_eq!((spec.sample_rate, spec.channels), (48_000, 2));
    let samples: Vec<i16> = wav.samples::<i16>().map(|s| s.unwrap()).collect();
    let secs = samples.len() as f64 / 2.0 / 48_000.0;
    assert!(
        (secs - duration).abs() <= 1.0 / fps + 1e-6,
        "audio {secs} s vs video {duration} s"
    );
    let rms =
        (samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    assert!(rms > 500.0, "music is nearly silent (rms {rms})");
    assert!(
        samples.iter().all(|&s| s > i16::MIN && s < i16::MAX),
        "clipped samples"
    );

    // notes.mid: a melody track with notes, and the report's per-bar counts add up to it.
    let bytes = fs::read(out.join("notes.mid")).unwrap();
    let smf = midly::Smf::parse(&bytes).unwrap();
    let melody = smf
        .tracks
        .iter()
        .find(|t| t.iter().any(|e| matches!(e.kind, midly::TrackEventKind::Meta(midly::MetaMessage::TrackName(n)) if n == b"melody")))
        .expect("a track named melody");
    let ons = melody
        .iter()
        .filter(|e| matches!(e.kind, midly::TrackEventKind::Midi { message: midly::MidiMessage::NoteOn { vel, .. }, .. } if vel > 0))
        .count();
    let bars = r["bars"].as_array().unwrap();
    let counted: u64 = bars.iter().map(|b| b["note_count"].as_u64().unwrap()).sum();
    assert!(ons > 0);
    assert_eq!(ons as u64, counted);
    for key in [
        "start",
        "end",
        "speed",
        "saliency",
        "density_class",
        "strength_class",
        "section_start",
        "mean_velocity",
        "template_id",
        "style",
    ] {
        assert!(bars[0].get(key).is_some(), "bar field {key} missing");
    }
    assert!(r["tempo_bpm"].as_f64().unwrap() > 40.0);
    assert!(
        !r["beats"].as_array().unwrap().is_empty()
            && !r["downbeats"].as_array().unwrap().is_empty()
    );

    // scored.mp4 has a video and an audio stream of the video's length.
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(out.join("scored.mp4"))
        .output()
        .unwrap();
    let kinds = String::from_utf8_lossy(&probe.stdout);
    assert!(
        kinds.contains("video") && kinds.contains("audio"),
        "{kinds}"
    );
    // Its audio is music.wav: sample-aligned, as long as the music (plus at most the codec's
    // last partial frame). (A long piece's two-half encode is checked at its splice in
    // score::mux's tests.)
    let dec = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(out.join("scored.mp4"))
        .args(["-map", "0:a", "-f", "s16le", "-"])
        .output()
        .unwrap();
    assert!(dec.status.success(), "{}", stderr(&dec));
    let heard: Vec<f64> = dec
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f64)
        .collect();
    assert!(
        heard.len() >= samples.len() && heard.len() <= samples.len() + 2 * 1024,
        "scored.mp4 has {} samples, music.wav {}",
        heard.len(),
        samples.len()
    );
    let snr = |r: std::ops::Range<usize>| {
        let (mut sig, mut err) = (0.0, 0.0);
        for i in r {
            sig += (samples[i] as f64).powi(2);
            err += (heard[i] - samples[i] as f64).powi(2);
        }
        10.0 * (sig / err.max(1.0)).log10()
    };
    let whole = snr(0..samples.len());
    println!("scored.mp4 audio vs music.wav: SNR {whole:.1} dB");
    assert!(
        whole > 20.0,
        "scored.mp4's audio is not music.wav ({whole:.1} dB)"
    );
    // report.png is a PNG.
    assert_eq!(
        &fs::read(out.join("report.png")).unwrap()[..8],
        b"\x89PNG\r\n\x1a\n"
    );
}

#[test]
fn same_seed_gives_byte_identical_outputs_and_refine_updates_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let video = clip("bikes.mp4");
    for out in [&a, &b] {
        let o = undertone(&[
            &"score", &video, &"-o", out, &"--seed", &"42", &"--genre", &"ambient", &"--quiet",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    for f in ["music.wav", "notes.mid", "scored.mp4", "report.png"] {
        assert!(
            fs::read(a.join(f)).unwrap() == fs::read(b.join(f)).unwrap(),
            "{f} differs between runs"
        );
    }

    let o = undertone(&[&"refine", &a, &"--list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        list.contains("new-melody")
            && list.contains("genre=pop")
            && !list.contains("genre=ambient"),
        "{list}"
    );

    let before = fs::read(a.join("notes.mid")).unwrap();
    let o = undertone(&[&"refine", &a, &"--like"]);
    assert!(o.status.success());
    assert_eq!(
        fs::read(a.join("notes.mid")).unwrap(),
        before,
        "liking changes nothing"
    );

    let o = undertone(&[&"refine", &a, &"--option", &"new-melody", &"--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(
        fs::read(a.join("notes.mid")).unwrap(),
        before,
        "a new melody was written"
    );
    assert_eq!(entries(&a), OUTPUTS.to_vec());
    let r = report(&a);
    assert_eq!(r["preferences"]["melody_variation"], 1);

    let o = undertone(&[&"refine", &a, &"--option", &"louder"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--list"), "{}", stderr(&o));

    // A reader that went away (`undertone refine DIR --list | head -1`) is no failure and
    // no panic: stdout is a pipe whose reading end is already closed.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_undertone"))
        .arg("--data")
        .arg(common::root())
        .args(["refine", "--list"])
        .arg(&a)
        .stdout(writer)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let missing = dir.path().join("nope.mp4");
    assert_rejected(
        &[&"score", &missing, &"-o", &out],
        &out,
        "nope.mp4",
        &["no such file"],
    );
}

#[test]
fn a_text_file_is_not_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let f = dir.path().join("notes.mp4");
    fs::write(&f, "this is a shopping list, not a film\n".repeat(200)).unwrap();
    assert_rejected(
        &[&"score", &f, &"-o", &out],
        &out,
        "notes.mp4",
        &["not a video", "corrupt"],
    );
}

#[test]
fn audio_only_file_has_no_video_stream() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let f = dir.path().join("tone.m4a");
    let ok = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=2",
            "-c:a",
            "aac",
        ])
        .arg(&f)
        .status()
        .unwrap();
    assert!(ok.success());
    assert_rejected(
        &[&"score", &f, &"-o", &out],
        &out,
        "tone.m4a",
        &["no video stream"],
    );
}

#[test]
fn zero_length_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let f = dir.path().join("empty.mp4");
    fs::write(&f, b"").unwrap();
    assert_rejected(&[&"score", &f, &"-o", &out], &out, "empty.mp4", &["empty"]);
}

#[test]
fn truncated_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let f = dir.path().join("cut.mp4");
    let bytes = fs::read(clip("bikes.mp4")).unwrap();
    fs::write(&f, &bytes[..bytes.len() / 3]).unwrap();
    assert_rejected(
        &[&"score", &f, &"-o", &out],
        &out,
        "cut.mp4",
        &["truncated"],
    );
}

/// A download cut off part-way whose index came first (`+faststart`): the picture stops
/// where the bytes do, long before the length the file states.
#[test]
fn a_cut_off_download_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let f = common::cut_off_download(dir.path());
    assert_rejected(&[&"score", &f, &"-o", &out], &out, "part.mp4", &["cut off"]);
}

/// Interrupted (SIGTERM, as `kill` or a closing terminal sends; Ctrl-C's SIGINT alike) once
/// the analysis is done and ffmpeg is muxing: the run exits 143 and leaves nothing behind:
/// no output folder (this run created it), no ffmpeg still writing into it.
#[test]
fn an_interrupted_score_leaves_nothing_behind() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_undertone"))
        .args(["--log", "undertone=info", "score"])
        .arg(clip("trailer_bbb.mp4"))
        .arg("-o")
        .arg(&out)
        .arg("--quiet")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // the muxer starts right after the plan: wait for the analysis to be done
    let done = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("analysis done"));
    assert!(done, "the analysis never finished");
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    // the work failing as its ffmpeg processes are killed is not reported as an error
    assert!(!rest.iter().any(|l| l.contains("error")), "{rest:?}");
    assert!(!out.exists(), "left behind: {:?}", entries(&out));
    // no process (an ffmpeg the run started) still names the output folder
    let needle = out.display().to_string();
    let alive: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect();
    assert!(alive.is_empty(), "still running: {alive:?}");
}

/// A named pipe (`score <(curl …)`) is refused at once, naming it: the video is read more
/// than once (before, the decoder waited on the emptied pipe for ever).
#[test]
fn a_pipe_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let fifo = dir.path().join("stream.mp4");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    assert_rejected(
        &[&"score", &fifo, &"-o", &out],
        &out,
        "stream.mp4",
        &["a pipe"],
    );
}

/// `score` checks a template's audio when the piece first plays it (`Library::open`): a
/// library whose loops are all corrupt is one line naming the file it tried and what to
/// do, a non-zero exit and nothing written.
#[test]
fn a_corrupt_template_library_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (src, lib) = (common::root().join("templates"), data.join("templates"));
    fs::create_dir_all(lib.join("audio")).unwrap();
    std::os::unix::fs::symlink(common::root().join("models"), data.join("models")).unwrap();
    for f in ["index.json", "melody.sf2", "midi"] {
        std::os::unix::fs::symlink(src.join(f), lib.join(f)).unwrap();
    }
    for e in fs::read_dir(src.join("audio")).unwrap() {
        let e = e.unwrap();
        let mut bytes = fs::read(e.path()).unwrap();
        let n = bytes.len();
        bytes[n / 2..n / 2 + 64].fill(0x55);
        fs::write(lib.join("audio").join(e.file_name()), bytes).unwrap();
    }
    let out = dir.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_undertone"))
        .arg("--data")
        .arg(&data)
        .args(["score", "--quiet", "-o"])
        .arg(&out)
        .arg(clip("bikes.mp4"))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains(".ogg")
            && err.contains("checksum")
            && err.contains("tools/templates/build.sh"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(entries(&out).is_empty(), "left behind: {:?}", entries(&out));
}

/// Names with a colon, as a take or a GNOME screencast ("Screencast from … 10:11:12.webm")
/// has them, given relative to the current folder: ffmpeg took `take:2.mp4` for the
/// protocol `take` (refused as "truncated or corrupt"), and an output folder `out:1` failed
/// at the mux ("Protocol not found").
#[test]
fn names_with_a_colon_are_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(clip("bikes.mp4"), dir.path().join("take:2.mp4")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_undertone"))
        .current_dir(dir.path())
        .arg("--data")
        .arg(common::root())
        .args(["score", "take:2.mp4", "-o", "out:1", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("out:1");
    assert_eq!(entries(&out), OUTPUTS, "{}", stderr(&o));
}

#[test]
fn unwritable_output_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    fs::write(&blocker, b"x").unwrap();
    let out = blocker.join("out");
    let o = undertone(&[&"score", &clip("bikes.mp4"), &"-o", &out]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("a-file/out") && err.contains("cannot write output folder"),
        "{err}"
    );
    assert_eq!(fs::read(&blocker).unwrap(), b"x");
}

/// An output folder on a full disk: a 1.5 MB tmpfs, mounted in a mount namespace of the
/// test's own (`unshare`; as root, or as a user where the kernel allows user namespaces).
/// `score` says the disk is full and what to do, and leaves nothing there (ffmpeg alone said
/// "Error initializing output stream 0:1 --"). Where no namespace can be made, the test says
/// so and checks nothing (the message itself is checked in score::tests).
#[test]
fn a_full_disk_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    fs::create_dir(&small).unwrap();
    let script = r#"mount -t tmpfs -o size=1500k tmpfs "$1" 2>/dev/null || exit 77
"$2" --data "$3" score "$4" -o "$1/out" --quiet
echo "rc=$?"
ls -A "$1""#;
    let o = Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", script, "sh"])
        .arg(&small)
        .arg(env!("CARGO_BIN_EXE_undertone"))
        .arg(common::root())
        .arg(clip("bikes.mp4"))
        .output()
        .expect("run unshare");
    if o.status.code() != Some(0) {
        eprintln!(
            "a_full_disk_is_named: no mount namespace here (unshare: {}); not checked",
            stderr(&o).trim()
        );
        return;
    }
    let out = String::from_utf8_lossy(&o.stdout);
    let err = stderr(&o);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("rc=1"), "{out}{err}");
    assert_eq!(
        lines.next(),
        None,
        "nothing may be left on the full disk: {out}"
    );
    assert!(
        err.contains("small/out: its disk is full")
            && err.contains("free some space there or choose another folder with -o"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// A folder another `score` or `refine` is writing into (its lock held, here by the test) is
/// refused at once: the two runs' outputs would be renamed into it in turn, a mix of both.
/// Nothing is written and the folder's outputs stay as they were; once the lock is given
/// back, the folder is refined as usual.
#[test]
fn a_folder_being_written_is_refused() {
    use std::os::unix::io::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("busy");
    let o = undertone(&[&"score", &clip("bikes.mp4"), &"-o", &out, &"--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before: Vec<Vec<u8>> = OUTPUTS
        .iter()
        .map(|f| fs::read(out.join(f)).unwrap())
        .collect();
    let held = fs::File::open(&out).unwrap();
    // SAFETY: flock on a descriptor the test owns.
    let rc = unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0);
    let score: [&dyn AsRef<std::ffi::OsStr>; 4] = [&"score", &clip("bikes.mp4"), &"-o", &out];
    let refine: [&dyn AsRef<std::ffi::OsStr>; 4] = [&"refine", &out, &"--option", &"calmer"];
    for args in [&score[..], &refine[..]] {
        let o = undertone(args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{err}");
        assert!(
            err.contains("busy") && err.contains("another undertone is writing there"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert_eq!(entries(&out), OUTPUTS, "nothing else is written");
        for (f, b) in OUTPUTS.iter().zip(&before) {
            assert!(fs::read(out.join(f)).unwrap() == *b, "{f} changed");
        }
    }
    drop(held);
    let o = undertone(&refine);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn unknown_option_values_list_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let video = clip("bikes.mp4");
    let o = undertone(&[&"score", &video, &"-o", &out, &"--genre", &"disco"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("disco") && stderr(&o).contains("lofi"),
        "{}",
        stderr(&o)
    );
    let o = undertone(&[&"score", &video, &"-o", &out, &"--energy", &"7"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("0.0 to 1.0"), "{}", stderr(&o));
    let o = undertone(&[&"score", &video, &"-o", &out, &"--tempo", &"fast"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("BPM"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn warp_retimes_the_video_within_eight_percent() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = undertone(&[
        &"score",
        &clip("bikes.mp4"),
        &"-o",
        &out,
        &"--warp",
        &"--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&out);
    assert_eq!(r["output"]["warped"], true);
    let warps = r["warps"].as_array().unwrap();
    assert!(!warps.is_empty());
    for w in warps {
        let rate = w["rate"].as_f64().unwrap();
        assert!((rate - 1.0).abs() <= 0.08, "{w}");
    }
    // Every cut whose stretch was warped sits on a downbeat of the music (within 50 ms); a
    // stretch left at rate 1 is one no beat was reachable from within the limit.
    let downbeats: Vec<f64> = r["downbeats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let mut on_beat = 0;
    for c in r["cuts"].as_array().unwrap() {
        let t = c["t"].as_f64().unwrap();
        let Some(w) = warps
            .iter()
            .find(|w| (w["output_end"].as_f64().unwrap() - t).abs() < 1e-6)
        else {
            continue;
        };
        if w["rate"].as_f64().unwrap() == 1.0 {
            continue;
        }
        let d = downbeats
            .iter()
            .map(|b| (b - t).abs())
            .fold(f64::MAX, f64::min);
        assert!(d <= 0.05, "cut at {t} is {d} s from a downbeat");
        on_beat += 1;
    }
    assert!(on_beat > 0, "no cut was warped onto a downbeat");
    // The warped video is as long as the music.
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(out.join("scored.mp4"))
        .output()
        .unwrap();
    let vdur: f64 = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .unwrap();
    let adur = r["output"]["duration"].as_f64().unwrap();
    assert!(
        (vdur - adur).abs() < 0.1,
        "video {vdur} s vs music {adur} s"
    );
}

//! Extraction on real footage: cuts on a montage with known cut times, no cuts on fast
//! continuous motion, saliency on inputs that isolate it, and bad inputs.
//!
//! Inputs are built here with ffmpeg from the real clips of `testdata/clips/` (run
//! `tools/clips/fetch.sh` first). Comparisons with OpenCV and PySceneDetect live in
//! `tools/eval/extract_eval.py` (third-party tools, Python), throughput in `tools/bench/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use undertone::extract::{self, Analysis, ExtractError, Extractor, TransitionKind};
use undertone::source::{AnalysisSize, Decoders, FileSource, Frame, Source, SourceError};

fn model() -> PathBuf {
    extract::default_model_path(&common::root())
}

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-nostdin"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn analyze(path: &Path) -> Analysis {
    extract::analyze_file(path, &model(), &mut |_| {})
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cut_frames(a: &Analysis) -> Vec<i64> {
    a.transitions
        .iter()
        .filter(|t| t.kind == TransitionKind::Cut)
        .map(|t| (t.t * a.fps).round() as i64)
        .collect()
}

/// F1 of `found` against `truth` with a tolerance of ±`tol` frames (one-to-one matching).
fn f1(found: &[i64], truth: &[i64], tol: i64) -> f64 {
    let mut left: Vec<i64> = truth.to_vec();
    let mut hit = 0;
    for &c in found {
        if let Some(k) = left.iter().position(|&t| (t - c).abs() <= tol) {
            left.remove(k);
            hit += 1;
        }
    }
    let p = if found.is_empty() {
        1.0
    } else {
        hit as f64 / found.len() as f64
    };
    let r = if truth.is_empty() {
        1.0
    } else {
        hit as f64 / truth.len() as f64
    };
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// Montage segments: (clip, start s). Each runs SEG_S seconds; neighbours come from different
/// clips or distant shots, and no segment contains a transition of its own (the trailer's cuts
/// are at 24.7, 36.0, 37.5, 41.2 and 43.7 s, its fades at 9.5, 13.5, 31.5, 46.6 and 48 s; bikes'
/// cuts at 1.2, 3.0, 5.5 and 7.5 s).
const SEGMENTS: [(&str, f64); 12] = [
    ("bigbuckbunny.mp4", 0.0),
    ("carphone_pristine.mp4", 0.0),
    ("trailer_bbb.mp4", 25.5),
    ("bikes.mp4", 1.3),
    ("bigbuckbunny.mp4", 3.2),
    ("trailer_bbb.mp4", 38.0),
    ("carphone_pristine.mp4", 2.2),
    ("bikes.mp4", 3.3),
    ("trailer_bbb.mp4", 44.5),
    ("bigbuckbunny.mp4", 1.6),
    ("bikes.mp4", 8.0),
    ("trailer_bbb.mp4", 28.0),
];
const SEG_S: f64 = 1.6;
const MONTAGE_FPS: f64 = 25.0;
/// The dissolve appended after the hard-cut part: its start and length (seconds).
const DISSOLVE_S: f64 = 1.0;

/// Builds the montage: 12 real segments joined by hard cuts, then a 1 s dissolve into one
/// more segment. Returns the file, the cut frame indices and the dissolve's start/end (s).
fn build_montage(dir: &Path) -> (PathBuf, Vec<i64>, (f64, f64)) {
    let out = dir.join("montage.mp4");
    let mut args: Vec<String> = Vec::new();
    let mut filter = String::new();
    let all: Vec<(&str, f64, f64)> = SEGMENTS
        .iter()
        .map(|&(c, s)| (c, s, SEG_S))
        .chain(std::iter::once(("carphone_pristine.mp4", 0.5, 3.0)))
        .collect();
    for (i, (clip, start, len)) in all.iter().enumerate() {
        args.extend([
            "-ss".into(),
            format!("{start}"),
            "-t".into(),
            format!("{len}"),
            "-i".into(),
        ]);
        args.push(common::clip(clip).to_string_lossy().into_owned());
        filter += &format!(
            "[{i}:v]fps={MONTAGE_FPS},scale=320:180:flags=area,setsar=1,format=yuv420p,trim=duration={len},setpts=PTS-STARTPTS[v{i}];"
        );
    }
    let n = SEGMENTS.len();
    for i in 0..n {
        filter += &format!("[v{i}]");
    }
    let hard_len = n as f64 * SEG_S;
    let offset = hard_len - DISSOLVE_S;
    filter += &format!(
        "concat=n={n}:v=1:a=0,settb=AVTB[hard];[v{n}]settb=AVTB[last];[hard][last]xfade=transition=fade:duration={DISSOLVE_S}:offset={offset}[out]"
    );
    args.extend([
        "-filter_complex".into(),
        filter,
        "-map".into(),
        "[out]".into(),
    ]);
    args.extend(
        [
            "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-an",
        ]
        .map(String::from),
    );
    args.push(out.to_string_lossy().into_owned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ffmpeg(&refs);
    let per = (SEG_S * MONTAGE_FPS).round() as i64;
    let cuts = (1..n as i64).map(|k| k * per).collect();
    (out, cuts, (offset, offset + DISSOLVE_S))
}

#[test]
fn montage_cuts_f1_and_dissolve() {
    let dir = tempfile::tempdir().unwrap();
    let (path, truth, (d0, d1)) = build_montage(dir.path());
    let a = analyze(&path);
    let found = cut_frames(&a);
    let score = f1(&found, &truth, 2);
    println!("montage: cuts at {truth:?}, found {found:?}, F1 {score:.3}");
    assert!(
        score >= 0.95,
        "cut F1 {score:.3} < 0.95: truth {truth:?}, found {found:?}"
    );
    // The dissolve is reported as a gradual transition overlapping it, and not as a cut.
    let grad: Vec<_> = a
        .transitions
        .iter()
        .filter(|t| t.kind == TransitionKind::Gradual)
        .collect();
    println!("dissolve {d0:.2}-{d1:.2} s; gradual transitions {grad:?}");
    assert!(
        grad.iter().any(|g| g.t < d1 && g.end > d0),
        "dissolve {d0}-{d1} s not found: {grad:?}"
    );
    assert!(
        !found
            .iter()
            .any(|&c| (c as f64 / a.fps) > d0 - 0.1 && (c as f64 / a.fps) < d1 + 0.1),
        "dissolve taken for a cut"
    );
    // Every feature carries its frame's timestamp, in order, one per frame.
    assert!(a.frames.windows(2).all(|w| w[1].t > w[0].t));
    assert!(a
        .frames
        .iter()
        .all(|f| (0.0..=1.0).contains(&f.saliency) && (0.0..=1.0).contains(&f.transition)));
}

#[test]
fn fast_continuous_motion_is_not_a_cut() {
    let dir = tempfile::tempdir().unwrap();
    // A handheld-style whip pan: a 320x180 window racing across a real 1280x720 frame with shake.
    let pan = dir.path().join("whip.mp4");
    ffmpeg(&[
        "-ss",
        "26",
        "-i",
        common::clip("trailer_bbb.mp4").to_str().unwrap(),
        "-frames:v",
        "1",
        "-f",
        "image2",
        dir.path().join("still.png").to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-loop",
        "1",
        "-framerate",
        "25",
        "-t",
        "3",
        "-i",
        dir.path().join("still.png").to_str().unwrap(),
        "-vf",
        "crop=480:270:x='380+370*sin(t*2.2)+15*sin(t*23)':y='200+25*sin(t*17)',scale=320:180,format=yuv420p",
        "-c:v",
        "libx264",
        "-crf",
        "18",
        pan.to_str().unwrap(),
    ]);
    // Real fast motion: the bikes clip's racing shot between its cuts at 1.2 and 3.0 s (riders
    // sweeping through the frame at up to 5 px/frame at the analysis size).
    let bikes = dir.path().join("bikes.mp4");
    ffmpeg(&[
        "-ss",
        "1.3",
        "-i",
        common::clip("bikes.mp4").to_str().unwrap(),
        "-t",
        "1.6",
        "-c:v",
        "libx264",
        "-crf",
        "18",
        bikes.to_str().unwrap(),
    ]);
    for p in [&pan, &bikes] {
        let a = analyze(p);
        let mean_speed = a.frames.iter().map(|f| f.speed).sum::<f32>() / a.frames.len() as f32;
        println!(
            "{}: mean speed {mean_speed:.3} diag/s, cuts {:?}",
            p.display(),
            cut_frames(&a)
        );
        assert!(
            cut_frames(&a).is_empty(),
            "{}: fast motion reported as cuts {:?}",
            p.display(),
            cut_frames(&a)
        );
        assert!(
            mean_speed > 0.1,
            "{}: the test input should move fast ({mean_speed})",
            p.display()
        );
    }
}

fn mean_saliency(a: &Analysis) -> f32 {
    let f = &a.frames[2..];
    f.iter().map(|f| f.saliency).sum::<f32>() / f.len() as f32
}

#[test]
fn lone_mover_is_more_salient_than_pan_or_zoom() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    // Real pictures, synthetic camera: a still frame of the trailer as the scene, a real patch
    // (a crop of the bikes clip) as the lone mover. Only the motion differs between inputs.
    ffmpeg(&[
        "-ss",
        "39",
        "-i",
        common::clip("trailer_bbb.mp4").to_str().unwrap(),
        "-frames:v",
        "1",
        &d("bg.png"),
    ]);
    ffmpeg(&[
        "-ss",
        "2",
        "-i",
        common::clip("bikes.mp4").to_str().unwrap(),
        "-frames:v",
        "1",
        "-vf",
        "crop=120:120:260:80",
        &d("patch.png"),
    ]);
    let (bg, patch) = (d("bg.png"), d("patch.png"));
    let (lone, pan, zoom) = (d("lone.mp4"), d("pan.mp4"), d("zoom.mp4"));
    let enc = [
        "-t", "3", "-r", "25", "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p",
    ];
    let still = ["-loop", "1", "-framerate", "25", "-i", bg.as_str()];
    // Static camera, one mover crossing the scene.
    let mover =
        "[0:v]scale=640:360[bg];[bg][1:v]overlay=x='40+t*150':y='120+30*sin(t*4)':shortest=1";
    let patch_in = ["-loop", "1", "-framerate", "25", "-i", patch.as_str()];
    ffmpeg(
        &[
            &still[..],
            &patch_in[..],
            &["-filter_complex", mover],
            &enc[..],
            &[lone.as_str()],
        ]
        .concat(),
    );
    // The same scene, the camera panning at the mover's speed.
    let pan_f = "crop=640:360:x='100+t*150':y='150+10*sin(t*2)',scale=640:360";
    ffmpeg(&[&still[..], &["-vf", pan_f], &enc[..], &[pan.as_str()]].concat());
    // The same scene, the camera zooming in.
    let zoom_f =
        "zoompan=z='1+0.01*on':d=1:x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':s=640x360:fps=25";
    ffmpeg(&[&still[..], &["-vf", zoom_f], &enc[..], &[zoom.as_str()]].concat());
    let (sl, sp, sz) = (
        mean_saliency(&analyze(Path::new(&lone))),
        mean_saliency(&analyze(Path::new(&pan))),
        mean_saliency(&analyze(Path::new(&zoom))),
    );
    println!("mean saliency: lone mover {sl:.3}, pan {sp:.3}, zoom {sz:.3}");
    assert!(sl > 0.4, "lone mover saliency {sl}");
    assert!(
        sl > 2.0 * sp && sl > 2.0 * sz,
        "lone {sl} vs pan {sp} / zoom {sz}"
    );
}

#[test]
fn repeated_frames_are_neither_stops_nor_cuts() {
    // The montage (25 frames/s) made 60 frames/s by repeating frames, as a frame-rate
    // conversion does, and kept exactly (a screen recorder's lossless H.264): analysed at 30
    // frames/s, every sixth frame repeats the one before.
    let dir = tempfile::tempdir().unwrap();
    let (path, truth, (d0, d1)) = build_montage(dir.path());
    let sixty = dir.path().join("montage60.mp4");
    ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-vf",
        "fps=60",
        "-c:v",
        "libx264",
        "-qp",
        "0",
        "-preset",
        "ultrafast",
        sixty.to_str().unwrap(),
    ]);
    let (a, b) = (analyze(&path), analyze(&sixty));
    assert_eq!(b.fps, 30.0);
    // The same cuts, at the new rate.
    let truth_b: Vec<i64> = truth
        .iter()
        .map(|&k| (k as f64 / MONTAGE_FPS * b.fps).round() as i64)
        .collect();
    let found = cut_frames(&b);
    let score = f1(&found, &truth_b, 2);
    assert!(
        score >= 0.95,
        "cut F1 {score:.3}: truth {truth_b:?}, found {found:?}"
    );
    // A repeat is no stop: the share of frames that did not move is the original's.
    let still = |x: &Analysis| {
        x.frames[1..].iter().filter(|f| f.speed == 0.0).count() as f64 / x.frames.len() as f64
    };
    println!(
        "frames with no motion: 25 fps {:.3}, 60 fps {:.3}",
        still(&a),
        still(&b)
    );
    assert!(
        still(&b) <= still(&a) + 0.02,
        "{} vs {}",
        still(&b),
        still(&a)
    );
    // And the speed is the content's.
    let mean = |x: &Analysis| {
        x.frames.iter().map(|f| f.motion_speed()).sum::<f32>() / x.frames.len() as f32
    };
    let (ma, mb) = (mean(&a), mean(&b));
    println!("mean speed 25 fps {ma:.4}, 60 fps {mb:.4} diag/s");
    assert!((ma - mb).abs() / ma < 0.15, "{ma} vs {mb}");
    assert!(
        b.transitions
            .iter()
            .any(|t| t.kind == TransitionKind::Gradual && t.t < d1 && t.end > d0),
        "dissolve {d0}-{d1} s not found: {:?}",
        b.transitions
    );
    assert!(b.frames.windows(2).all(|w| w[1].t > w[0].t));
}

#[test]
fn speed_is_resolution_and_rate_independent() {
    // The same real footage at two sizes and two rates gives the same speed in diagonals/s.
    let dir = tempfile::tempdir().unwrap();
    let src = common::clip("bikes.mp4");
    let a_path = dir.path().join("a.mp4");
    let b_path = dir.path().join("b.mp4");
    ffmpeg(&[
        "-i",
        src.to_str().unwrap(),
        "-t",
        "6",
        "-vf",
        "scale=640:272",
        "-r",
        "25",
        "-c:v",
        "libx264",
        "-crf",
        "16",
        a_path.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        src.to_str().unwrap(),
        "-t",
        "6",
        "-vf",
        "scale=320:136",
        "-r",
        "12.5",
        "-c:v",
        "libx264",
        "-crf",
        "16",
        b_path.to_str().unwrap(),
    ]);
    let mean = |a: &Analysis| a.frames.iter().map(|f| f.speed).sum::<f32>() / a.frames.len() as f32;
    let (ma, mb) = (mean(&analyze(&a_path)), mean(&analyze(&b_path)));
    println!("mean speed 640x272@25: {ma:.4}, 320x136@12.5: {mb:.4} diag/s");
    // Measured: 0.285 vs 0.215 (halving the rate doubles the motion per frame, where block
    // Lucas-Kanade starts to underestimate); resolution alone changes nothing (same analysis size).
    assert!((ma - mb).abs() / ma < 0.3, "{ma} vs {mb}");
}

// ---------- bad input ----------

fn open_err(p: &Path) -> SourceError {
    match FileSource::open(p, AnalysisSize::default()) {
        Err(e) => e,
        Ok(mut s) => loop {
            match s.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("{}: expected an error, got a clean end", p.display()),
                Err(e) => break e,
            }
        },
    }
}

#[test]
fn bad_files_give_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let missing = d("missing.mp4");
    let e = open_err(&missing);
    assert!(matches!(e, SourceError::NotFound { .. }), "{e}");
    std::fs::write(d("empty.mp4"), b"").unwrap();
    let e = open_err(&d("empty.mp4"));
    assert!(matches!(e, SourceError::Empty { .. }), "{e}");
    // A named pipe (as `<(curl …)` gives) is refused at once instead of leaving the decoder
    // waiting for ever (the file is read more than once); a folder is named as one.
    let fifo = d("stream.mp4");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let e = open_err(&fifo);
    assert!(
        matches!(e, SourceError::NotAFile { .. }) && e.to_string().contains("save it to a file"),
        "{e}"
    );
    std::fs::create_dir(d("clips.mp4")).unwrap();
    let e = open_err(&d("clips.mp4"));
    assert!(
        matches!(e, SourceError::NotAFile { .. }) && e.to_string().contains("a folder"),
        "{e}"
    );
    std::fs::write(
        d("notes.mp4"),
        b"these are not the frames you are looking for\n".repeat(50),
    )
    .unwrap();
    let e = open_err(&d("notes.mp4"));
    assert!(matches!(e, SourceError::NotAVideo { .. }), "{e}");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=1",
        d("tone.wav").to_str().unwrap(),
    ]);
    let e = open_err(&d("tone.wav"));
    assert!(matches!(e, SourceError::NoVideoStream { .. }), "{e}");
    // The real trailer cut in half: its index (moov) sits at the end, so nothing is readable.
    let bytes = std::fs::read(common::clip("trailer_bbb.mp4")).unwrap();
    std::fs::write(d("half.mp4"), &bytes[..bytes.len() / 2]).unwrap();
    let e = open_err(&d("half.mp4"));
    assert!(matches!(e, SourceError::Corrupt { .. }), "{e}");
    for (name, e) in [
        ("missing", open_err(&missing)),
        ("half", open_err(&d("half.mp4"))),
    ] {
        let msg = e.to_string();
        assert!(!msg.contains('\n') && msg.contains(".mp4"), "{name}: {msg}");
    }
    // Through the extraction API the same errors pass unchanged.
    let e = extract::analyze_file(&d("tone.wav"), &model(), &mut |_| {}).unwrap_err();
    assert!(
        matches!(e, ExtractError::Source(SourceError::NoVideoStream { .. })),
        "{e}"
    );
    // A missing model is named (the video opens first, so a readable one is given).
    let e = extract::analyze_file(&common::clip("bikes.mp4"), &d("nomodel.onnx"), &mut |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("nomodel.onnx"), "{e}");
}

/// A file whose audio runs 2 s past its video: the analysis (and so the music) ends with the
/// video. Matroska states only the longest stream's length unless its statistics tags give
/// each stream's (ffmpeg's muxer writes them); FLV states only the file's. Before, both
/// analyses were 8 s long and scored.mp4 had 2 s of music over no picture.
#[test]
fn a_longer_audio_track_does_not_lengthen_the_analysis() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["long_audio.mkv", "long_audio.flv"] {
        let f = dir.path().join(name);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=24:d=6",
            "-f",
            "lavfi",
            "-i",
            "sine=d=8",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            f.to_str().unwrap(),
        ]);
        let a = analyze(&f);
        println!("{name}: analysis {:.3} s", a.duration);
        assert!(
            (a.duration - 6.0).abs() <= 1.0 / 24.0,
            "{name}: the analysis is {} s long, the video 6 s",
            a.duration
        );
    }
}

/// A download cut off part-way: an MP4 whose index comes first (`+faststart`, as streamed
/// files are) states 10 s, but its picture stops where the bytes do. It is refused naming
/// the file, where it ends and what it states (before, it was scored with 10 s of music over
/// 4 s of video).
#[test]
fn a_cut_off_download_is_refused_with_where_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let cut = common::cut_off_download(dir.path());
    let e = extract::analyze_file(&cut, &model(), &mut |_| {}).unwrap_err();
    let msg = e.to_string();
    println!("{msg}");
    assert!(
        matches!(e, ExtractError::Source(SourceError::EndsEarly { .. })),
        "{msg}"
    );
    assert!(
        msg.contains("part.mp4") && msg.contains("cut off") && !msg.contains('\n'),
        "{msg}"
    );
}

#[test]
fn truncated_and_vanishing_streams_end_cleanly_or_say_so() {
    let dir = tempfile::tempdir().unwrap();
    // An MPEG-TS stream (what a capture pipe carries) cut at 60 % of its bytes.
    let ts = dir.path().join("bikes.ts");
    ffmpeg(&[
        "-i",
        common::clip("bikes.mp4").to_str().unwrap(),
        "-c:v",
        "libx264",
        "-crf",
        "23",
        "-f",
        "mpegts",
        ts.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&ts).unwrap();
    let cut = dir.path().join("cut.ts");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let mut s = FileSource::open(&cut, AnalysisSize::default()).unwrap();
    let mut n = 0;
    let end = loop {
        match s.next_frame() {
            Ok(Some(_)) => n += 1,
            other => break other,
        }
    };
    println!("truncated TS: {n} frames, then {end:?}");
    assert!(
        n > 100 && n < 200,
        "{n} frames of a 250-frame clip cut at 60 %"
    );
    match end {
        Ok(None) => {}
        Err(e @ SourceError::Truncated { .. }) => assert!(e.to_string().contains("cut.ts")),
        Err(e) => panic!("unexpected error {e}"),
        Ok(Some(_)) => unreachable!(),
    }

    // A source that vanishes mid-stream: the decoder process dies (killed like an OOM kill).
    // The frames already decoded are delivered, then one clear error; nothing hangs. (An MP4
    // is decoded in this process where it can be; here ffmpeg decodes it, as it decodes
    // every other input.)
    let mut s = FileSource::open_with(
        &common::clip("trailer_bbb.mp4"),
        AnalysisSize::default(),
        Decoders::Ffmpeg,
    )
    .unwrap();
    for _ in 0..10 {
        s.next_frame().unwrap().unwrap();
    }
    let ok = Command::new("kill")
        .arg("-9")
        .arg(s.decoder_pid().expect("an ffmpeg process").to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill failed");
    let mut n = 10;
    let err = loop {
        match s.next_frame() {
            Ok(Some(_)) => n += 1,
            Ok(None) => panic!("a killed decoder must not look like a clean end"),
            Err(e) => break e,
        }
    };
    println!("decoder killed after {n} frames: {err}");
    assert!(
        n < 1323,
        "all frames arrived although the decoder was killed"
    );
    assert!(
        matches!(err, SourceError::Truncated { .. }) && err.to_string().contains("trailer_bbb.mp4"),
        "{err}"
    );
    assert!(
        matches!(s.next_frame(), Ok(None)),
        "after the error the source stays ended"
    );
}

/// Every frame of `s`, with their times, and the decoder that gave the last of them.
fn all_frames(s: &mut FileSource) -> (Vec<u8>, Vec<f64>, u64) {
    let mut gray = Vec::new();
    let mut pts = Vec::new();
    while let Some(f) = s.next_frame().unwrap() {
        pts.push(f.pts);
        gray.extend_from_slice(&f.gray);
    }
    (gray, pts, s.decoder_id())
}

/// What one ffmpeg from the start gives with the file source's settings for a 1280x720
/// input at `fps`: 160x90 at that rate, no deblocking at this 8x downscale.
/// One ffmpeg's frames at the analysis width (160) and `height`.
fn one_decoder(path: &Path, fps: f64, height: u32) -> Vec<u8> {
    let one = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-threads",
            "1",
            "-skip_loop_filter",
            "all",
            "-i",
        ])
        .arg(path)
        .args([
            "-map",
            "0:v:0",
            "-vf",
            &format!("fps={fps},scale=160:{height}:flags=area,format=gray"),
        ])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .unwrap();
    assert!(one.status.success());
    one.stdout
}

/// Reads every frame of `s` (a file split between two decoders) and checks them against one
/// ffmpeg from the start at `fps`: the same bytes, the second decoder giving the last
/// frames, and regular times.
/// The analysis height of a 16:9 clip (160 wide).
const ANALYSIS_HEIGHT_16_9: u32 = 90;

fn assert_split_gives_one_decoders_frames(s: &mut FileSource, path: &Path, fps: f64, why: &str) {
    let first = s.decoder_id();
    let (ours, pts, last) = all_frames(s);
    let one = one_decoder(path, fps, ANALYSIS_HEIGHT_16_9);
    assert_eq!(ours.len(), one.len(), "frame count differs");
    assert!(ours == one, "frames differ from one decoder's");
    assert_ne!(last, first, "{why}");
    assert!(pts
        .windows(2)
        .all(|w| (w[1] - w[0] - 1.0 / fps).abs() < 1e-9));
}

#[test]
fn a_file_decoded_in_two_halves_gives_one_decoders_frames() {
    // The trailer (55 s, constant rate, MP4) is decoded by two ffmpeg processes, the second
    // from a seek to a key frame 60 % in (32.0 s, frame 769): the frames must be exactly
    // those of one ffmpeg from the start.
    let path = common::clip("trailer_bbb.mp4");
    let mut s = FileSource::open(&path, AnalysisSize::default()).unwrap();
    assert_eq!(
        s.split_at(),
        Some(769),
        "the trailer is split at the key frame nearest 60 % of it"
    );
    assert_split_gives_one_decoders_frames(
        &mut s,
        &path,
        24.0,
        "the second decoder gave the last frames",
    );
}

#[test]
fn bikes_is_decoded_in_two_halves_with_one_decoders_frames() {
    // bikes (640x272, 10 s, 25 frames/s, six key frames) is above SPLIT_MIN_PIXELS: its
    // second decoder starts on a key frame and the frames are exactly one decoder's.
    let path = common::clip("bikes.mp4");
    let mut s = FileSource::open(&path, AnalysisSize::default()).unwrap();
    assert!(s.split_at().is_some(), "bikes is split");
    let first = s.decoder_id();
    let (ours, _, last) = all_frames(&mut s);
    assert!(
        ours == one_decoder(&path, 25.0, 68),
        "frames differ from one decoder's"
    );
    assert_ne!(last, first, "the second decoder gave the last frames");
}

#[test]
fn a_file_above_the_analysis_rate_is_decoded_in_two_halves() {
    // 10 s of the trailer at 60 frames/s, 1280x720, a key frame every 2 s: analysed at 30,
    // so every other frame. The second decoder starts on a key frame (input frame 360, 6 s
    // in, analysis frame 180) and its frames are exactly those of one ffmpeg from the start.
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("p60.mp4");
    let trailer = common::clip("trailer_bbb.mp4");
    ffmpeg(&[
        "-ss",
        "30",
        "-i",
        trailer.to_str().unwrap(),
        "-t",
        "10",
        "-vf",
        "fps=60",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "120",
        "-sc_threshold",
        "0",
        "-an",
        clip.to_str().unwrap(),
    ]);
    let mut s = FileSource::open(&clip, AnalysisSize::default()).unwrap();
    assert_eq!(s.info().fps, 30.0);
    assert_eq!(
        s.split_at(),
        Some(180),
        "split on the key frame nearest 60 % in"
    );
    assert_split_gives_one_decoders_frames(
        &mut s,
        &clip,
        30.0,
        "the second decoder gave the last frames",
    );
}

#[test]
fn a_video_that_starts_late_is_still_decoded_in_two_halves() {
    // Two 12 s cuts of the trailer joined with ffmpeg's concat demuxer (as recordings are
    // joined): the video stream starts at 0.025 s, so its frames sit 0.6 of a frame past
    // the 24 fps grid. After its seek to frame k the second decoder's first frame is a copy
    // of frame k + 1; the two agree from k + 1 on, and the second decoder takes over there.
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.mp4");
    let list = dir.path().join("list.txt");
    let joined = dir.path().join("joined.mp4");
    let trailer = common::clip("trailer_bbb.mp4");
    ffmpeg(&[
        "-i",
        trailer.to_str().unwrap(),
        "-t",
        "12",
        "-c",
        "copy",
        cut.to_str().unwrap(),
    ]);
    std::fs::write(&list, format!("file '{0}'\nfile '{0}'\n", cut.display())).unwrap();
    ffmpeg(&[
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        list.to_str().unwrap(),
        "-c",
        "copy",
        joined.to_str().unwrap(),
    ]);
    let mut s = FileSource::open(&joined, AnalysisSize::default()).unwrap();
    assert!(s.split_at().is_some(), "a 24 s 720p file is split");
    // the joined file's rate, as ffprobe reads it from its length: 23.9996 frames/s
    let fps = s.info().fps;
    assert_split_gives_one_decoders_frames(
        &mut s,
        &joined,
        fps,
        "the second decoder took over after its first frame",
    );
}

#[test]
fn a_webm_stamped_in_whole_milliseconds_is_still_decoded_in_two_halves() {
    // A 15 frames/s WebM whose frames are stamped in whole milliseconds, rounded down (as a
    // GNOME screencast in Debian's gnome-user-docs is: frame 334 at 22.266 s): frame n sits
    // up to 0.67 ms before its slot n/15. 12.45 s of the trailer so split, at frame 112 (at
    // 7.4667 s, stamped 7.466): the seek drops that frame, and the second decoder's grid
    // must still start at the seek, not one slot later (before, every one of its frames was
    // one early, the check refused it, and one decoder went on from the start).
    let dir = tempfile::tempdir().unwrap();
    let vp8 = dir.path().join("vp8.mkv");
    let clip = dir.path().join("screencast.webm");
    let trailer = common::clip("trailer_bbb.mp4");
    ffmpeg(&[
        "-ss",
        "20",
        "-t",
        "12.45",
        "-i",
        trailer.to_str().unwrap(),
        "-vf",
        "fps=15",
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-b:v",
        "1M",
        "-an",
        vp8.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        vp8.to_str().unwrap(),
        "-c",
        "copy",
        "-bsf:v",
        "setts=ts=floor(N*1000/15)",
        clip.to_str().unwrap(),
    ]);
    let mut s = FileSource::open(&clip, AnalysisSize::default()).unwrap();
    assert_eq!(s.info().fps, 15.0);
    assert_eq!(s.split_at(), Some(112), "split 60 % in, off the stamps");
    assert_split_gives_one_decoders_frames(
        &mut s,
        &clip,
        15.0,
        "the second decoder took over after its seek",
    );
}

#[test]
fn odd_frame_sizes() {
    let mut x = Extractor::load(&model()).unwrap();
    let frame = |w: u32, h: u32, pts: f64, seed: u32| Frame {
        pts,
        width: w,
        height: h,
        gray: (0..w * h)
            .map(|i| ((i.wrapping_mul(2654435761).wrapping_add(seed)) >> 24) as u8)
            .collect(),
    };
    let e = x.push(&frame(1, 1, 0.0, 0)).unwrap_err();
    assert!(
        matches!(e, ExtractError::FrameTooSmall { .. }) && e.to_string().contains("1x1"),
        "{e}"
    );
    let bad = Frame {
        pts: 0.0,
        width: 100,
        height: 100,
        gray: vec![0; 10],
    };
    assert!(matches!(
        x.push(&bad).unwrap_err(),
        ExtractError::BadFrame { .. }
    ));
    // Odd widths and heights, and a frame far bigger than the analysis size, all run.
    for (w, h) in [(161, 91), (33, 47), (4097, 2161)] {
        let mut x = Extractor::load(&model()).unwrap();
        let mut out = Vec::new();
        for k in 0..8 {
            out.extend(x.push(&frame(w, h, k as f64 / 30.0, k)).unwrap());
        }
        out.extend(x.finish());
        assert_eq!(out.len(), 8, "{w}x{h}");
        assert!(
            out.iter()
                .all(|f| f.speed.is_finite() && f.saliency.is_finite()),
            "{w}x{h}: {out:?}"
        );
    }
    // A 1x1 and an odd-width video file: the source scales them to the analysis size.
    let dir = tempfile::tempdir().unwrap();
    for (w, h) in [(1, 1), (161, 91)] {
        let p = dir.path().join(format!("v{w}x{h}.mkv"));
        // Frames of the bikes clip scaled to the odd size (ffmpeg's test sources refuse 1x1).
        let raw = dir.path().join("raw.y");
        let scale = format!("scale={w}:{h}:flags=area,format=gray");
        let bikes = common::clip("bikes.mp4");
        ffmpeg(&[
            "-i",
            bikes.to_str().unwrap(),
            "-frames:v",
            "25",
            "-vf",
            &scale,
            "-f",
            "rawvideo",
            raw.to_str().unwrap(),
        ]);
        let size = format!("{w}x{h}");
        let raw_in = [
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-s",
            &size,
            "-r",
            "25",
            "-i",
            raw.to_str().unwrap(),
        ];
        ffmpeg(&[&raw_in[..], &["-c:v", "ffv1", p.to_str().unwrap()]].concat());
        let a = analyze(&p);
        assert_eq!(a.frames.len(), 25, "{w}x{h}");
        assert_eq!((a.width, a.height), (w, h));
    }
}

/// A video the container asks to show turned (a phone held upright, its frames coded
/// landscape) is analysed as coded: the same features as the same frames without the
/// rotation, not a portrait picture squeezed into the landscape analysis size.
#[test]
fn a_rotated_video_is_analysed_as_coded() {
    let dir = tempfile::tempdir().unwrap();
    let clip = common::clip("bikes.mp4");
    let plain = dir.path().join("plain.mp4");
    let turned = dir.path().join("turned.mp4");
    ffmpeg(&[
        "-i",
        clip.to_str().unwrap(),
        "-t",
        "4",
        "-c",
        "copy",
        "-an",
        plain.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        plain.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        turned.to_str().unwrap(),
    ]);
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries"])
        .args(["stream_side_data=rotation", "-of", "csv=p=0"])
        .arg(&turned)
        .output()
        .unwrap();
    let rotation = String::from_utf8_lossy(&probe.stdout).trim().to_string();
    assert!(
        rotation == "90" || rotation == "-90",
        "the test file is not rotated ({rotation:?})"
    );
    let (a, b) = (analyze(&plain), analyze(&turned));
    assert_eq!((a.width, a.height), (b.width, b.height));
    assert_eq!(a.frames.len(), b.frames.len());
    for (x, y) in a.frames.iter().zip(&b.frames) {
        assert_eq!(
            (x.speed, x.saliency),
            (y.speed, y.saliency),
            "frame at {} s",
            x.t
        );
    }
}

/// Every frame and time of `path` as decoded by `decoders`, and whether an ffmpeg process
/// decoded its start.
fn frames_by(path: &Path, decoders: Decoders) -> (Vec<u8>, Vec<f64>, bool) {
    let mut s = FileSource::open_with(path, AnalysisSize::default(), decoders).unwrap();
    let by_ffmpeg = s.decoder_pid().is_some();
    let (gray, pts, _) = all_frames(&mut s);
    (gray, pts, by_ffmpeg)
}

#[test]
fn an_mp4_decoded_in_this_process_gives_ffmpegs_frames() {
    // H.264 and HEVC in plain MP4s are decoded by libavcodec in this process: the frames
    // and their times must be exactly those an ffmpeg process gives, whatever the picture's
    // size, bit depth and range, with and without deblocking, and in two halves.
    let dir = tempfile::tempdir().unwrap();
    let bikes = common::clip("bikes.mp4");
    let made = |name: &str, args: &[&str]| {
        let out = dir.path().join(name);
        let mut all = vec!["-i", bikes.to_str().unwrap(), "-t", "3", "-an"];
        all.extend_from_slice(args);
        all.push(out.to_str().unwrap());
        ffmpeg(&all);
        out
    };
    let clips = [
        common::clip("bikes.mp4"), // H.264 High, B-frames, deblocking skipped
        common::clip("carphone_pristine.mp4"), // 352x288: deblocked
        common::clip("bigbuckbunny.mp4"), // no bytes of a longer sample before it left over
        common::clip("trailer_bbb.mp4"), // 1280x720, 55 s: two decoders
        made(
            "hevc.mp4",
            &[
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "log-level=none",
            ],
        ),
        made(
            "full_range.mp4",
            &[
                "-vf",
                "format=yuvj420p",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
            ],
        ),
        made(
            "ten_bit.mp4",
            &[
                "-pix_fmt",
                "yuv420p10le",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
            ],
        ),
        made(
            "odd.mp4",
            &[
                "-vf",
                "crop=638:270",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
            ],
        ),
        // 29.97 frames/s on a millisecond clock: samples of 33 and 34 ms by turns
        made(
            "ms_clock.mp4",
            &[
                "-vf",
                "fps=30000/1001",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-video_track_timescale",
                "1000",
            ],
        ),
    ];
    for clip in &clips {
        let (ours, ours_pts, by_ffmpeg) = frames_by(clip, Decoders::Best);
        assert!(
            !by_ffmpeg,
            "{}: not decoded in this process",
            clip.display()
        );
        let (theirs, theirs_pts, _) = frames_by(clip, Decoders::Ffmpeg);
        assert_eq!(ours.len(), theirs.len(), "{}: frame count", clip.display());
        assert!(ours == theirs, "{}: frames differ", clip.display());
        assert_eq!(ours_pts, theirs_pts, "{}: times differ", clip.display());
    }
}

#[test]
fn a_damaged_mp4_decoded_in_this_process_goes_on_as_ffmpeg_does() {
    // Bytes overwritten inside bikes' picture data: the frames go on (the decoder conceals
    // the damage) and the source ends cleanly, with the frames ffmpeg gives.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.mp4");
    let mut bytes = std::fs::read(common::clip("bikes.mp4")).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 2000] {
        *b ^= 0x5A;
    }
    std::fs::write(&path, &bytes).unwrap();
    let (ours, _, by_ffmpeg) = frames_by(&path, Decoders::Best);
    assert!(!by_ffmpeg, "the damage is in the pictures, not the index");
    let (theirs, _, _) = frames_by(&path, Decoders::Ffmpeg);
    assert_eq!(ours.len(), theirs.len(), "frame count");
    assert!(ours == theirs, "frames differ");
    let (clean, _, _) = frames_by(&common::clip("bikes.mp4"), Decoders::Best);
    assert!(ours != clean, "the damage did not reach a picture");

    // Damage in the first picture (as in a phone's recording whose first pictures do not
    // decode): ffmpeg decides what comes out, so the decoder hands over to it, and the
    // frames are its frames.
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
        ])
        .args(["-show_entries", "packet=pos,size", "-of", "csv=p=0"])
        .arg(common::clip("bikes.mp4"))
        .output()
        .unwrap();
    let first = String::from_utf8(probe.stdout).unwrap();
    let (pos, size) = first.trim().split_once(',').unwrap();
    let (pos, size): (usize, usize) = (pos.parse().unwrap(), size.parse().unwrap());
    let mut bytes = std::fs::read(common::clip("bikes.mp4")).unwrap();
    for b in &mut bytes[pos + 16..pos + size / 2] {
        *b ^= 0x5A;
    }
    let path = dir.path().join("damaged_start.mp4");
    std::fs::write(&path, &bytes).unwrap();
    let mut s = FileSource::open(&path, AnalysisSize::default()).unwrap();
    let mut ours = s.next_frame().unwrap().expect("a first frame").gray;
    // checked at the first frame: bikes is decoded in two halves, and the second (in this
    // process: its pictures are intact) gives the last frames
    assert!(s.decoder_pid().is_some(), "an ffmpeg process took over");
    ours.extend(all_frames(&mut s).0);
    let (theirs, _, _) = frames_by(&path, Decoders::Ffmpeg);
    assert!(ours == theirs, "frames differ from ffmpeg's");
}

//! `scored.mp4`: the video (warped or not) with the music as its audio, by ffmpeg.

use std::path::Path;
use std::process::Command;

use super::ScoreError;
use crate::plan::Warp;

/// AAC bit rate of the music in scored.mp4 (transparent for stereo music).
const AAC_BITRATE: &str = "192k";
/// ffmpeg's "fast" AAC coder: about 2.5× quicker than the default two-loop search here and
/// inaudibly different at 192 kb/s; the mux is on the critical path of `score`.
const AAC_CODER: &str = "fast";
/// x264 settings when the video must be re-encoded (warping, or a codec mp4 cannot carry).
const X264_PRESET: &str = "veryfast";
const X264_CRF: &str = "20";

/// Duration of a media file in seconds, by ffprobe (used for the progress bar only).
pub fn probe_duration(path: &Path) -> Option<f64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "default=nw=1:nk=1",
        ])
        .arg(path)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Muxes `video`'s first video stream with `wav` into `out`. With `warps`, the video is
/// retimed segment by segment and re-encoded at `fps`.
pub fn mux(
    video: &Path,
    wav: &Path,
    out: &Path,
    warps: Option<&[Warp]>,
    fps: f64,
) -> Result<(), ScoreError> {
    let common_tail = |cmd: &mut Command| {
        cmd.args([
            "-c:a",
            "aac",
            "-aac_coder",
            AAC_CODER,
            "-b:a",
            AAC_BITRATE,
            "-movflags",
            "+faststart",
            "-map_metadata",
            "-1",
        ]);
        cmd.args([
            "-fflags",
            "+bitexact",
            "-flags:v",
            "+bitexact",
            "-flags:a",
            "+bitexact",
        ]);
        cmd.arg(out);
    };
    match warps.filter(|w| !w.is_empty()) {
        None => {
            let mut copy = ffmpeg(video, wav);
            copy.args(["-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy"]);
            common_tail(&mut copy);
            if run(copy).is_ok() {
                return Ok(());
            }
            // The input's video codec cannot go into mp4 as it is: re-encode it.
            let mut enc = ffmpeg(video, wav);
            enc.args(["-map", "0:v:0", "-map", "1:a:0"]);
            x264(&mut enc);
            common_tail(&mut enc);
            run(enc)
        }
        Some(warps) => {
            let mut graph = String::new();
            for (k, w) in warps.iter().enumerate() {
                graph.push_str(&format!(
                    "[0:v:0]trim=start={:.6}:end={:.6},setpts=(PTS-STARTPTS)/{:.9}[v{k}];",
                    w.input_start, w.input_end, w.rate
                ));
            }
            for k in 0..warps.len() {
                graph.push_str(&format!("[v{k}]"));
            }
            graph.push_str(&format!(
                "concat=n={}:v=1:a=0,fps={:.6}[v]",
                warps.len(),
                fps
            ));
            let mut enc = ffmpeg(video, wav);
            enc.args(["-filter_complex", &graph, "-map", "[v]", "-map", "1:a:0"]);
            x264(&mut enc);
            common_tail(&mut enc);
            run(enc)
        }
    }
}

fn ffmpeg(video: &Path, wav: &Path) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-v", "error", "-nostdin", "-y", "-i"])
        .arg(video)
        .arg("-i")
        .arg(wav);
    c
}

fn x264(c: &mut Command) {
    c.args([
        "-c:v",
        "libx264",
        "-preset",
        X264_PRESET,
        "-crf",
        X264_CRF,
        "-pix_fmt",
        "yuv420p",
    ]);
}

fn run(mut c: Command) -> Result<(), ScoreError> {
    let out = c.output().map_err(|e| {
        ScoreError::Mux(format!(
            "cannot run ffmpeg ({e}); install it (apt-get install ffmpeg)"
        ))
    })?;
    if out.status.success() {
        Ok(())
    } else {
        let msg = String::from_utf8_lossy(&out.stderr);
        let last = msg
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        Err(ScoreError::Mux(format!(
            "ffmpeg could not write scored.mp4: {last}"
        )))
    }
}

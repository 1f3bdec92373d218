//! `scored.mp4`: the video (warped or not) with the music as its audio, by ffmpeg.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::ScoreError;
use crate::music::{CHANNELS, SAMPLE_RATE};
use crate::plan::Warp;

/// AAC bit rate of the music in scored.mp4 (transparent for stereo music).
const AAC_BITRATE: &str = "192k";
/// ffmpeg's "fast" AAC coder: about 2.5× quicker than the default two-loop search here and
/// inaudibly different at 192 kb/s; the mux is on the critical path of `score`.
const AAC_CODER: &str = "fast";
/// x264 settings when the video must be re-encoded (warping, or a codec mp4 cannot carry).
const X264_PRESET: &str = "veryfast";
const X264_CRF: &str = "20";

/// An ffmpeg writing `scored.mp4`, started before the music exists: loading ffmpeg and
/// opening the video happen while the music is composed and rendered (a core is free
/// then), and the PCM goes to its stdin the moment it is mastered, with no WAV to parse.
pub struct Muxer {
    /// Taken by [`Muxer::finish`]; a muxer dropped unfinished (the music failed) kills it.
    child: Option<Child>,
    video: PathBuf,
    out: PathBuf,
    /// The video stream is copied (no warps); on failure [`Muxer::finish`] re-encodes it.
    copy: bool,
}

impl Muxer {
    /// Starts ffmpeg muxing `video`'s first video stream with the PCM to come into `out`.
    /// With `warps`, the video is retimed segment by segment and re-encoded at `fps`.
    pub fn start(
        video: &Path,
        out: &Path,
        warps: Option<&[Warp]>,
        fps: f64,
    ) -> Result<Self, ScoreError> {
        let warps = warps.filter(|w| !w.is_empty());
        let mut cmd = ffmpeg(video);
        match warps {
            None => {
                cmd.args(["-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy"]);
            }
            Some(warps) => {
                cmd.args([
                    "-filter_complex",
                    &warp_graph(warps, fps),
                    "-map",
                    "[v]",
                    "-map",
                    "1:a:0",
                ]);
                x264(&mut cmd);
            }
        }
        common_tail(&mut cmd, out);
        Ok(Muxer {
            child: Some(spawn(cmd)?),
            video: video.to_path_buf(),
            out: out.to_path_buf(),
            copy: warps.is_none(),
        })
    }

    /// Feeds the music (interleaved stereo at [`SAMPLE_RATE`], written as 16-bit samples,
    /// exactly those of music.wav) and waits for scored.mp4. A video codec mp4 cannot
    /// carry as it is gets re-encoded with x264.
    pub fn finish(mut self, pcm: &[f32]) -> Result<(), ScoreError> {
        let child = self.child.take().expect("a muxer finishes once");
        let copied = feed(child, pcm);
        if copied.is_ok() || !self.copy {
            return copied;
        }
        let mut cmd = ffmpeg(&self.video);
        cmd.args(["-map", "0:v:0", "-map", "1:a:0"]);
        x264(&mut cmd);
        common_tail(&mut cmd, &self.out);
        feed(spawn(cmd)?, pcm)
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Retimes each warp's span of the input by its rate, then joins them at `fps`.
fn warp_graph(warps: &[Warp], fps: f64) -> String {
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
    graph
}

/// ffmpeg with two inputs: the video, and the music as raw 16-bit little-endian stereo on
/// its stdin.
fn ffmpeg(video: &Path) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-v", "error", "-nostdin", "-y", "-i"])
        .arg(video)
        .args(["-f", "s16le", "-ar", &SAMPLE_RATE.to_string()])
        .args(["-ac", &CHANNELS.to_string(), "-channel_layout", "stereo"])
        .args(["-i", "pipe:0"]);
    c
}

fn common_tail(cmd: &mut Command, out: &Path) {
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
}

fn spawn(mut cmd: Command) -> Result<Child, ScoreError> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            ScoreError::Mux(format!(
                "cannot run ffmpeg ({e}); install it (apt-get install ffmpeg)"
            ))
        })
}

/// Frames of PCM converted and written per pipe write (64 kB).
const FEED_FRAMES: usize = 16 * 1024;

/// Writes the PCM to the child's stdin (from another thread, while this one collects its
/// stderr, so neither pipe can fill up and stall the other), closes it and waits.
fn feed(mut child: Child, pcm: &[f32]) -> Result<(), ScoreError> {
    let mut stdin = child.stdin.take().expect("piped stdin");
    let out = std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut bytes = Vec::with_capacity(FEED_FRAMES * CHANNELS as usize * 2);
            for chunk in pcm.chunks(FEED_FRAMES * CHANNELS as usize) {
                bytes.clear();
                bytes.extend(chunk.iter().flat_map(|&s| pcm_i16(s).to_le_bytes()));
                // A write error means ffmpeg stopped reading: its exit status says why.
                if stdin.write_all(&bytes).is_err() {
                    break;
                }
            }
        });
        child.wait_with_output()
    });
    let out = out.map_err(|e| ScoreError::Mux(format!("ffmpeg did not finish: {e}")))?;
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

/// A float sample as the 16-bit sample music.wav and scored.mp4 carry.
pub fn pcm_i16(s: f32) -> i16 {
    (s.clamp(-1.0, 1.0) * i16::MAX as f32).round() as i16
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

//! `source` stage: frames from a video file (libavcodec in this process, or an ffmpeg
//! subprocess) or a V4L2 camera,
//! at the analysis size, with presentation timestamps. Both sources yield the same
//! [`Frame`] type.
//!
//! | file | what |
//! |---|---|
//! | `file.rs` | [`FileSource`]: ffmpeg decodes any container/codec it reads, scaled to the analysis size |
//! | `lavcdec.rs` | the file source's decoder in this process (H.264/HEVC in a plain MP4/MOV) |
//! | `mp4.rs`, `avi.rs` | stream facts (and the MP4's samples) read from the container in process |
//! | `v4l2.rs` | [`V4l2Source`]: MMAP streaming from a camera, format negotiation, "camera gone" |
//! | `convert.rs` | pixel formats (YUYV, NV12, GREY, MJPEG) to luma, area resampling |

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod avi;
pub mod convert;
mod file;
mod lavcdec;
pub(crate) mod mp4;
mod v4l2;

pub(crate) use file::last_line;
pub use file::{Decoders, FileSource};
pub use v4l2::{CaptureRequest, V4l2Source};

/// One analysis frame: 8-bit luma at the analysis size.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Presentation time in seconds from the start of the stream.
    pub pts: f64,
    pub width: u32,
    pub height: u32,
    /// Row-major luma, `width * height` bytes.
    pub gray: Vec<u8>,
}

/// What is known about a stream before (or while) reading it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Native frame size of the input.
    pub width: u32,
    pub height: u32,
    /// Nominal frame rate of the frames the source delivers (the analysis rate).
    pub fps: f64,
    /// Duration in seconds, when the container tells it (files); `None` for cameras.
    pub duration: Option<f64>,
    /// The video codec as ffmpeg names it ("h264", "hevc", …), for files; `None` for cameras.
    pub codec: Option<String>,
}

/// `path` as ffmpeg and ffprobe must be given a file: behind the `file:` protocol, so that a
/// name with a colon is not taken for a protocol (`take:2.mp4` was refused as "truncated or
/// corrupt", and an output folder `out:1` failed at the mux: "Protocol not found").
pub fn ff_file(path: &std::path::Path) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from("file:");
    s.push(path.as_os_str());
    s
}

/// A stream of analysis frames.
pub trait Source {
    /// What is known about the stream.
    fn info(&self) -> &SourceInfo;
    /// The next frame; `Ok(None)` at the clean end of a file. A camera that disappears
    /// returns [`SourceError::CameraGone`] (never blocks forever).
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;
}

/// The size and rate frames are analysed at.
///
/// Default: 160 pixels wide, aspect kept, at most 30 frames/s. Why 160: motion, saliency and
/// cuts are properties of the whole picture; at 160x90 a person still spans dozens of pixels,
/// the flow pyramid still has three useful levels (down to 20x11), and one frame costs well
/// under a millisecond, so decoding (ffmpeg) dominates and the box's CPU stays free for the
/// note model. Why 30 frames/s: the music reacts within a beat; 60 fps adds cost, not musical
/// information (a 60 fps input is decimated).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnalysisSize {
    /// Target width in pixels (the height follows the input's aspect ratio).
    pub width: u32,
    /// Highest analysis frame rate; faster inputs are decimated to it.
    pub max_fps: f64,
}

/// Default analysis width (see [`AnalysisSize`]).
pub const ANALYSIS_WIDTH: u32 = 160;
/// Default highest analysis rate (see [`AnalysisSize`]).
pub const ANALYSIS_MAX_FPS: f64 = 30.0;
/// The tallest analysis frame, in multiples of the width: a 1-pixel-wide input would
/// otherwise ask for a frame thousands of pixels tall.
const MAX_ASPECT: u32 = 4;
/// The smallest analysis side: the extractor's pyramid needs at least 32 pixels.
pub const MIN_ANALYSIS_SIDE: u32 = 32;

impl Default for AnalysisSize {
    fn default() -> Self {
        AnalysisSize {
            width: ANALYSIS_WIDTH,
            max_fps: ANALYSIS_MAX_FPS,
        }
    }
}

impl AnalysisSize {
    /// The analysis frame size for an input of `w` x `h`: the target width, the input's
    /// aspect ratio, an even height, clamped to [`MIN_ANALYSIS_SIDE`] ..= width * 4.
    pub fn frame_size(&self, w: u32, h: u32) -> (u32, u32) {
        let width = self.width.max(MIN_ANALYSIS_SIDE);
        let h = if w == 0 {
            width as f64
        } else {
            width as f64 * h as f64 / w as f64
        };
        let mut height = ((h / 2.0).round() as u32) * 2;
        height = height.clamp(MIN_ANALYSIS_SIDE, width * MAX_ASPECT);
        (width, height)
    }

    /// The analysis frame rate for an input at `fps` (unknown or absurd rates read as 25).
    pub fn rate(&self, fps: f64) -> f64 {
        let fps = if fps.is_finite() && fps > 0.5 && fps < 1000.0 {
            fps
        } else {
            25.0
        };
        fps.min(self.max_fps)
    }
}

/// Why a source failed. Each message is one line naming the input and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: no such file (check the path)")]
    NotFound { path: PathBuf },
    #[error("{path}: cannot read the file: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the file is empty (0 bytes); give a video file")]
    Empty { path: PathBuf },
    #[error("{path}: {what}, not a video file; {hint}")]
    NotAFile {
        path: PathBuf,
        what: &'static str,
        hint: &'static str,
    },
    #[error("{path}: not a video file ffmpeg can read ({detail})")]
    NotAVideo { path: PathBuf, detail: String },
    #[error("{path}: the file has no video stream (audio or data only); give a video file")]
    NoVideoStream { path: PathBuf },
    #[error("{path}: the video stream has no frames (zero length); give a video with at least two frames")]
    ZeroLength { path: PathBuf },
    #[error("{path}: truncated or corrupt video ({detail}); re-encode or re-download it")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path}: the video stream ended early after {frames} frames ({detail}); the file is truncated or corrupt — re-encode or re-download it")]
    Truncated {
        path: PathBuf,
        frames: u64,
        detail: String,
    },
    #[error("{path}: the video ends at {seconds:.1} s of the {stated:.1} s the file states ({detail}); the file is cut off — re-download it, or re-encode the part that plays")]
    EndsEarly {
        path: PathBuf,
        seconds: f64,
        stated: f64,
        detail: String,
    },
    #[error("cannot run {tool} ({source}); install ffmpeg (it provides ffmpeg and ffprobe)")]
    Tool {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("{device}: camera gone ({detail}); it will be reopened when it comes back")]
    CameraGone { device: PathBuf, detail: String },
    #[error("{device}: camera error: {detail}")]
    Camera { device: PathBuf, detail: String },
    #[error("{device}: the camera offers none of the formats undertone reads (YUYV, MJPEG, NV12, GREY); it offers {offered}")]
    NoUsableFormat { device: PathBuf, offered: String },
    #[error("{what}: bad frame data: {detail}")]
    BadFrame { what: String, detail: String },
}

//! `source` stage: frames from a video file (ffmpeg subprocess) or a V4L2 camera,
//! at the analysis size, with presentation timestamps. Both sources yield the same
//! [`Frame`] type.

use serde::{Deserialize, Serialize};

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
    /// Nominal frame rate.
    pub fps: f64,
    /// Duration in seconds, when the container tells it (files); `None` for cameras.
    pub duration: Option<f64>,
}

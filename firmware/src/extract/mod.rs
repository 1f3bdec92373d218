//! `extract` stage: per-frame motion speed, motion saliency, transition evidence and
//! visual-beat (impact) envelope, then cuts, visual beats and a visual tempo.

use serde::{Deserialize, Serialize};

/// Features of one frame (computed from it and the frame before).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureFrame {
    /// Presentation time in seconds.
    pub t: f64,
    /// Motion speed in frame diagonals per second (resolution- and fps-independent).
    pub speed: f32,
    /// Motion saliency 0..=1: how conspicuous the motion is against the rest of the frame.
    pub saliency: f32,
    /// Probability 0..=1 that a scene transition happens at this frame.
    pub transition: f32,
    /// Visual impact envelope (sharp motion change), for visual beats.
    pub impact: f32,
}

/// Kind of scene transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionKind {
    Cut,
    Gradual,
}

/// A detected scene transition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Time of the (first frame of the) new shot, seconds.
    pub t: f64,
    /// End of the transition (equal to `t` for a hard cut), seconds.
    pub end: f64,
    pub kind: TransitionKind,
    pub confidence: f32,
}

/// Everything extraction found in a whole video (offline) — what `analyze` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub duration: f64,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub frames: Vec<FeatureFrame>,
    pub transitions: Vec<Transition>,
    /// Times of visual beats (sharp motion changes), seconds.
    pub visual_beats: Vec<f64>,
    /// Visual tempo estimate in BPM, when the motion has a rhythm.
    pub visual_tempo_bpm: Option<f64>,
}

//! `compose` stage: the compound-word transformer (int8 ONNX, run by tract with a
//! KV cache) that writes the notes of each bar under per-bar controls.

use serde::{Deserialize, Serialize};

use crate::music::Chord;

/// The controls the note model obeys for one bar.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BarControls {
    /// Note-density class `0..DENSITY_CLASSES`.
    pub density: u8,
    /// Note-strength class `0..STRENGTH_CLASSES`.
    pub strength: u8,
    /// A new section starts at this bar.
    pub section_start: bool,
    /// The chord the bar's notes must fit.
    pub chord: Chord,
}

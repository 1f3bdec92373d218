//! `plan` stage: owns the beat clock. Turns extracted features into one [`BarPlan`]
//! per bar: tempo and bar grid, per-bar control classes, section starts and harmony.

use serde::{Deserialize, Serialize};

use crate::music::{Chord, Preferences};

/// The plan of one bar: everything downstream stages need to make it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarPlan {
    /// Bar index on the output timeline (0-based).
    pub index: u32,
    /// Bar start and end on the output timeline, seconds.
    pub start: f64,
    pub end: f64,
    /// Tempo of this bar, beats per minute.
    pub tempo_bpm: f64,
    /// Mean motion speed over the bar (frame diagonals per second).
    pub speed: f32,
    /// Mean motion saliency over the bar, 0..=1.
    pub saliency: f32,
    /// Requested note-density class, `0..DENSITY_CLASSES`.
    pub density_class: u8,
    /// Requested note-strength class, `0..STRENGTH_CLASSES`.
    pub strength_class: u8,
    /// Arrangement energy 0..=1 (drives the template's intensity layer).
    pub energy: f32,
    /// A new section starts on this bar's downbeat (a scene transition happened).
    pub section_start: bool,
    /// Section number this bar belongs to (0-based).
    pub section: u32,
    /// Harmony of the bar: the chord the melody must fit and the template plays.
    pub chord: Chord,
    /// The user's preferences in force for this bar.
    pub prefs: Preferences,
}

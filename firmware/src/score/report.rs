//! `report.json`: what the video did and what the music did, bar by bar (schema in
//! `docs/ref/outputs.md`). Times are seconds on the output timeline.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Scored, Timings};
use crate::extract::Analysis;
use crate::music::{Preferences, SAMPLE_RATE};
use crate::plan::{PlannedCut, Warp};

/// Schema version of report.json.
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputInfo {
    pub path: String,
    pub duration: f64,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputInfo {
    pub duration: f64,
    pub sample_rate: u32,
    pub warped: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarReport {
    pub index: u32,
    pub start: f64,
    pub end: f64,
    pub beats: u8,
    pub speed: f32,
    pub saliency: f32,
    pub density_class: u8,
    pub strength_class: u8,
    pub energy: f32,
    pub section_start: bool,
    pub section: u32,
    pub chord: String,
    pub note_count: usize,
    pub mean_velocity: f32,
    pub template_id: String,
    pub layer: u8,
    pub style: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub input: InputInfo,
    pub output: OutputInfo,
    pub tempo_bpm: f64,
    pub beats: Vec<f64>,
    pub downbeats: Vec<f64>,
    pub bars: Vec<BarReport>,
    pub cuts: Vec<PlannedCut>,
    pub warps: Vec<Warp>,
    pub timings: Timings,
    pub preferences: Preferences,
}

impl Report {
    pub(super) fn new(
        input: &Path,
        analysis: &Analysis,
        s: &Scored,
        prefs: &Preferences,
        warped: bool,
    ) -> Self {
        let bars = s
            .plan
            .bars
            .iter()
            .zip(&s.rendered.melody)
            .zip(&s.styles)
            .zip(&s.rendered.bars)
            .map(|(((b, n), st), r)| {
                // Counted on the melody as heard (what notes.mid holds).
                let count = n.notes.len();
                let mean_velocity = if count == 0 {
                    0.0
                } else {
                    n.notes.iter().map(|x| x.velocity as f32).sum::<f32>() / count as f32
                };
                BarReport {
                    index: b.index,
                    start: b.start,
                    end: b.end,
                    beats: b.beats,
                    speed: b.speed,
                    saliency: b.saliency,
                    density_class: b.density_class,
                    strength_class: b.strength_class,
                    energy: b.energy,
                    section_start: b.section_start,
                    section: b.section,
                    chord: b.chord.name(),
                    note_count: count,
                    mean_velocity,
                    template_id: r.template_id.clone(),
                    layer: r.layer,
                    style: serde_json::to_value(st).unwrap_or(serde_json::Value::Null),
                }
            })
            .collect();
        Report {
            version: REPORT_VERSION,
            input: InputInfo {
                path: input.display().to_string(),
                duration: analysis.duration,
                fps: analysis.fps,
                width: analysis.width,
                height: analysis.height,
            },
            output: OutputInfo {
                duration: s.plan.duration,
                sample_rate: SAMPLE_RATE,
                warped,
            },
            tempo_bpm: s.plan.tempo_bpm,
            beats: s.plan.beats.clone(),
            downbeats: s.plan.downbeats.clone(),
            bars,
            cuts: s.plan.cuts.clone(),
            warps: s.plan.warps.clone(),
            timings: Timings::default(),
            preferences: prefs.clone(),
        }
    }

    pub(super) fn with_timings(mut self, t: Timings) -> Self {
        self.timings = t;
        self
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("report serialises");
        v.push(b'\n');
        v
    }
}

//! The PNG `undertone analyze --png` writes: per-frame speed, saliency, transition
//! probability and impact over time, with cuts, gradual transitions and visual beats marked.

use std::path::Path;

use plotters::prelude::*;

use super::{Analysis, TransitionKind};
use crate::plotting::{err as e, halves, legend, line, marks, time_chart};

const SPEED: RGBColor = RGBColor(31, 119, 180);
const SALIENCY: RGBColor = RGBColor(255, 127, 14);
const TRANSITION: RGBColor = RGBColor(214, 39, 40);
const GRADUAL: RGBColor = RGBColor(250, 200, 200);
const IMPACT: RGBColor = RGBColor(44, 160, 44);
const BEAT: RGBColor = RGBColor(120, 120, 120);

/// Draws the analysis to `path` (PNG).
pub fn draw(path: &Path, a: &Analysis, title: &str) -> Result<(), String> {
    let (root, top, bottom) = halves(path)?;
    let t_end = a
        .duration
        .max(a.frames.last().map_or(0.0, |f| f.t))
        .max(1e-3);
    let max_speed = a.frames.iter().map(|f| f.speed).fold(1e-6f32, f32::max) as f64;
    let max_impact = a.frames.iter().map(|f| f.impact).fold(1e-6f32, f32::max) as f64;
    let series = |f: &dyn Fn(&super::FeatureFrame) -> f64| -> Vec<(f64, f64)> {
        a.frames.iter().map(|x| (x.t, f(x))).collect()
    };

    let mut c = time_chart(
        &top,
        format!("{title}: speed (max {max_speed:.3} diag/s), saliency, transitions"),
        t_end,
        0.0..1.05,
    )?;
    c.draw_series(
        a.transitions
            .iter()
            .filter(|t| t.kind == TransitionKind::Gradual)
            .map(|tr| {
                Rectangle::new(
                    [(tr.t, 0.0), (tr.end.max(tr.t + 0.02), 1.05)],
                    GRADUAL.filled(),
                )
            }),
    )
    .map_err(e)?;
    marks(
        &mut c,
        a.transitions
            .iter()
            .filter(|t| t.kind == TransitionKind::Cut)
            .map(|t| t.t),
        (0.0, 1.05),
        TRANSITION,
        2,
        Some("cut (line) / gradual (band)"),
    )?;
    line(
        &mut c,
        series(&|f| f.speed as f64 / max_speed),
        SPEED,
        1, // per-frame spikes: see the impact line below
        "speed (normalised)",
    )?;
    line(
        &mut c,
        series(&|f| f.saliency as f64),
        SALIENCY,
        1,
        "saliency",
    )?;
    legend(&mut c)?;

    let tempo = a
        .visual_tempo_bpm
        .map_or("no visual tempo".to_string(), |b| {
            format!("visual tempo {b:.1} BPM")
        });
    let mut m = time_chart(
        &bottom,
        format!(
            "impact envelope (max {max_impact:.3} diag/s²), {} visual beats, {tempo}",
            a.visual_beats.len()
        ),
        t_end,
        0.0..1.05,
    )?;
    marks(
        &mut m,
        a.visual_beats.iter().copied(),
        (0.0, 1.05),
        BEAT,
        1,
        None,
    )?;
    line(
        &mut m,
        series(&|f| f.impact as f64 / max_impact),
        IMPACT,
        // 1 pixel: plotters joins a wider line's segments with mitres, and the mitre at the
        // tip of a one-frame spike (0 → 0.9 → 0 between neighbouring pixels) shoots far past
        // the chart.
        1,
        "impact",
    )?;
    line(
        &mut m,
        series(&|f| f.transition as f64),
        TRANSITION,
        1,
        "transition probability",
    )?;
    legend(&mut m)?;
    root.present().map_err(e)?;
    Ok(())
}

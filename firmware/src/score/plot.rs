//! `report.png`: on one time axis, what the video did (speed, saliency, cuts) above what
//! the music did (notes per bar, mean velocity, sections, beats).

use std::path::Path;

use plotters::prelude::*;

use super::Report;
use crate::plotting::{err as e, halves, legend, line, marks, time_chart};

const SPEED_COLOR: RGBColor = RGBColor(31, 119, 180);
const SALIENCY_COLOR: RGBColor = RGBColor(255, 127, 14);
const CUT_COLOR: RGBColor = RGBColor(214, 39, 40);
const NOTES_COLOR: RGBColor = RGBColor(44, 160, 44);
const VELOCITY_COLOR: RGBColor = RGBColor(148, 103, 189);
const SECTION_COLOR: RGBColor = RGBColor(90, 90, 90);

pub fn draw(path: &Path, r: &Report) -> Result<(), String> {
    let (root, top, bottom) = halves(path)?;
    let t_end = r.output.duration.max(1e-3);
    let step = |f: &dyn Fn(&super::report::BarReport) -> f64| -> Vec<(f64, f64)> {
        r.bars
            .iter()
            .flat_map(|b| [(b.start, f(b)), (b.end.min(t_end), f(b))])
            .collect()
    };

    // Video: speed (normalised to its maximum) and saliency per bar, cuts.
    let max_speed = r.bars.iter().map(|b| b.speed).fold(1e-6f32, f32::max) as f64;
    let mut c = time_chart(
        &top,
        format!(
            "video: motion speed (max {:.3} diag/s), saliency, cuts — {}",
            max_speed, r.input.path
        ),
        t_end,
        0.0..1.05,
    )?;
    marks(
        &mut c,
        r.cuts.iter().map(|cut| cut.t),
        (0.0, 1.05),
        CUT_COLOR,
        2,
        Some("cut"),
    )?;
    line(
        &mut c,
        step(&|b| b.speed as f64 / max_speed),
        SPEED_COLOR,
        2,
        "speed",
    )?;
    line(
        &mut c,
        step(&|b| b.saliency as f64),
        SALIENCY_COLOR,
        2,
        "saliency",
    )?;
    legend(&mut c)?;

    // Music: notes per bar (bars), mean velocity (line), section starts, beats.
    let max_notes = r
        .bars
        .iter()
        .map(|b| b.note_count)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut m = time_chart(
        &bottom,
        format!(
            "music: notes per bar (max {}), mean velocity, sections, beats — {:.1} BPM",
            max_notes, r.tempo_bpm
        ),
        t_end,
        -0.08..1.05,
    )?;
    m.draw_series(r.bars.iter().map(|b| {
        Rectangle::new(
            [
                (b.start, 0.0),
                (b.end.min(t_end), b.note_count as f64 / max_notes),
            ],
            NOTES_COLOR.mix(0.5).filled(),
        )
    }))
    .map_err(e)?
    .label("notes per bar")
    .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], NOTES_COLOR.mix(0.5).filled()));
    line(
        &mut m,
        step(&|b| b.mean_velocity as f64 / 127.0),
        VELOCITY_COLOR,
        2,
        "mean velocity / 127",
    )?;
    marks(
        &mut m,
        r.bars.iter().filter(|b| b.section_start).map(|b| b.start),
        (-0.08, 1.05),
        SECTION_COLOR,
        2,
        Some("section start"),
    )?;
    marks(
        &mut m,
        r.beats.iter().copied(),
        (-0.08, -0.04),
        BLACK,
        1,
        None,
    )?;
    marks(
        &mut m,
        r.downbeats.iter().copied(),
        (-0.08, -0.01),
        BLACK,
        2,
        None,
    )?;
    legend(&mut m)?;
    root.present().map_err(e)?;
    Ok(())
}

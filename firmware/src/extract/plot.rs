//! The PNG `undertone analyze --png` writes: per-frame speed, saliency, transition
//! probability and impact over time, with cuts, gradual transitions and visual beats marked.

use std::path::Path;

use plotters::prelude::*;

use super::{Analysis, TransitionKind};

/// Picture size: a 2-minute clip gets ~13 px per second.
const WIDTH: u32 = 1600;
const HEIGHT: u32 = 900;

const SPEED: RGBColor = RGBColor(31, 119, 180);
const SALIENCY: RGBColor = RGBColor(255, 127, 14);
const TRANSITION: RGBColor = RGBColor(214, 39, 40);
const GRADUAL: RGBColor = RGBColor(250, 200, 200);
const IMPACT: RGBColor = RGBColor(44, 160, 44);
const BEAT: RGBColor = RGBColor(120, 120, 120);

/// Draws the analysis to `path` (PNG).
pub fn draw(path: &Path, a: &Analysis, title: &str) -> Result<(), String> {
    crate::plotting::ensure_font();
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (top, bottom) = root.split_vertically(HEIGHT / 2);
    let t_end = a
        .duration
        .max(a.frames.last().map_or(0.0, |f| f.t))
        .max(1e-3);
    let max_speed = a.frames.iter().map(|f| f.speed).fold(1e-6f32, f32::max) as f64;
    let max_impact = a.frames.iter().map(|f| f.impact).fold(1e-6f32, f32::max) as f64;

    let mut c = ChartBuilder::on(&top)
        .caption(
            format!("{title}: speed (max {max_speed:.3} diag/s), saliency, transitions"),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..t_end, 0.0..1.05)
        .map_err(|x| e(&x))?;
    c.configure_mesh()
        .x_desc("seconds")
        .disable_x_mesh()
        .draw()
        .map_err(|x| e(&x))?;
    for tr in a
        .transitions
        .iter()
        .filter(|t| t.kind == TransitionKind::Gradual)
    {
        c.draw_series(std::iter::once(Rectangle::new(
            [(tr.t, 0.0), (tr.end.max(tr.t + 0.02), 1.05)],
            GRADUAL.filled(),
        )))
        .map_err(|x| e(&x))?;
    }
    for tr in a
        .transitions
        .iter()
        .filter(|t| t.kind == TransitionKind::Cut)
    {
        c.draw_series(LineSeries::new(
            [(tr.t, 0.0), (tr.t, 1.05)],
            TRANSITION.stroke_width(2),
        ))
        .map_err(|x| e(&x))?;
    }
    let series = |f: &dyn Fn(&super::FeatureFrame) -> f64| -> Vec<(f64, f64)> {
        a.frames.iter().map(|x| (x.t, f(x))).collect()
    };
    c.draw_series(LineSeries::new(
        series(&|f| f.speed as f64 / max_speed),
        SPEED.stroke_width(2),
    ))
    .map_err(|x| e(&x))?
    .label("speed (normalised)")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], SPEED.stroke_width(2)));
    c.draw_series(LineSeries::new(
        series(&|f| f.saliency as f64),
        SALIENCY.stroke_width(1),
    ))
    .map_err(|x| e(&x))?
    .label("saliency")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], SALIENCY.stroke_width(2)));
    c.draw_series(std::iter::once(PathElement::new(
        [(0.0, -1.0), (0.0, -1.0)],
        TRANSITION.stroke_width(2),
    )))
    .map_err(|x| e(&x))?
    .label("cut (line) / gradual (band)")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], TRANSITION.stroke_width(2)));
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;

    let tempo = a
        .visual_tempo_bpm
        .map_or("no visual tempo".to_string(), |b| {
            format!("visual tempo {b:.1} BPM")
        });
    let mut m = ChartBuilder::on(&bottom)
        .caption(
            format!(
                "impact envelope (max {max_impact:.3} diag/s²), {} visual beats, {tempo}",
                a.visual_beats.len()
            ),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..t_end, 0.0..1.05)
        .map_err(|x| e(&x))?;
    m.configure_mesh()
        .x_desc("seconds")
        .disable_x_mesh()
        .draw()
        .map_err(|x| e(&x))?;
    for &b in &a.visual_beats {
        m.draw_series(LineSeries::new([(b, 0.0), (b, 1.05)], BEAT.stroke_width(1)))
            .map_err(|x| e(&x))?;
    }
    m.draw_series(LineSeries::new(
        series(&|f| f.impact as f64 / max_impact),
        IMPACT.stroke_width(2),
    ))
    .map_err(|x| e(&x))?
    .label("impact")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], IMPACT.stroke_width(2)));
    m.draw_series(LineSeries::new(
        series(&|f| f.transition as f64),
        TRANSITION.stroke_width(1),
    ))
    .map_err(|x| e(&x))?
    .label("transition probability")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], TRANSITION.stroke_width(2)));
    m.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

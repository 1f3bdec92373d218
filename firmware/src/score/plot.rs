//! `report.png`: on one time axis, what the video did (speed, saliency, cuts) above what
//! the music did (notes per bar, mean velocity, sections, beats).

use std::path::Path;

use plotters::prelude::*;

use super::Report;

/// Picture size: wide enough to show one bar per ~10 px on a 2-minute video.
const WIDTH: u32 = 1600;
const HEIGHT: u32 = 900;

const SPEED_COLOR: RGBColor = RGBColor(31, 119, 180);
const SALIENCY_COLOR: RGBColor = RGBColor(255, 127, 14);
const CUT_COLOR: RGBColor = RGBColor(214, 39, 40);
const NOTES_COLOR: RGBColor = RGBColor(44, 160, 44);
const VELOCITY_COLOR: RGBColor = RGBColor(148, 103, 189);
const SECTION_COLOR: RGBColor = RGBColor(90, 90, 90);

pub fn draw(path: &Path, r: &Report) -> Result<(), String> {
    crate::plotting::ensure_font();
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (top, bottom) = root.split_vertically(HEIGHT / 2);
    let t_end = r.output.duration.max(1e-3);

    // Video: speed (normalised to its maximum) and saliency per bar, cuts.
    let max_speed = r.bars.iter().map(|b| b.speed).fold(1e-6f32, f32::max) as f64;
    let mut c = ChartBuilder::on(&top)
        .caption(
            format!(
                "video: motion speed (max {:.3} diag/s), saliency, cuts — {}",
                max_speed, r.input.path
            ),
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
        .light_line_style(WHITE)
        .draw()
        .map_err(|x| e(&x))?;
    for cut in &r.cuts {
        c.draw_series(LineSeries::new(
            [(cut.t, 0.0), (cut.t, 1.05)],
            CUT_COLOR.stroke_width(2),
        ))
        .map_err(|x| e(&x))?;
    }
    let step = |f: &dyn Fn(&super::report::BarReport) -> f64| -> Vec<(f64, f64)> {
        r.bars
            .iter()
            .flat_map(|b| [(b.start, f(b)), (b.end.min(t_end), f(b))])
            .collect()
    };
    c.draw_series(LineSeries::new(
        step(&|b| b.speed as f64 / max_speed),
        SPEED_COLOR.stroke_width(2),
    ))
    .map_err(|x| e(&x))?
    .label("speed")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], SPEED_COLOR.stroke_width(2)));
    c.draw_series(LineSeries::new(
        step(&|b| b.saliency as f64),
        SALIENCY_COLOR.stroke_width(2),
    ))
    .map_err(|x| e(&x))?
    .label("saliency")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], SALIENCY_COLOR.stroke_width(2)));
    c.draw_series(std::iter::once(PathElement::new(
        [(0.0, -1.0), (0.0, -1.0)],
        CUT_COLOR.stroke_width(2),
    )))
    .map_err(|x| e(&x))?
    .label("cut")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], CUT_COLOR.stroke_width(2)));
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;

    // Music: notes per bar (bars), mean velocity (line), section starts, beats.
    let max_notes = r
        .bars
        .iter()
        .map(|b| b.note_count)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut m = ChartBuilder::on(&bottom)
        .caption(
            format!(
                "music: notes per bar (max {}), mean velocity, sections, beats — {:.1} BPM",
                max_notes, r.tempo_bpm
            ),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..t_end, -0.08..1.05)
        .map_err(|x| e(&x))?;
    m.configure_mesh()
        .x_desc("seconds")
        .disable_x_mesh()
        .light_line_style(WHITE)
        .draw()
        .map_err(|x| e(&x))?;
    m.draw_series(r.bars.iter().map(|b| {
        Rectangle::new(
            [
                (b.start, 0.0),
                (b.end.min(t_end), b.note_count as f64 / max_notes),
            ],
            NOTES_COLOR.mix(0.5).filled(),
        )
    }))
    .map_err(|x| e(&x))?
    .label("notes per bar")
    .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], NOTES_COLOR.mix(0.5).filled()));
    m.draw_series(LineSeries::new(
        step(&|b| b.mean_velocity as f64 / 127.0),
        VELOCITY_COLOR.stroke_width(2),
    ))
    .map_err(|x| e(&x))?
    .label("mean velocity / 127")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], VELOCITY_COLOR.stroke_width(2)));
    for b in r.bars.iter().filter(|b| b.section_start) {
        m.draw_series(LineSeries::new(
            [(b.start, -0.08), (b.start, 1.05)],
            SECTION_COLOR.stroke_width(2),
        ))
        .map_err(|x| e(&x))?;
    }
    m.draw_series(
        r.beats
            .iter()
            .map(|&t| PathElement::new([(t, -0.08), (t, -0.04)], BLACK.stroke_width(1))),
    )
    .map_err(|x| e(&x))?;
    m.draw_series(
        r.downbeats
            .iter()
            .map(|&t| PathElement::new([(t, -0.08), (t, -0.01)], BLACK.stroke_width(2))),
    )
    .map_err(|x| e(&x))?;
    m.draw_series(std::iter::once(PathElement::new(
        [(0.0, -2.0), (0.0, -2.0)],
        SECTION_COLOR.stroke_width(2),
    )))
    .map_err(|x| e(&x))?
    .label("section start")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], SECTION_COLOR.stroke_width(2)));
    m.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

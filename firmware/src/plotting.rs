//! Set-up and drawing shared by the PNG reports (`analyze --png`, `score`'s report.png): two
//! charts over one time axis, lines and marks with a legend.

use std::ops::Range;
use std::path::Path;
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// DejaVu Sans (Bitstream Vera licence, see assets/fonts/DejaVuSans.LICENSE), embedded once so
/// the box draws text without system fonts.
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Registers the embedded font as plotters' "sans-serif" (once per process).
pub fn ensure_font() {
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Both reports' picture size: wide enough for one bar per ~10 px on a 2-minute video.
pub const WIDTH: u32 = 1600;
pub const HEIGHT: u32 = 900;

/// A chart over output seconds (x) and a value (y), as both reports draw them.
pub type TimeChart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A PNG at `path` split into a top and a bottom half, white, with the font registered.
pub fn halves(
    path: &Path,
) -> Result<
    (
        DrawingArea<BitMapBackend<'_>, Shift>,
        DrawingArea<BitMapBackend<'_>, Shift>,
        DrawingArea<BitMapBackend<'_>, Shift>,
    ),
    String,
> {
    ensure_font();
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(HEIGHT / 2);
    Ok((root, top, bottom))
}

/// A chart on `area`: a caption, seconds `0..t_end` on x, `y` on y, horizontal grid lines.
pub fn time_chart<'a, 'b>(
    area: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    caption: String,
    t_end: f64,
    y: Range<f64>,
) -> Result<TimeChart<'a, 'b>, String> {
    let mut c = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..t_end * LEGEND_ROOM, y)
        .map_err(err)?;
    let label = move |x: &f64| {
        if *x > t_end * (1.0 + 1e-9) {
            String::new() // the legend's room: no time there
        } else {
            seconds_label(*x)
        }
    };
    c.configure_mesh()
        .x_desc("seconds")
        .x_label_formatter(&label)
        .disable_x_mesh()
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    Ok(c)
}

/// The time axis runs this far past the video's end: the legend sits in that room, right of
/// the last bar, and hides no curve (about 240 of the plot's 1,530 pixels).
const LEGEND_ROOM: f64 = 1.19;

/// A time tick as text: one decimal, more where the ticks are finer (0.05 s on a short clip).
fn seconds_label(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0');
    if s.ends_with('.') {
        format!("{s}0")
    } else {
        s.to_string()
    }
}

/// A line through `points` of `color` and `width`, listed in the legend as `label`.
pub fn line(
    c: &mut TimeChart<'_, '_>,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    width: u32,
    label: &str,
) -> Result<(), String> {
    c.draw_series(LineSeries::new(points, color.stroke_width(width)))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    Ok(())
}

/// Vertical marks at `xs` from `y0` to `y1` (cuts, section starts, beats); `label`, when
/// given, adds one legend entry for them all.
pub fn marks(
    c: &mut TimeChart<'_, '_>,
    xs: impl IntoIterator<Item = f64>,
    (y0, y1): (f64, f64),
    color: RGBColor,
    width: u32,
    label: Option<&str>,
) -> Result<(), String> {
    let drawn = c
        .draw_series(
            xs.into_iter()
                .map(|x| PathElement::new([(x, y0), (x, y1)], color.stroke_width(width))),
        )
        .map_err(err)?;
    if let Some(label) = label {
        drawn
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    Ok(())
}

/// The legend box, drawn last, in the room right of the video's end (see [`LEGEND_ROOM`]).
pub fn legend<'a, 'b: 'a>(c: &mut TimeChart<'a, 'b>) -> Result<(), String> {
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// A drawing error as text (the reports add the file name).
pub fn err(x: impl std::fmt::Display) -> String {
    x.to_string()
}

#[cfg(test)]
#[test]
fn time_ticks_read_as_seconds() {
    assert_eq!(seconds_label(0.0), "0.0");
    assert_eq!(seconds_label(10.0), "10.0");
    assert_eq!(seconds_label(2.5), "2.5");
    assert_eq!(seconds_label(0.05), "0.05");
    assert_eq!(seconds_label(150.0), "150.0");
    assert_eq!(seconds_label(0.30000000000000004), "0.3");
}

//! Set-up shared by the PNG reports (`analyze --png`, `score`'s report.png).

use std::sync::Once;

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

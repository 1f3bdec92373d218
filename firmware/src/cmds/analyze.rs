//! `undertone analyze VIDEO --json FILE [--png FILE]`: the extraction stage alone.

use super::say;
use std::path::PathBuf;

use anyhow::Context;

use crate::extract::{self, TransitionKind};
use crate::fsutil;

/// Frame rate the CPU-share figure is quoted at (the live camera rate).
const LIVE_FPS: f64 = 30.0;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The video file to analyse (any container/codec ffmpeg reads).
    pub video: PathBuf,
    /// Write per-frame features, transitions, visual beats and tempo as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a plot of the features over time (PNG) here.
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// Extraction model (default: models/extract/extract_v2.onnx under the data folder).
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
}

pub fn run(a: Args, data_root: &std::path::Path) -> anyhow::Result<()> {
    let model = a
        .model
        .clone()
        .unwrap_or_else(|| extract::default_model_path(data_root));
    let (analysis, stats) = extract::analyze_file_with_stats(&a.video, &model, &mut |_| {})?;
    if let Some(path) = &a.json {
        let json = serde_json::to_vec_pretty(&analysis)?;
        fsutil::write_atomic(path, &json)
            .with_context(|| format!("{}: cannot write the JSON", path.display()))?;
    }
    if let Some(path) = &a.png {
        // The image encoder picks the format from the extension: keep `.png` on the temp name.
        let tmp = fsutil::temp_path(path).with_extension("png");
        let title = a
            .video
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        extract::plot::draw(&tmp, &analysis, &title)
            .map_err(|e| anyhow::anyhow!("{}: cannot draw the plot: {e}", path.display()))?;
        fsutil::commit(&tmp, path)
            .with_context(|| format!("{}: cannot write the plot", path.display()))?;
    }
    let cuts = analysis
        .transitions
        .iter()
        .filter(|t| t.kind == TransitionKind::Cut)
        .count();
    let gradual = analysis.transitions.len() - cuts;
    let per_frame = stats.extract_seconds / stats.frames.max(1) as f64;
    let cpu_per_frame = stats.extract_cpu_seconds / stats.frames.max(1) as f64;
    say!(
        "{}: {} frames at {:.2} fps, {} cuts, {} gradual transitions, {} visual beats, visual tempo {}",
        a.video.display(),
        analysis.frames.len(),
        analysis.fps,
        cuts,
        gradual,
        analysis.visual_beats.len(),
        analysis
            .visual_tempo_bpm
            .map_or("none".to_string(), |b| format!("{b:.1} BPM")),
    )?;
    say!(
        "extraction: {:.0} frames/s of CPU time on one core ({:.3} ms/frame, {:.1} % of one core at {LIVE_FPS} fps); wall clock {:.0} frames/s ({:.3} ms/frame); graph setup at the first frame {:.0} ms; whole analysis {:.2} s",
        1.0 / cpu_per_frame.max(1e-9),
        cpu_per_frame * 1e3,
        cpu_per_frame * LIVE_FPS * 100.0,
        1.0 / per_frame.max(1e-9),
        per_frame * 1e3,
        stats.setup_seconds * 1e3,
        stats.total_seconds
    )?;
    Ok(())
}

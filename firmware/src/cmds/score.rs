//! `undertone score VIDEO -o DIR`.

use super::say;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::progress::Bar;
use crate::music::{Genre, Instrument, Mood, Preferences};
use crate::score::{score, ScoreOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The video file to score (any container/codec ffmpeg reads).
    pub video: PathBuf,
    /// Output folder (created if missing; existing outputs in it are replaced).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    #[command(flatten)]
    pub prefs: PrefArgs,
    /// Retime the video (at most ±8 % per segment) so every cut lands on a downbeat.
    #[arg(long)]
    pub warp: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Music preferences; each one given wins over what the notes imply.
#[derive(Debug, Clone, clap::Args)]
pub struct PrefArgs {
    /// Genre (template style).
    #[arg(long, value_enum)]
    pub genre: Option<Genre>,
    /// Mood (happy/calm → major harmony, dark/epic → minor).
    #[arg(long, value_enum)]
    pub mood: Option<Mood>,
    /// Energy 0.0 (calm) to 1.0 (intense).
    #[arg(long, value_parser = parse_energy)]
    pub energy: Option<f32>,
    /// Lead instrument of the melody.
    #[arg(long, value_enum)]
    pub instrument: Option<Instrument>,
    /// Fixed tempo in BPM (40–240) instead of the one derived from the video.
    #[arg(long, value_parser = parse_tempo)]
    pub tempo: Option<f64>,
    /// Seed of every random choice: same seed and input, same outputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl PrefArgs {
    pub fn to_preferences(&self) -> Preferences {
        Preferences {
            genre: self.genre,
            mood: self.mood,
            energy: self.energy,
            instrument: self.instrument,
            tempo: self.tempo,
            seed: self.seed,
            ..Default::default()
        }
    }
}

fn parse_energy(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number; give 0.0 to 1.0"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is out of range; give 0.0 to 1.0"))
    }
}

fn parse_tempo(s: &str) -> Result<f64, String> {
    let (lo, hi) = crate::plan::TEMPO_PREF_RANGE;
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number; give {lo} to {hi} BPM"))?;
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is out of range; give {lo} to {hi} BPM"))
    }
}

pub fn run(a: Args, data_root: &Path) -> anyhow::Result<()> {
    let created = (!a.output.exists()).then(|| a.output.clone());
    super::interrupt::clean_up_on_interrupt(crate::score::staging_dir(&a.output), created)
        .context("cannot take the interrupt signals")?;
    let opts = ScoreOptions {
        input: a.video.clone(),
        out_dir: a.output.clone(),
        prefs: a.prefs.to_preferences(),
        warp: a.warp,
        data_root: data_root.to_path_buf(),
    };
    let mut bar = Bar::new(a.quiet);
    let result = score(&opts, &mut bar);
    bar.finish();
    let report = result.with_context(|| format!("scoring {} failed", a.video.display()))?;
    say!(
        "scored {} ({:.1} s, {:.1} BPM, {} bars, {} cuts) in {:.1} s",
        a.video.display(),
        report.output.duration,
        report.tempo_bpm,
        report.bars.len(),
        report.cuts.len(),
        report.timings.total
    )?;
    for f in [
        "music.wav",
        "notes.mid",
        "scored.mp4",
        "report.json",
        "report.png",
    ] {
        say!("  {}", a.output.join(f).display())?;
    }
    Ok(())
}

//! `undertone compose --bars N --density D --strength S [--sections-at 0,8] [--chords C,G,Am,F] --seed K -o FILE.mid`:
//! the note model alone, for musicians and for checking it.

use super::say;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::compose::sampler::Sampling;
use crate::compose::{BarControls, Composer};
use crate::midi::{write_midi, MidiTrack, TimedNote};
use crate::music::{Chord, ChordQuality, BEATS_PER_BAR, PROGRESSIONS, TICKS_PER_BAR};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of bars to write.
    #[arg(long, default_value_t = 16)]
    pub bars: u32,
    /// Note-density class 0..=7 (0 = sparsest); a comma list is cycled bar by bar.
    #[arg(long, value_delimiter = ',', default_values_t = [3u8])]
    pub density: Vec<u8>,
    /// Note-strength class 0..=3 (0 = softest); a comma list is cycled bar by bar.
    #[arg(long, value_delimiter = ',', default_values_t = [1u8])]
    pub strength: Vec<u8>,
    /// Bars (0-based) where a new section starts (default: none).
    #[arg(long, value_delimiter = ',')]
    pub sections_at: Vec<u32>,
    /// Chords cycled bar by bar, e.g. `C,G,Am,F` or `Am,Dm,G,E7` (default: the first shared progression).
    #[arg(long, value_delimiter = ',', value_parser = parse_chord)]
    pub chords: Vec<Chord>,
    /// Seed: same seed and arguments, same notes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Tempo written into the MIDI file (BPM).
    #[arg(long, default_value_t = 100.0)]
    pub tempo: f64,
    /// Sampling temperature (default 0.9).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus (top-p) mass (default 0.95).
    #[arg(long)]
    pub top_p: Option<f32>,
    /// The note model (default: models/notes/notes_int8.onnx in the data folder).
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Let the model alone decide where each bar ends (no guard keeping it in the requested
    /// density class): measures the learned density control.
    #[arg(long)]
    pub no_density_guard: bool,
    /// Print a timing line (JSON: model steps, sampled tokens, seconds, tokens/s) after writing.
    #[arg(long)]
    pub timing: bool,
    /// Write every token fed to the model (JSON lines `["step"|"firststep"|"refill", token]`), for the
    /// benchmark that replays the same steps through onnxruntime.
    #[arg(long, value_name = "FILE", hide = true)]
    pub steps_out: Option<PathBuf>,
    /// Output MIDI file.
    #[arg(short, long, value_name = "FILE.mid")]
    pub output: PathBuf,
}

/// Parses `C`, `F#m`, `Bbdim`, `E7`.
pub fn parse_chord(s: &str) -> Result<Chord, String> {
    const ROOTS: [(&str, u8); 17] = [
        ("C#", 1),
        ("Db", 1),
        ("D#", 3),
        ("Eb", 3),
        ("F#", 6),
        ("Gb", 6),
        ("G#", 8),
        ("Ab", 8),
        ("A#", 10),
        ("Bb", 10),
        ("C", 0),
        ("D", 2),
        ("E", 4),
        ("F", 5),
        ("G", 7),
        ("A", 9),
        ("B", 11),
    ];
    let s = s.trim();
    let (name, root) = ROOTS
        .iter()
        .find(|(n, _)| s.starts_with(n))
        .ok_or_else(|| {
            format!(
                "chord {s:?}: expected a root C, C#/Db, D, ... B followed by '', 'm', 'dim' or '7'"
            )
        })?;
    let quality = match &s[name.len()..] {
        "" => ChordQuality::Major,
        "m" => ChordQuality::Minor,
        "dim" => ChordQuality::Diminished,
        "7" => ChordQuality::Dominant7,
        other => {
            return Err(format!(
                "chord {s:?}: unknown quality {other:?}; use '', 'm', 'dim' or '7'"
            ));
        }
    };
    Ok(Chord {
        root: *root,
        quality,
    })
}

/// Runs the command.
pub fn run(args: Args, data_root: &Path) -> anyhow::Result<()> {
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| Composer::default_model_path(data_root));
    let mut composer = Composer::load(&model)?;
    let mut sampling = Sampling::default();
    if let Some(t) = args.temperature {
        anyhow::ensure!(
            t > 0.0 && t <= 5.0,
            "--temperature {t} is out of range: valid is (0, 5]"
        );
        sampling.temperature = t;
    }
    if let Some(p) = args.top_p {
        anyhow::ensure!(
            p > 0.0 && p <= 1.0,
            "--top-p {p} is out of range: valid is (0, 1]"
        );
        sampling.top_p = p;
    }
    composer.set_sampling(sampling);
    composer.record_steps(args.steps_out.is_some());
    composer.set_density_guard(!args.no_density_guard);
    composer.start(args.seed);
    let t0 = std::time::Instant::now();
    let chords = if args.chords.is_empty() {
        PROGRESSIONS[0].chords.to_vec()
    } else {
        args.chords.clone()
    };
    anyhow::ensure!(
        !args.density.is_empty() && !args.strength.is_empty(),
        "--density and --strength need a value"
    );
    let mut tracks: Vec<Vec<TimedNote>> = vec![Vec::new(); 4];
    let mut count = 0;
    for bar in 0..args.bars {
        let b = bar as usize;
        let controls = BarControls {
            density: args.density[b % args.density.len()],
            strength: args.strength[b % args.strength.len()],
            section_start: args.sections_at.contains(&bar),
            // the next bar opens a section, or the piece ends here
            next_section_start: args.sections_at.contains(&(bar + 1)) || bar + 1 == args.bars,
            chord: chords[b % chords.len()],
            beats: BEATS_PER_BAR as u8,
        };
        let set = composer
            .next_bar(bar, &controls)
            .with_context(|| format!("composing bar {bar}"))?;
        for n in &set.notes {
            tracks[usize::from(n.track).min(3)].push(TimedNote {
                tick: u64::from(bar) * u64::from(TICKS_PER_BAR) + u64::from(n.start),
                duration: u64::from(n.duration),
                pitch: n.pitch,
                velocity: n.velocity,
            });
        }
        count += set.notes.len();
    }
    let secs = t0.elapsed().as_secs_f64();
    const NAMES: [&str; 4] = ["melody", "voice 2", "voice 3", "voice 4"];
    let parts: Vec<MidiTrack> = tracks
        .into_iter()
        .enumerate()
        .filter(|(_, notes)| !notes.is_empty())
        .map(|(i, notes)| MidiTrack {
            name: NAMES[i].into(),
            channel: i as u8,
            program: 0,
            notes,
        })
        .collect();
    write_midi(&args.output, args.tempo, &parts)?;
    say!(
        "wrote {}: {} bars, {} notes",
        args.output.display(),
        args.bars,
        count
    )?;
    if args.timing {
        let (steps, refilled, written) = composer.token_counts();
        let line = serde_json::json!({
            "bars": args.bars, "model_steps": steps, "refilled_tokens": refilled, "window_restarts": composer.window_restarts(),
            "sampled_tokens": written, "seconds": secs, "sampled_tokens_per_s": written as f64 / secs,
            "ms_per_step": 1e3 * secs / steps.max(1) as f64,
        });
        say!("{line}")?;
    }
    if let Some(path) = &args.steps_out {
        let lines: Vec<String> = composer
            .take_recorded()
            .iter()
            .map(|(kind, t)| serde_json::json!([kind, t]).to_string())
            .collect();
        crate::fsutil::write_atomic(path, (lines.join("\n") + "\n").as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chord_names_parse() {
        assert_eq!(
            parse_chord("Am").unwrap(),
            Chord {
                root: 9,
                quality: ChordQuality::Minor
            }
        );
        assert_eq!(
            parse_chord("F#dim").unwrap(),
            Chord {
                root: 6,
                quality: ChordQuality::Diminished
            }
        );
        assert_eq!(
            parse_chord("E7").unwrap(),
            Chord {
                root: 4,
                quality: ChordQuality::Dominant7
            }
        );
        assert_eq!(
            parse_chord("Bb").unwrap(),
            Chord {
                root: 10,
                quality: ChordQuality::Major
            }
        );
        assert!(parse_chord("H").is_err() && parse_chord("Cmaj9").is_err());
    }
}

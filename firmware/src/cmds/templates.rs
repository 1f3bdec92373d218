//! `undertone templates check [DIR]`: validates a template library (index, files,
//! checksums, sample rate, channels, decodability, MIDI patterns, coverage of every
//! style × progression × layer) and the melody SoundFont next to it.

use super::say;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use anyhow::Context;

use crate::midi::{MidiTrack, TimedNote};
use crate::music::{
    NoteSet, Preferences, PROGRESSIONS, PROGRESSION_BARS, SAMPLE_RATE, TICKS_PER_BAR,
};
use crate::plan::BarPlan;
use crate::render::{self, library};
use crate::style::{style_of, StyleVector};

#[derive(Debug, Args)]
pub struct TemplatesArgs {
    #[command(subcommand)]
    pub action: TemplatesAction,
}

#[derive(Debug, Subcommand)]
pub enum TemplatesAction {
    /// Checks a template library; exits non-zero and lists every problem if it has any.
    Check {
        /// Library folder (default: templates/ in the data folder).
        dir: Option<PathBuf>,
        /// Melody SoundFont to check as well (default: DIR/melody.sf2).
        #[arg(long)]
        soundfont: Option<PathBuf>,
        /// Also decode every audio file fully (slower; finds corruption past the header).
        #[arg(long)]
        decode: bool,
    },
    /// Renders a demo piece from a notes file (JSON list of NoteSets, or {"notes": [...]})
    /// through the template library: the listening examples and the benchmark use it.
    Render {
        /// Notes file (e.g. firmware/src/render/testdata/reel.json).
        #[arg(long)]
        notes: PathBuf,
        #[arg(long, value_enum)]
        genre: crate::music::Genre,
        #[arg(long, value_enum)]
        instrument: Option<crate::music::Instrument>,
        /// Planned tempo, BPM.
        #[arg(long, default_value_t = 96.0)]
        tempo: f64,
        /// Length of the piece, seconds.
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        /// Bars per section (each section takes the next progression and a higher energy).
        #[arg(long, default_value_t = 4)]
        section_bars: u32,
        /// Output WAV (32-bit float, 48 kHz stereo).
        #[arg(long)]
        out: PathBuf,
        /// Also write the MIDI (fitted melody + backing parts) here.
        #[arg(long)]
        midi: Option<PathBuf>,
        /// Library folder (default: templates/ in the data folder).
        #[arg(long)]
        library: Option<PathBuf>,
    },
}

/// Runs `undertone templates ...`.
pub fn run(args: TemplatesArgs, data_root: &Path) -> anyhow::Result<()> {
    match args.action {
        TemplatesAction::Render {
            notes,
            genre,
            instrument,
            tempo,
            seconds,
            section_bars,
            out,
            midi,
            library,
        } => {
            let dir = library.unwrap_or_else(|| render::default_library_dir(data_root));
            let text = std::fs::read_to_string(&notes)
                .with_context(|| format!("cannot read notes file {}", notes.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", notes.display()))?;
            let list = v.get("notes").cloned().unwrap_or(v);
            let sets: Vec<NoteSet> = serde_json::from_value(list)
                .with_context(|| format!("{} is not a list of NoteSets", notes.display()))?;
            let prefs = Preferences {
                genre: Some(genre),
                instrument,
                tempo: Some(tempo),
                ..Default::default()
            };
            let (bars, sets) = demo_plan(&sets, tempo, seconds, section_bars.max(1), &prefs);
            let styles = styles_per_bar(&bars, &sets);
            let lib = render::Library::load(&dir)?;
            let mut r = render::Renderer::new(lib, &render::default_soundfont_path(data_root))?;
            let frames = (seconds * SAMPLE_RATE as f64).round() as usize;
            let started = std::time::Instant::now();
            let piece = r.render(&bars, &sets, &styles, frames)?;
            let took = started.elapsed().as_secs_f64();
            write_wav(&out, &piece.pcm)?;
            if let Some(m) = midi {
                let mut tracks = vec![melody_track(
                    &piece.melody,
                    instrument.unwrap_or(styles[0].instrument),
                )];
                tracks.extend(piece.backing.iter().cloned());
                crate::midi::write_midi(&m, tempo, &tracks)?;
            }
            say!(
                "{}: {seconds:.1} s in {took:.3} s ({:.0}x real time), {:.2} LUFS, templates {}",
                out.display(),
                seconds / took.max(1e-9),
                piece.master.lufs_out,
                piece
                    .bars
                    .iter()
                    .map(|b| b.template_id.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(",")
            )?;
            Ok(())
        }
        TemplatesAction::Check {
            dir,
            soundfont,
            decode,
        } => {
            let dir = dir.unwrap_or_else(|| render::default_library_dir(data_root));
            let font = soundfont.unwrap_or_else(|| dir.join("melody.sf2"));
            let mut problems: Vec<String> = library::check_dir(&dir)
                .iter()
                .map(|p| p.to_string())
                .collect();
            let mut count = 0usize;
            if problems.is_empty() {
                let lib = render::Library::load(&dir)?;
                count = lib.templates().len();
                if decode {
                    for t in lib.templates() {
                        if let Err(e) = lib.decode(t) {
                            problems.push(e.to_string());
                        }
                    }
                }
            }
            if let Err(e) = render::synth::load_soundfont(&font) {
                problems.push(e.to_string());
            }
            if problems.is_empty() {
                say!(
                    "{}: {count} templates OK; SoundFont {} OK",
                    dir.display(),
                    font.display()
                )?;
                Ok(())
            } else {
                for p in &problems {
                    say!("{p}")?;
                }
                anyhow::bail!("{} problem(s) in {}", problems.len(), dir.display())
            }
        }
    }
}

/// A demo plan: bars of `tempo` covering `seconds`, a new section every `section_bars`
/// bars taking the next progression, energy rising section by section; the notes are
/// looped over the bars and given each bar's chord.
pub fn demo_plan(
    sets: &[NoteSet],
    tempo: f64,
    seconds: f64,
    section_bars: u32,
    prefs: &Preferences,
) -> (Vec<BarPlan>, Vec<NoteSet>) {
    let bar_s = 4.0 * 60.0 / tempo;
    let n = (seconds / bar_s).ceil() as u32;
    let sections = n.div_ceil(section_bars).max(1);
    let mut bars = Vec::new();
    let mut notes = Vec::new();
    for i in 0..n {
        let section = i / section_bars;
        let prog = &PROGRESSIONS[section as usize % PROGRESSIONS.len()];
        let pos = ((i - section * section_bars) as usize) % PROGRESSION_BARS;
        let energy = section as f32 / (sections.max(2) - 1) as f32;
        bars.push(BarPlan {
            index: i,
            start: i as f64 * bar_s,
            end: (i + 1) as f64 * bar_s,
            tempo_bpm: tempo,
            beats: crate::music::BEATS_PER_BAR as u8,
            speed: 0.0,
            saliency: 0.0,
            density_class: 0,
            strength_class: 0,
            energy: energy.min(1.0),
            section_start: pos == 0 && i == section * section_bars,
            section,
            chord: prog.chords[pos],
            prefs: prefs.clone(),
        });
        if !sets.is_empty() {
            let src = &sets[i as usize % sets.len()];
            notes.push(NoteSet {
                bar: i,
                chord: prog.chords[pos],
                notes: src.notes.clone(),
            });
        }
    }
    (bars, notes)
}

/// One style vector per bar: `style_of` over each section's bars and notes.
pub fn styles_per_bar(bars: &[BarPlan], notes: &[NoteSet]) -> Vec<StyleVector> {
    let mut out = Vec::with_capacity(bars.len());
    let mut i = 0;
    while i < bars.len() {
        let sec = bars[i].section;
        let j = bars[i..]
            .iter()
            .position(|b| b.section != sec)
            .map(|k| i + k)
            .unwrap_or(bars.len());
        let (lo, hi) = (bars[i].index, bars[j - 1].index);
        let sec_notes: Vec<NoteSet> = notes
            .iter()
            .filter(|n| n.bar >= lo && n.bar <= hi)
            .cloned()
            .collect();
        let sv = style_of(&sec_notes, &bars[i..j]);
        out.extend(std::iter::repeat_n(sv, j - i));
        i = j;
    }
    out
}

/// The fitted melody as one MIDI track on the output tick timeline (channel 0).
pub fn melody_track(sets: &[NoteSet], instrument: crate::music::Instrument) -> MidiTrack {
    let mut notes = Vec::new();
    for s in sets {
        for n in s.notes.iter().filter(|n| n.track == 0) {
            notes.push(TimedNote {
                tick: s.bar as u64 * TICKS_PER_BAR as u64 + n.start as u64,
                duration: n.duration as u64,
                pitch: n.pitch,
                velocity: n.velocity,
            });
        }
    }
    MidiTrack {
        name: "melody".into(),
        channel: 0,
        program: render::synth::program_of(instrument),
        notes,
    }
}

/// Writes interleaved stereo f32 at the engine rate as a 32-bit float WAV.
pub fn write_wav(path: &Path, pcm: &[f32]) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let tmp = crate::fsutil::temp_path(path);
    let mut w = hound::WavWriter::create(&tmp, spec)
        .with_context(|| format!("cannot write {}", path.display()))?;
    for s in pcm {
        w.write_sample(*s)?;
    }
    w.finalize()?;
    crate::fsutil::commit(&tmp, path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

//! `undertone templates check [DIR]`: validates a template library (index, files,
//! checksums, sample rate, channels, decodability, MIDI patterns, coverage of every
//! style × progression × layer) and the melody SoundFont next to it.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::render::{self, library};

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
}

/// Runs `undertone templates ...`.
pub fn run(args: TemplatesArgs, data_root: &Path) -> anyhow::Result<()> {
    match args.action {
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
                        if let Err(e) = lib.decode(&t.info) {
                            problems.push(e.to_string());
                        }
                    }
                }
            }
            if let Err(e) = render::synth::load_soundfont(&font) {
                problems.push(e.to_string());
            }
            if problems.is_empty() {
                println!(
                    "{}: {count} templates OK; SoundFont {} OK",
                    dir.display(),
                    font.display()
                );
                Ok(())
            } else {
                for p in &problems {
                    println!("{p}");
                }
                anyhow::bail!("{} problem(s) in {}", problems.len(), dir.display())
            }
        }
    }
}

//! The command-line interface: one module per subcommand; `main.rs` only parses and
//! calls [`run`].

use clap::{Parser, Subcommand};

pub mod analyze;
pub mod compose;
pub mod interrupt;
pub mod progress;
pub mod refine;
pub mod run;
pub mod score;
pub mod templates;

/// Stdout was closed by the reader (`undertone score … | head -1`): not a failure of the
/// command, whose work is done; `main` ends quietly on it.
#[derive(Debug, thiserror::Error)]
#[error("stdout closed")]
pub struct StdoutClosed;

/// `println!` that returns an error instead of panicking when stdout cannot be written:
/// [`StdoutClosed`] when the reader went away, else the I/O error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err(|e| -> anyhow::Error {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                $crate::cmds::StdoutClosed.into()
            } else {
                anyhow::Error::new(e).context("cannot write to stdout")
            }
        })
    }};
}
pub(crate) use say;

/// undertone: music that follows the picture.
#[derive(Debug, Parser)]
#[command(name = "undertone", version, about, long_about = None)]
pub struct Cli {
    /// Log level filter (e.g. `info`, `debug`, `undertone=trace`); also `RUST_LOG`. tract's opset
    /// notice is hidden by default: the models are checked against onnxruntime instead.
    #[arg(long, global = true, default_value = "warn,tract_onnx=error")]
    pub log: String,
    /// Folder with models/ and templates/ (default: $UNDERTONE_DATA, the source checkout, or /usr/share/undertone).
    #[arg(long, global = true, value_name = "DIR")]
    pub data: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The extraction stage alone: per-frame features, transitions, visual beats, tempo.
    Analyze(analyze::Args),
    /// The note model alone: writes N bars under fixed controls to a MIDI file.
    Compose(compose::Args),
    /// Template library tools (`templates check [DIR]`).
    Templates(templates::TemplatesArgs),
    /// Score a video file: music.wav, notes.mid, scored.mp4, report.json and report.png in DIR.
    Score(score::Args),
    /// Like or dislike a scored result: list the options that fit it, or apply one in place.
    Refine(refine::Args),
    /// The live appliance: camera (or a file replayed as one) to the speakers, with
    /// metrics, systemd notification and a report; config from /etc/undertone/config.toml.
    Run(run::Args),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // Folder with models/ and templates/, for the subcommands that load them.
    let data_root = crate::paths::data_root(cli.data.as_deref());
    match cli.command {
        Command::Analyze(args) => analyze::run(args, &data_root),
        Command::Compose(args) => compose::run(args, &data_root),
        Command::Templates(args) => templates::run(args, &data_root),
        Command::Score(args) => score::run(args, &data_root),
        Command::Refine(args) => refine::run(args, &data_root),
        Command::Run(args) => run::run(args, &data_root),
    }
}

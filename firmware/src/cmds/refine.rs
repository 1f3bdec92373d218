//! `undertone refine DIR (--list | --option X | --like)`.

use super::say;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::progress::Bar;
use crate::score::refine::{self, RefineOption};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["list", "option", "like"])))]
pub struct Args {
    /// A folder written by `undertone score`.
    pub dir: PathBuf,
    /// Print the options that fit this result.
    #[arg(long)]
    pub list: bool,
    /// Dislike: apply this option (see --list), rewriting the outputs in place.
    #[arg(long, value_name = "OPTION")]
    pub option: Option<RefineOption>,
    /// Like: keep the result as it is (changes nothing).
    #[arg(long)]
    pub like: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

impl clap::builder::ValueParserFactory for RefineOption {
    type Parser = clap::builder::ValueParser;
    fn value_parser() -> Self::Parser {
        clap::builder::ValueParser::new(|s: &str| s.parse::<RefineOption>())
    }
}

pub fn run(a: Args, data_root: &Path) -> anyhow::Result<()> {
    if a.like {
        refine::load_report(&a.dir)?;
        say!("kept {} as it is", a.dir.display())?;
        return Ok(());
    }
    if a.list {
        let report = refine::load_report(&a.dir)?;
        for o in refine::options(&report) {
            say!("{:<22} {}", o.to_string(), o.describe())?;
        }
        return Ok(());
    }
    let opt = a.option.expect("clap requires one action");
    super::interrupt::clean_up_on_interrupt(crate::score::staging_dir(&a.dir), None)
        .context("cannot take the interrupt signals")?;
    let mut bar = Bar::new(a.quiet);
    let result = refine::apply(&a.dir, opt, data_root, &mut bar);
    bar.finish();
    let report = result.with_context(|| format!("refining {} failed", a.dir.display()))?;
    say!(
        "updated {} with '{opt}' in {:.1} s",
        a.dir.display(),
        report.timings.total
    )?;
    Ok(())
}

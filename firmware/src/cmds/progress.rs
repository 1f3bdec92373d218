//! A progress bar on stderr for long jobs (hidden with `--quiet` or when stderr is not a terminal
//! the bar library hides itself).

use indicatif::{ProgressBar, ProgressStyle};

use crate::score::Progress;

/// indicatif-backed [`Progress`].
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    pub fn new(quiet: bool) -> Self {
        Bar {
            bar: (!quiet).then(ProgressBar::no_length),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn stage(&mut self, name: &str, total: u64) {
        if let Some(b) = &self.bar {
            let style = if total > 0 {
                ProgressStyle::with_template("{msg:>16} [{bar:40}] {percent:>3}% {elapsed_precise}")
            } else {
                ProgressStyle::with_template("{msg:>16} {spinner} {elapsed_precise}")
            };
            b.set_style(style.expect("valid template").progress_chars("=> "));
            b.set_length(total);
            b.set_position(0);
            b.set_message(name.to_string());
        }
    }

    fn set(&mut self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }
}

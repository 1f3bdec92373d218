//! undertone: watches video and plays music that follows it.
//!
//! One-way pipeline (see `docs/design/pipeline.md`):
//! `source → extract → plan → compose → style → render → sink`.

pub mod children;
pub mod cmds;
pub mod compose;
pub mod extract;
pub mod fsutil;
pub(crate) mod lavc;
pub mod live;
pub mod midi;
pub mod music;
pub mod paths;
pub mod plan;
pub mod plotting;
pub mod render;
pub mod score;
pub mod sink;
pub mod source;
pub mod style;
#[cfg(test)]
mod testutil;
pub(crate) mod threads;
mod tractutil;
pub mod web;

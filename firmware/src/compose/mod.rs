//! `compose` stage: the compound-word transformer (int8 ONNX, run by tract with a
//! KV cache) that writes the notes of each bar under per-bar controls.
//!
//! [`Composer`] streams bar by bar: [`Composer::next_bar`] feeds a BAR token carrying the bar's
//! controls, then samples POS and NOTE tokens (grammar-masked, see [`sampler`]) until the model
//! ends the bar. The design (tokens, controls, training, window) is in `docs/design/note-model.md`.

pub mod dynquant;
pub mod matvec;
pub mod model;
pub mod sampler;
pub mod vocab;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::music::{Chord, Note, NoteSet, BEATS_PER_BAR, DENSITY_CLASSES, STRENGTH_CLASSES};
use model::{Logits, NoteModel, Past};
use sampler::{density_guard, sample, BarState, Sampling};
use vocab::*;

/// The controls the note model obeys for one bar.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BarControls {
    /// Note-density class `0..DENSITY_CLASSES`.
    pub density: u8,
    /// Note-strength class `0..STRENGTH_CLASSES`.
    pub strength: u8,
    /// A new section starts at this bar.
    pub section_start: bool,
    /// A new section starts at the next bar (or the piece ends after this one): the model may
    /// close the phrase here, as the corpus does before its double bars, repeats and fermatas.
    /// Offline the plan knows it; live it is known only when the cut is already due.
    pub next_section_start: bool,
    /// The chord the bar's notes must fit.
    pub chord: Chord,
    /// Length of the bar in beats: [`BEATS_PER_BAR`] for a whole bar, fewer when a section
    /// start cuts it short. The notes are written to fit in it, at the class's density per beat.
    #[serde(default = "whole_bar")]
    pub beats: u8,
}

fn whole_bar() -> u8 {
    BEATS_PER_BAR as u8
}

#[derive(Debug, Error)]
pub enum ComposeError {
    #[error(
        "note model {path} cannot be read ({source}); install the data folder's models/notes/ or pass --data DIR"
    )]
    ModelMissing {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "note model card {path} is missing or unreadable ({msg}); it ships next to the model in models/notes/"
    )]
    CardInvalid { path: String, msg: String },
    #[error(
        "note model {path} is {found_bytes} bytes with sha256 {found}, but its model card {card} says {expected_bytes} bytes \
         with sha256 {expected}: the file is truncated or not the released model; restore models/notes/ from the release"
    )]
    Checksum {
        path: String,
        card: String,
        found: String,
        found_bytes: u64,
        expected: String,
        expected_bytes: u64,
    },
    #[error(
        "note model {path} is not a model tract can run ({msg}); restore models/notes/ from the release"
    )]
    ModelInvalid { path: String, msg: String },
    #[error(
        "note model {path} has the wrong shape: {msg}; this firmware needs the model from tools/train/notes/export.py"
    )]
    ModelShape { path: String, msg: String },
    #[error("{control} = {value} is out of range: valid is {range}")]
    ControlOutOfRange {
        control: &'static str,
        value: u32,
        range: String,
    },
    #[error("note model {path} failed at cache length {step}: {msg}")]
    Inference {
        path: String,
        step: usize,
        msg: String,
    },
}

/// Most tokens one bar may take (BAR + POS + NOTE tokens). Above the corpus' longest bar
/// (a four-voice chorale bar of sixteenths) so the limit only stops a runaway bar.
pub const MAX_BAR_TOKENS: usize = 80;

/// Tokens of recent bars kept when the KV cache is full and the window restarts (about two to
/// four bars: enough for the motif and the phrase to go on, small enough that refilling the
/// cache costs little next to the bars written before the next restart).
pub const KEEP_TOKENS: usize = 80;

/// The note model with its KV cache and random state: writes one bar per call.
pub struct Composer {
    model: NoteModel,
    past: Past,
    /// Tokens of the bars in the current window, oldest first (what a window restart refeeds).
    window: VecDeque<Vec<Token>>,
    rng: ChaCha8Rng,
    sampling: Sampling,
    /// Single-token model calls since load, for benchmarks.
    steps: u64,
    /// Tokens fed again in window refills since load.
    refilled: u64,
    /// Tokens the sampler wrote since load (not counting refeeds), for benchmarks.
    written: u64,
    /// When recording (benchmarks): every token fed, with `true` where the cache was cleared before it.
    recorded: Option<Vec<(StepKind, Token)>>,
    /// The cache was cleared and nothing fed since.
    fresh: bool,
    /// Window restarts since load.
    restarts: u64,
    /// Keep every bar in the requested density class (see [`sampler::density_guard`]).
    density_guard: bool,
    /// Bars since the current section started (`None` before the first bar of a piece).
    section_bar: Option<i64>,
}

impl std::fmt::Debug for Composer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Composer")
            .field("model", &self.model)
            .field("sampling", &self.sampling)
            .finish()
    }
}

/// How a recorded token reached the model (benchmarks replay the same calls elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// One token on the running cache.
    Step,
    /// One token on an empty cache (after `start`).
    FirstStep,
    /// Part of one refill call on an empty cache (consecutive `Refill` tokens = one call).
    Refill,
}

/// The model file inside `models/notes/`.
pub const MODEL_FILE: &str = "notes_int8.onnx";

impl Composer {
    /// Loads and checks the model (size and sha256 from the model card `model.json` beside it;
    /// a clear error naming the file if it is missing, truncated or wrong-shaped).
    pub fn load(model_path: &Path) -> Result<Self, ComposeError> {
        Ok(Self::with_model(
            NoteModel::load(model_path)?,
            Sampling::default(),
            true,
        ))
    }

    /// A composer on `model`, before its first piece.
    fn with_model(model: NoteModel, sampling: Sampling, density_guard: bool) -> Self {
        let past = model.empty_past();
        Composer {
            model,
            past,
            window: VecDeque::new(),
            rng: ChaCha8Rng::seed_from_u64(0),
            sampling,
            steps: 0,
            refilled: 0,
            written: 0,
            recorded: None,
            fresh: true,
            restarts: 0,
            density_guard,
            section_bar: None,
        }
    }

    /// A second composer on the same loaded model (no optimisation: it shares the plans)
    /// with the same sampling settings and a cache, window and random state of its own, to
    /// write another part of a piece on another thread.
    pub fn sibling(&self) -> Result<Self, ComposeError> {
        Ok(Self::with_model(
            self.model.sibling()?,
            self.sampling,
            self.density_guard,
        ))
    }

    /// `models/notes/notes_int8.onnx` relative to a data root (repo root in dev; /usr/share/undertone on the box).
    pub fn default_model_path(data_root: &Path) -> PathBuf {
        data_root.join("models").join("notes").join(MODEL_FILE)
    }

    /// Starts a new piece (clears the KV cache), seeded. The piece may run for ever (live),
    /// so the refill plan of the window restarts is prepared now, on a thread of its own.
    pub fn start(&mut self, seed: u64) {
        self.model.prepare_refill();
        self.reset(seed);
    }

    /// Starts optimising the refill plan now, before a piece is known (see
    /// [`NoteModel::prepare_refill`]): `score` does so for a long video while it is analysed.
    pub fn prepare_refill(&mut self) {
        self.model.prepare_refill();
    }

    /// Starts a piece whose bars are all known (offline), seeded: as [`Composer::start`], but
    /// the refill plan is only prepared if these bars can fill the KV cache (a short piece
    /// never restarts its window, and optimising the plan costs as much as loading the model).
    pub fn start_piece(&mut self, seed: u64, bars: &[BarControls]) {
        if self.may_restart(bars) {
            self.model.prepare_refill();
        }
        self.reset(seed);
    }

    /// Can writing `bars` from an empty cache restart the window? Each bar takes at most its
    /// BAR token and, per note, the note and its POS (a POS is always followed by a note),
    /// with the notes capped by the density guard.
    fn may_restart(&self, bars: &[BarControls]) -> bool {
        let card = self.model.card();
        let mut past = 0;
        for c in bars {
            if past + MAX_BAR_TOKENS > card.max_len {
                return true;
            }
            let steps = usize::from(c.beats) * STEPS_PER_BAR / BEATS_PER_BAR as usize;
            let max_notes = if self.density_guard {
                density_guard(usize::from(c.density), &card.density_edges, steps).1
            } else {
                usize::MAX
            };
            past += max_notes
                .saturating_mul(2)
                .saturating_add(1)
                .min(MAX_BAR_TOKENS);
        }
        false
    }

    fn reset(&mut self, seed: u64) {
        self.past = self.model.empty_past();
        self.fresh = true;
        self.window.clear();
        self.section_bar = None;
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Starts (or stops) recording every token fed to the model, so a benchmark can replay the
    /// exact same steps through another runtime.
    pub fn record_steps(&mut self, on: bool) {
        self.recorded = on.then(Vec::new);
    }

    /// The recorded steps.
    pub fn take_recorded(&mut self) -> Vec<(StepKind, Token)> {
        self.recorded
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Changes temperature / top-p from the next token on.
    pub fn set_sampling(&mut self, sampling: Sampling) {
        self.sampling = sampling;
    }

    pub fn model(&self) -> &NoteModel {
        &self.model
    }

    /// Turns the density guard on (the default) or off (to measure the learned control alone).
    pub fn set_density_guard(&mut self, on: bool) {
        self.density_guard = on;
    }

    /// Tokens in the KV cache.
    pub fn past_len(&self) -> usize {
        NoteModel::past_len(&self.past)
    }

    /// Window restarts (cache refills) since load.
    pub fn window_restarts(&self) -> u64 {
        self.restarts
    }

    /// (single-token model calls, tokens refilled, tokens sampled) since load.
    pub fn token_counts(&self) -> (u64, u64, u64) {
        (self.steps, self.refilled, self.written)
    }

    /// Checks controls against the model's vocabulary.
    pub fn check_controls(controls: &BarControls) -> Result<(), ComposeError> {
        let bad = |control, value: u8, n: u8| ComposeError::ControlOutOfRange {
            control,
            value: u32::from(value),
            range: format!("0..={}", n - 1),
        };
        if controls.density >= DENSITY_CLASSES {
            return Err(bad("density", controls.density, DENSITY_CLASSES));
        }
        if controls.strength >= STRENGTH_CLASSES {
            return Err(bad("strength", controls.strength, STRENGTH_CLASSES));
        }
        if controls.chord.root >= 12 {
            return Err(bad("chord root", controls.chord.root, 12));
        }
        if controls.beats == 0 || u32::from(controls.beats) > BEATS_PER_BAR {
            return Err(ComposeError::ControlOutOfRange {
                control: "beats",
                value: u32::from(controls.beats),
                range: format!("1..={BEATS_PER_BAR}"),
            });
        }
        Ok(())
    }

    fn feed(&mut self, token: Token) -> Result<Logits, ComposeError> {
        let past = std::mem::take(&mut self.past);
        let (logits, present) = match self.model.step(&token, past) {
            Ok(r) => r,
            Err(e) => {
                // the cache was consumed: start the next bar from an empty one
                self.past = self.model.empty_past();
                self.window.clear();
                self.fresh = true;
                return Err(e);
            }
        };
        self.past = present;
        self.steps += 1;
        if let Some(r) = self.recorded.as_mut() {
            r.push((
                if self.fresh {
                    StepKind::FirstStep
                } else {
                    StepKind::Step
                },
                token,
            ));
        }
        self.fresh = false;
        Ok(logits)
    }

    /// Restarts the window from the most recent bars that fit in [`KEEP_TOKENS`]: the cache is
    /// cleared and their tokens are fed again from position 0 (the model was trained on crops
    /// that start at any bar, so a window that starts mid-piece is what it knows).
    fn restart_window(&mut self) -> Result<(), ComposeError> {
        let mut kept = 0;
        let mut total = 0;
        for bar in self.window.iter().rev() {
            if total + bar.len() > KEEP_TOKENS {
                break;
            }
            total += bar.len();
            kept += 1;
        }
        let drop = self.window.len() - kept;
        self.window.drain(..drop);
        let tokens: Vec<Token> = self.window.iter().flatten().copied().collect();
        self.past = self.model.empty_past();
        if !tokens.is_empty() {
            // One call for the whole refill: tract runs it as matrix products, an order of
            // magnitude faster than feeding the tokens one by one.
            let (_, present) = self.model.refill(&tokens)?;
            self.past = present;
            self.refilled += tokens.len() as u64;
            if let Some(r) = self.recorded.as_mut() {
                r.extend(tokens.iter().map(|t| (StepKind::Refill, *t)));
            }
        }
        self.fresh = self.past_len() == 0;
        self.restarts += 1;
        tracing::debug!(bars = kept, tokens = total, "note model window restarted");
        Ok(())
    }

    /// Writes the notes of the next bar under these controls (rejects out-of-range controls with the valid range).
    pub fn next_bar(&mut self, bar: u32, controls: &BarControls) -> Result<NoteSet, ComposeError> {
        Self::check_controls(controls)?;
        let max_len = self.model.card().max_len;
        if self.past_len() + MAX_BAR_TOKENS > max_len {
            self.restart_window()?;
        }
        // A piece's first bar opens a section, as in the corpus.
        let section_bar = match self.section_bar {
            Some(k) if !controls.section_start => k + 1,
            _ => 0,
        };
        self.section_bar = Some(section_bar);
        let ctrl = [
            i64::from(controls.density),
            i64::from(controls.strength),
            i64::from(controls.section_start || section_bar == 0),
            chord_id(&controls.chord),
            i64::from(controls.next_section_start),
            section_bar.min(SECTION_BAR_MAX),
        ];
        let token = |family: i64, pos: i64, note: [i64; 4], count: usize| -> Token {
            [
                family,
                pos,
                ctrl[0],
                ctrl[1],
                ctrl[2],
                ctrl[3],
                note[0],
                note[1],
                note[2],
                note[3],
                (count as i64).min(MAX_COUNT),
                ctrl[4],
                ctrl[5],
            ]
        };
        let none_note = [NONE_PITCH, NONE_DUR, NONE_NSTR, NONE_TRACK];
        let mut tokens = vec![token(T_BAR, NONE_POS, none_note, 0)];
        let mut logits = self.feed(tokens[0])?;
        // A short bar offers only its own onsets; the notes must fit in it.
        let steps = usize::from(controls.beats) * STEPS_PER_BAR / BEATS_PER_BAR as usize;
        let end_tick = steps as u32 * TICKS_PER_STEP;
        let (min_notes, max_notes) = if self.density_guard {
            density_guard(
                usize::from(controls.density),
                &self.model.card().density_edges,
                steps,
            )
        } else {
            (0, usize::MAX)
        };
        let mut st = BarState {
            steps,
            tokens: 1,
            min_notes,
            max_notes,
            ..Default::default()
        };
        let mut notes = Vec::new();
        let s = self.sampling;
        loop {
            let family = sample(
                &logits.family,
                &st.family_mask(MAX_BAR_TOKENS),
                s,
                &mut self.rng,
            );
            let t = match family as i64 {
                T_POS => {
                    let pos = sample(&logits.pos, &st.pos_mask(), s, &mut self.rng);
                    let t = token(T_POS, pos as i64, none_note, st.notes);
                    st.on_pos(pos);
                    t
                }
                T_NOTE => {
                    let pos = st.pos.expect("grammar: a NOTE follows a POS");
                    let track = sample(&logits.track, &st.track_mask(), s, &mut self.rng);
                    let row = &logits.pitch[track * N_PITCH..(track + 1) * N_PITCH];
                    let pitch = sample(row, &st.pitch_mask(track), s, &mut self.rng);
                    let dur = sample(
                        &logits.duration,
                        &BarState::all(MAX_DUR16),
                        s,
                        &mut self.rng,
                    );
                    let ns = sample(
                        &logits.note_strength,
                        &BarState::all(NOTE_STRENGTH_CLASSES),
                        s,
                        &mut self.rng,
                    );
                    let t = token(
                        T_NOTE,
                        pos as i64,
                        [pitch as i64, dur as i64, ns as i64, track as i64],
                        st.notes,
                    );
                    notes.push(Note {
                        start: pos as u32 * TICKS_PER_STEP,
                        // a note of a short bar rings to its end at most
                        duration: ((dur as u32 + 1) * TICKS_PER_STEP)
                            .min(end_tick - pos as u32 * TICKS_PER_STEP),
                        pitch: pitch as u8,
                        velocity: velocity(controls.strength, ns as u8),
                        track: track as u8,
                    });
                    st.on_note(track, pitch);
                    t
                }
                _ => break, // the model ends the bar; the next call feeds the next BAR token
            };
            self.written += 1;
            tokens.push(t);
            logits = self.feed(t)?;
        }
        self.written += 1; // the bar-end decision
        self.window.push_back(tokens);
        Ok(NoteSet {
            bar,
            chord: controls.chord,
            notes,
        })
    }
}

#[cfg(test)]
mod tests;

//! The running engine's control surface: what the web page, the GPIO button and the report
//! read from the engine, and what they may ask of it.
//!
//! One [`Control`] is shared (`Arc`) between the engine's worker thread (the only writer of
//! the status, the series and the snapshot; the only reader of commands) and any number of
//! readers (web handlers, the button task). Every lock here is held for a copy and nothing
//! else, and none is ever touched by the real-time audio thread.
//!
//! Data flow stays one-way: the engine publishes what it did; the outside world queues
//! [`Command`]s, which the engine drains at each bar boundary and applies from the next bar
//! it plans (never to audio already in the ring).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::live::config::Config;
use crate::live::device::DeviceState;
use crate::music::Preferences;
use crate::score::refine::RefineOption;

/// Feature points kept for the live plot: 60 s at 30 fps.
pub const FEATURE_HISTORY: usize = 1800;
/// Bars kept for the live plot and the dashboard (several minutes at any tempo).
pub const BAR_HISTORY: usize = 256;
/// Commands waiting for the next bar; more than this is a misbehaving client.
pub const MAX_PENDING_COMMANDS: usize = 64;

/// What someone asks of the running engine. Applied from the next bar the engine plans.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Keep the current music: remembered as liked (the undo history is cleared).
    Like,
    /// The user dislikes what plays: the engine publishes the options that fit (in
    /// [`Status::options`]) and keeps playing until one is chosen.
    Dislike,
    /// Apply one refinement option from the next bar.
    Apply(RefineOption),
    /// Return to the preferences before the last applied option.
    Undo,
    /// New music preferences (the settings page), from the next bar.
    SetPreferences(Preferences),
    /// Output gain in dB (≤ 0), applied by the engine before the ring.
    SetVolumeDb(f32),
    /// A whole new configuration, already validated and saved by the caller: the engine
    /// applies what it can live (music, volume) and reopens devices whose settings changed.
    Reconfigure(Box<Config>),
    /// The template library on disk changed (a template was uploaded or deleted): reload
    /// it and use the new one from the next section.
    ReloadTemplates,
}

/// Why a command was not queued.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ControlError {
    #[error(
        "the engine has {MAX_PENDING_COMMANDS} commands waiting; try again after the next bar"
    )]
    Busy,
}

/// The dashboard's view of the engine, rewritten by the engine at every bar and on every
/// device state change.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Bars played since the start (the bar now reaching the PCM).
    pub bar: u64,
    /// Section index of that bar (a new section starts at each scene cut).
    pub section: u32,
    pub tempo_bpm: f64,
    /// Style now playing: genre, mood, instrument, key, template id.
    pub genre: String,
    pub mood: String,
    pub instrument: String,
    pub key: String,
    pub template: String,
    /// Control classes of the bar now playing.
    pub density_class: u8,
    pub strength_class: u8,
    /// Energy 0..=1 of the bar now playing.
    pub energy: f32,
    /// Audio level of the bar now playing, dBFS (RMS and peak).
    pub level_rms_dbfs: f32,
    pub level_peak_dbfs: f32,
    pub camera: DeviceState,
    pub audio: DeviceState,
    pub underruns: u64,
    /// Audio queued ahead of the PCM, ms.
    pub headroom_ms: f64,
    /// Frames per second seen from the camera over the last second.
    pub fps: f64,
    /// The preferences in force (after every applied option).
    pub preferences: Preferences,
    /// True after a dislike, until an option is applied or the music is liked.
    pub disliked: bool,
    /// Options that fit the music now playing (the refine page lists these).
    pub options: Vec<String>,
    /// How many applied options `Undo` can take back.
    pub undo_depth: usize,
    /// Output gain, dB.
    pub volume_db: f32,
    /// Seconds since the engine started.
    pub uptime_s: f64,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            bar: 0,
            section: 0,
            tempo_bpm: 0.0,
            genre: String::new(),
            mood: String::new(),
            instrument: String::new(),
            key: String::new(),
            template: String::new(),
            density_class: 0,
            strength_class: 0,
            energy: 0.0,
            level_rms_dbfs: f32::NEG_INFINITY,
            level_peak_dbfs: f32::NEG_INFINITY,
            camera: DeviceState::Missing,
            audio: DeviceState::Missing,
            underruns: 0,
            headroom_ms: 0.0,
            fps: 0.0,
            preferences: Preferences::default(),
            disliked: false,
            options: Vec::new(),
            undo_depth: 0,
            volume_db: 0.0,
            uptime_s: 0.0,
        }
    }
}

/// One analysed camera frame, for the live plot.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct FeaturePoint {
    /// Order of publication (set by [`Control::push_feature`]). A cut is published after the
    /// frames that confirmed it, with its own earlier `t`, so readers resume by `seq`.
    pub seq: u64,
    /// Seconds on the master (audio) clock since the engine started.
    pub t: f64,
    /// Motion speed, frame diagonals per second.
    pub speed: f32,
    /// Motion saliency 0..=1.
    pub saliency: f32,
    /// Scene-transition probability 0..=1.
    pub cut_prob: f32,
    /// A transition was detected at this frame.
    pub cut: bool,
}

/// One planned bar, for the live plot.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct BarPoint {
    /// Order of publication (set by [`Control::push_bar`]). A cut withdraws bars planned
    /// ahead; their replacements reuse the indices and start earlier than bars already sent.
    pub seq: u64,
    pub bar: u64,
    /// Start of the bar on the master clock, seconds since the engine started.
    pub t: f64,
    pub section: u32,
    /// This bar starts a section.
    pub section_start: bool,
    pub density_class: u8,
    pub strength_class: u8,
    /// Melody notes composed for this bar.
    pub notes: u32,
}

/// The latest camera frame at analysis size (luma), for the dashboard's snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Seconds on the master clock.
    pub t: f64,
    pub width: u32,
    pub height: u32,
    /// Row-major luma, `width * height` bytes.
    pub gray: Vec<u8>,
}

/// Shared between the engine (writer) and its readers.
#[derive(Debug, Default)]
pub struct Control {
    status: Mutex<Status>,
    /// Kept points, and the last `seq` given out.
    features: Mutex<(VecDeque<FeaturePoint>, u64)>,
    /// Kept bars, and the last `seq` given out.
    bars: Mutex<(VecDeque<BarPoint>, u64)>,
    snapshot: Mutex<Option<Snapshot>>,
    commands: Mutex<VecDeque<Command>>,
    /// Bumped at every status change, so pollers can skip unchanged states.
    version: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking holder leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Control {
    pub fn new() -> Self {
        Self::default()
    }

    // ---- readers ----

    /// A copy of the current status.
    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// Changes every time the engine publishes something new.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Feature points with `t` after `since` (all kept ones for `f64::NEG_INFINITY`).
    pub fn features_since(&self, since: f64) -> Vec<FeaturePoint> {
        lock(&self.features)
            .0
            .iter()
            .filter(|p| p.t > since)
            .copied()
            .collect()
    }

    /// Feature points published after the one numbered `seq` (all kept ones for 0), in
    /// publication order.
    pub fn features_after(&self, seq: u64) -> Vec<FeaturePoint> {
        lock(&self.features)
            .0
            .iter()
            .filter(|p| p.seq > seq)
            .copied()
            .collect()
    }

    /// Bars that start after `since`.
    pub fn bars_since(&self, since: f64) -> Vec<BarPoint> {
        lock(&self.bars)
            .0
            .iter()
            .filter(|p| p.t > since)
            .copied()
            .collect()
    }

    /// Bars published after the one numbered `seq`, in publication order (a reader drops
    /// the bars it holds from each one's index on, as [`Control::push_bar`] does).
    pub fn bars_after(&self, seq: u64) -> Vec<BarPoint> {
        lock(&self.bars)
            .0
            .iter()
            .filter(|p| p.seq > seq)
            .copied()
            .collect()
    }

    /// The latest camera frame, if the camera has delivered one.
    pub fn snapshot(&self) -> Option<Snapshot> {
        lock(&self.snapshot).clone()
    }

    /// Queues a command for the engine's next bar.
    pub fn send(&self, cmd: Command) -> Result<(), ControlError> {
        let mut q = lock(&self.commands);
        if q.len() >= MAX_PENDING_COMMANDS {
            return Err(ControlError::Busy);
        }
        q.push_back(cmd);
        Ok(())
    }

    // ---- the engine (the only writer) ----

    /// Edits the status in place.
    pub fn update_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut lock(&self.status));
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Publishes a point; its `seq` is assigned here.
    pub fn push_feature(&self, mut p: FeaturePoint) {
        let mut g = lock(&self.features);
        let (q, last) = &mut *g;
        *last += 1;
        p.seq = *last;
        if q.len() == FEATURE_HISTORY {
            q.pop_front();
        }
        q.push_back(p);
    }

    /// Publishes a bar; its `seq` is assigned here. A bar whose index was published before
    /// replaces it and every later one (they were withdrawn by a cut).
    pub fn push_bar(&self, mut p: BarPoint) {
        let mut g = lock(&self.bars);
        let (q, last) = &mut *g;
        *last += 1;
        p.seq = *last;
        while q.back().is_some_and(|b| b.bar >= p.bar) {
            q.pop_back();
        }
        if q.len() == BAR_HISTORY {
            q.pop_front();
        }
        q.push_back(p);
        drop(g);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    pub fn set_snapshot(&self, s: Snapshot) {
        *lock(&self.snapshot) = Some(s);
    }

    /// Takes every waiting command, oldest first.
    pub fn drain_commands(&self) -> Vec<Command> {
        lock(&self.commands).drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_come_out_in_order_and_the_queue_is_bounded() {
        let c = Control::new();
        c.send(Command::Dislike).unwrap();
        c.send(Command::Apply(RefineOption::Calmer)).unwrap();
        assert_eq!(
            c.drain_commands(),
            vec![Command::Dislike, Command::Apply(RefineOption::Calmer)]
        );
        for _ in 0..MAX_PENDING_COMMANDS {
            c.send(Command::Like).unwrap();
        }
        assert_eq!(c.send(Command::Like), Err(ControlError::Busy));
        assert_eq!(c.drain_commands().len(), MAX_PENDING_COMMANDS);
        assert!(c.drain_commands().is_empty());
    }

    #[test]
    fn histories_keep_the_newest_points() {
        let c = Control::new();
        for i in 0..FEATURE_HISTORY + 10 {
            c.push_feature(FeaturePoint {
                seq: 0,
                t: i as f64,
                speed: 0.0,
                saliency: 0.0,
                cut_prob: 0.0,
                cut: false,
            });
        }
        let all = c.features_since(f64::NEG_INFINITY);
        assert_eq!(all.len(), FEATURE_HISTORY);
        assert_eq!(all[0].t, 10.0);
        assert_eq!(c.features_since((FEATURE_HISTORY + 7) as f64).len(), 2);
        // A cut published late, with an earlier time, still reaches a reader that resumes
        // from the last point it saw.
        let seen = all.last().unwrap().seq;
        c.push_feature(FeaturePoint {
            seq: 0,
            t: 20.0,
            speed: 0.0,
            saliency: 0.0,
            cut_prob: 0.9,
            cut: true,
        });
        let new = c.features_after(seen);
        assert_eq!(new.len(), 1);
        assert!(new[0].cut && new[0].seq == seen + 1);
        // Bars 0..4 planned ahead; a cut withdraws 2 and 3 and replans 2 earlier: the
        // history and a reader that resumes by seq both see the replacement.
        let bar = |i: u64, t: f64| BarPoint {
            seq: 0,
            bar: i,
            t,
            section: 0,
            section_start: false,
            density_class: 0,
            strength_class: 0,
            notes: 0,
        };
        for i in 0..4 {
            c.push_bar(bar(i, i as f64 * 2.4));
        }
        let seen = c.bars_after(0).last().unwrap().seq;
        c.push_bar(BarPoint {
            section_start: true,
            ..bar(2, 5.0)
        });
        let new = c.bars_after(seen);
        assert!(new.len() == 1 && new[0].section_start && new[0].t == 5.0);
        let kept: Vec<u64> = c
            .bars_since(f64::NEG_INFINITY)
            .iter()
            .map(|b| b.bar)
            .collect();
        assert_eq!(kept, vec![0, 1, 2]);
        let v0 = c.version();
        c.update_status(|s| s.bar = 3);
        assert_eq!(c.status().bar, 3);
        assert!(c.version() > v0);
    }
}

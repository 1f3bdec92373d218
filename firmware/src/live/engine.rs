//! The live music engine: live planner → note model → renderer → leveler → audio queue,
//! on its own worker thread, with a feeder thread between its queue and the ALSA ring.
//!
//! ```text
//! run loop ──Input (features, cuts, camera state)──► music thread ──bars of PCM──► Pending ──feeder──► ALSA ring ──► playback thread
//!                                                     (plan, compose,               (truncatable)  (5 ms tick)
//!                                                      style, render, level)
//! ```
//!
//! Why two queues: a rendered bar is 1–3 s of audio, but a cut must reach the speakers
//! within a beat. The music thread renders whole bars one bar + one period ahead of the
//! listener into [`Pending`], which it may still cut short; the feeder moves audio from
//! there into the ALSA ring only as the ring drains, so just `audio_buffer_ms` (plus the
//! device's 85 ms) is ever out of reach. A cut truncates `Pending` at the new section's start
//! (with a short fade) and the planner re-plans from there.
//!
//! The master clock is the stream frame index: frame `n` of the stream is heard when
//! `PlaybackStatus::position()` reaches `n` (see `docs/design/live.md`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::compose::{BarControls, Composer};
use crate::live::control::{BarPoint, Command, Control};
use crate::live::device::DeviceState;
use crate::live::level::Leveler;
use crate::live::metrics::Metrics;
use crate::music::{Genre, Instrument, NoteSet, Preferences, CHANNELS, SAMPLE_RATE};
use crate::plan::live::{CutDecision, LivePlanner};
use crate::plan::BarPlan;
use crate::render::{self, Library, Renderer};
use crate::score::refine::{self, RefineOption};
use crate::sink::alsa::{AlsaSink, PlaybackStatus, PERIOD_FRAMES};
use crate::sink::{Sink, SinkError, WavSink};
use crate::style::{self, StyleVector};

const CH: usize = CHANNELS as usize;
/// The feeder's tick: far below the ring (≥ 100 ms) and the device buffer (85 ms), so the
/// ring is topped up long before it drains; 200 wakeups/s cost nothing measurable.
const FEED_TICK: Duration = Duration::from_millis(5);
/// SCHED_FIFO priority of the feeder where allowed: below the playback thread (40).
const FEED_PRIORITY: i32 = 30;
/// SCHED_FIFO priority of the music thread where allowed, below the feeder: rendering a bar
/// is bounded work (tens of ms per bar of seconds), and at normal priority a busy box (a
/// build, another service) can delay it past the lookahead and the ring runs dry.
const MUSIC_PRIORITY: i32 = 20;
/// Bars rendered ahead of the listener (plus one period): two, so one slow bar (a window
/// restart of the note model, a template decode at a section start, a busy box) never
/// empties the queue; a cut still changes the next beat (the queue is cut short).
const LOOKAHEAD_BARS: f64 = 2.0;
/// Fade at the end of audio cut short by a scene cut (10 ms: no click, still on the beat).
/// The section start is never placed closer than this to the queued audio.
const CUT_FADE_FRAMES: usize = SAMPLE_RATE as usize / 100;
/// How long the music thread waits for input when it has nothing to render.
const IDLE_WAIT: Duration = Duration::from_millis(10);
/// The report keeps this many of the most recent bars and cuts (a day-long run plays
/// ~36,000 bars); totals are counted.
pub const LOG_MAX_BARS: usize = 2000;
pub const LOG_MAX_CUTS: usize = 1000;
pub const LOG_MAX_COMMANDS: usize = 200;
/// Golden-ratio step from the seed to a "new melody" seed (as `score`).
const MELODY_SEED_STEP: u64 = 0x9E37_79B9_7F4A_7C15;
/// Undo history depth.
const MAX_UNDO: usize = 32;

fn frame_of(seconds: f64) -> u64 {
    (seconds.max(0.0) * SAMPLE_RATE as f64).round() as u64
}

fn secs(frames: u64) -> f64 {
    frames as f64 / SAMPLE_RATE as f64
}

/// Rendered audio not yet handed to the ALSA ring: the part of the plan a cut can still change.
#[derive(Debug, Default)]
pub struct Pending {
    pcm: VecDeque<f32>,
    /// Stream frames already moved into the ring (the frame index of `pcm[0]`).
    committed: u64,
    /// Bar starts not yet heard: (stream frame, bar index).
    marks: VecDeque<(u64, u32)>,
    /// Bars whose first frame the listener has reached: (bar index, position then).
    heard: Vec<(u32, u64)>,
}

impl Pending {
    /// Stream frame just after the last rendered one.
    pub fn end_frame(&self) -> u64 {
        self.committed + (self.pcm.len() / CH) as u64
    }
}

/// State shared by the music thread, the feeder and the run loop.
#[derive(Debug)]
pub struct Shared {
    pub pending: Mutex<Pending>,
    /// Output gain (linear, f32 bits), applied by the feeder with a ramp.
    volume: AtomicU32,
    /// Headroom (ring + device) last seen by the feeder, frames; and the lowest while playing.
    pub headroom_frames: AtomicU64,
    pub headroom_min_frames: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            volume: AtomicU32::new(1.0f32.to_bits()),
            headroom_frames: AtomicU64::new(0),
            headroom_min_frames: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_volume_db(&self, db: f32) {
        let g = 10f32.powf(db.min(0.0) / 20.0);
        self.volume.store(g.to_bits(), Ordering::Relaxed);
    }
}

/// Moves audio from [`Pending`] into the ALSA ring as it drains (and into the recording).
pub struct Feeder {
    thread: Option<JoinHandle<Result<(AlsaSink, Option<WavSink>), SinkError>>>,
    shared: Arc<Shared>,
}

impl Feeder {
    pub fn start(
        mut sink: AlsaSink,
        mut record: Option<WavSink>,
        shared: Arc<Shared>,
        realtime: bool,
    ) -> std::io::Result<Feeder> {
        let sh = shared.clone();
        let status = sink.status();
        let thread = std::thread::Builder::new()
            .name("feeder".into())
            .spawn(move || {
                if realtime {
                    if let Err(e) = crate::sink::alsa::promote_current_thread(FEED_PRIORITY) {
                        tracing::warn!(
                            error = %std::io::Error::from_raw_os_error(e),
                            "feeder thread stays at normal priority"
                        );
                    }
                }
                let mut buf: Vec<f32> = Vec::with_capacity(sink.free_samples() + CH);
                let mut gain = f32::from_bits(sh.volume.load(Ordering::Relaxed));
                while !sh.stop.load(Ordering::Acquire) {
                    let free = sink.free_samples() / CH * CH;
                    buf.clear();
                    {
                        let mut p = sh.lock();
                        let n = free.min(p.pcm.len());
                        buf.extend(p.pcm.drain(..n));
                        p.committed += (n / CH) as u64;
                        let pos = status.position();
                        while p.marks.front().is_some_and(|&(f, _)| f <= pos) {
                            let (_, bar) = p.marks.pop_front().expect("front");
                            p.heard.push((bar, pos));
                        }
                    }
                    if !buf.is_empty() {
                        let target = f32::from_bits(sh.volume.load(Ordering::Relaxed));
                        let frames = buf.len() / CH;
                        for (i, fr) in buf.chunks_exact_mut(CH).enumerate() {
                            let g = gain + (target - gain) * (i + 1) as f32 / frames as f32;
                            fr.iter_mut().for_each(|s| *s *= g);
                        }
                        gain = target;
                        sink.write(&buf)?;
                        if let Some(r) = record.as_mut() {
                            r.write(&buf)?;
                        }
                    }
                    let head = sink.headroom_frames();
                    sh.headroom_frames.store(head, Ordering::Relaxed);
                    if status.position() > 0 && status.state() == DeviceState::Running {
                        sh.headroom_min_frames.fetch_min(head, Ordering::Relaxed);
                    }
                    std::thread::sleep(FEED_TICK);
                }
                Ok((sink, record))
            })?;
        Ok(Feeder {
            thread: Some(thread),
            shared,
        })
    }

    /// The feeder ended on its own: the audio sink failed (its error comes from `stop`).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops feeding and gives the sink and the recording back (for a clean stop).
    pub fn stop(mut self) -> Result<(AlsaSink, Option<WavSink>), SinkError> {
        self.shared.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .expect("feeder thread")
            .join()
            .unwrap_or(Err(SinkError::Stopped))
    }
}

/// What the run loop tells the music thread.
#[derive(Debug, Clone)]
pub enum Input {
    /// Features of one analysed frame at master-clock time `t` (seconds).
    Frame { t: f64, speed: f32, saliency: f32 },
    /// A scene cut: its video pts, its master-clock time, and the master-clock time it was
    /// detected at.
    Cut { pts: f64, t: f64, detected: f64 },
    /// The camera's state changed.
    Camera(DeviceState),
}

/// One bar in the report.
#[derive(Debug, Clone, Serialize)]
pub struct BarEntry {
    pub index: u32,
    /// Start and end on the master clock, seconds (the stream's frame / 48,000).
    pub start: f64,
    pub end: f64,
    pub beats: u8,
    pub tempo_bpm: f64,
    pub section: u32,
    pub section_start: bool,
    pub density_class: u8,
    pub strength_class: u8,
    pub energy: f32,
    pub speed: f32,
    pub saliency: f32,
    /// Calm fallback (camera not running).
    pub fallback: bool,
    /// Written as its name (`Am`); kept as a value so a log entry holds no heap memory.
    #[serde(serialize_with = "chord_name")]
    pub chord: crate::music::Chord,
    pub notes: usize,
    pub mean_velocity: f32,
    /// Shared with every other bar of that template (see [`Worker::template_id`]).
    #[serde(serialize_with = "shared_str")]
    pub template: Arc<str>,
    pub layer: u8,
    pub join: bool,
    /// Level of the bar as queued, dBFS.
    pub rms_dbfs: f32,
    pub peak_dbfs: f32,
    /// Cut short by a scene cut after it was rendered.
    pub truncated: bool,
    /// Master clock when its first frame was heard (position reached its start).
    pub heard_at: Option<f64>,
}

fn shared_str<S: serde::Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

fn chord_name<S: serde::Serializer>(c: &crate::music::Chord, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&c.name())
}

/// A deque of `n` entries whose memory is allocated and written now, so that filling it
/// over a run of days does not grow the resident size (RSS growth is the soak's leak
/// signal).
fn pretouched<T: Clone>(n: usize, zero: T) -> VecDeque<T> {
    let mut d = VecDeque::with_capacity(n);
    d.extend(std::iter::repeat_n(zero, n));
    d.clear();
    d
}

impl BarEntry {
    /// The zero entry [`pretouched`] writes the log's memory with (never reported).
    fn zero() -> BarEntry {
        BarEntry {
            index: 0,
            start: 0.0,
            end: 0.0,
            beats: 0,
            tempo_bpm: 0.0,
            section: 0,
            section_start: false,
            density_class: 0,
            strength_class: 0,
            energy: 0.0,
            speed: 0.0,
            saliency: 0.0,
            fallback: false,
            chord: crate::music::PROGRESSIONS[0].chords[0],
            notes: 0,
            mean_velocity: 0.0,
            template: Arc::from(""),
            layer: 0,
            join: false,
            rms_dbfs: 0.0,
            peak_dbfs: 0.0,
            truncated: false,
            heard_at: None,
        }
    }
}

/// One detected cut in the report.
#[derive(Debug, Clone, Serialize)]
pub struct CutEntry {
    /// Video timestamp of the first frame of the new shot.
    pub pts: f64,
    /// The cut on the master clock, seconds.
    pub t: f64,
    /// When extraction reported it (master clock).
    pub detected_at: f64,
    /// Audio before this was already queued for the device when the cut was known.
    pub queued_until: f64,
    /// Where the planner put the section start, and whether on the running beat grid.
    pub section_at: f64,
    pub on_grid: bool,
    /// Bar that started the section (the one planned for this cut, or a later cut's that
    /// replaced it), once it reached the PCM.
    pub section_bar: Option<u32>,
    /// Master clock when the section's first frame reached the PCM (position ≥ its start).
    pub reached_pcm_at: Option<f64>,
    /// `reached_pcm_at − t`, seconds.
    pub reaction: Option<f64>,
    /// The budget: one beat + 100 ms.
    pub budget: f64,
}

impl CutEntry {
    /// The zero entry [`pretouched`] writes the log's memory with (never reported).
    fn zero() -> CutEntry {
        CutEntry {
            pts: 0.0,
            t: 0.0,
            detected_at: 0.0,
            queued_until: 0.0,
            section_at: 0.0,
            on_grid: false,
            section_bar: None,
            reached_pcm_at: None,
            reaction: None,
            budget: 0.0,
        }
    }
}

/// One command applied.
#[derive(Debug, Clone, Serialize)]
pub struct CommandEntry {
    /// Master clock when applied (the start of the first bar it affects).
    pub t: f64,
    pub bar: u32,
    pub command: String,
}

/// The music part of the run report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EngineLog {
    pub tempo_bpm: f64,
    /// Seconds from the engine's start until its renderer / note model / extractor were ready.
    pub renderer_ready_s: Option<f64>,
    pub composer_ready_s: Option<f64>,
    pub bars_total: u64,
    pub sections_total: u64,
    pub bars: VecDeque<BarEntry>,
    pub cuts_total: u64,
    pub cuts: VecDeque<CutEntry>,
    pub commands: VecDeque<CommandEntry>,
    /// Last error of a music stage (the engine plays silence for that bar and goes on).
    pub last_error: Option<String>,
    pub errors: u64,
}

/// What the engine starts from.
#[derive(Debug, Clone)]
pub struct EngineSetup {
    pub data_root: PathBuf,
    /// The user's uploaded templates (`<data>/templates`), merged into the shipped library
    /// at start and on [`Command::ReloadTemplates`].
    pub user_templates: Option<PathBuf>,
    pub prefs: Preferences,
    /// Run the music thread at real-time priority where allowed (`realtime_audio`).
    pub realtime: bool,
}

/// The running music thread.
pub struct Engine {
    tx: Sender<Input>,
    thread: Option<JoinHandle<()>>,
    pub log: Arc<Mutex<EngineLog>>,
    stop: Arc<AtomicBool>,
}

impl Engine {
    /// Starts the music thread; models and templates load on their own threads meanwhile.
    pub fn start(
        setup: EngineSetup,
        shared: Arc<Shared>,
        status: Arc<PlaybackStatus>,
        control: Arc<Control>,
        metrics: Arc<Metrics>,
    ) -> Result<Engine, crate::plan::PlanError> {
        let planner = LivePlanner::new(setup.prefs.clone(), 0.0)?;
        let (tx, rx) = std::sync::mpsc::channel();
        // The report's history is allocated whole up front: a run of days keeps the same
        // memory from its first minute on (RSS growth is a failure signal on the box).
        let log = Arc::new(Mutex::new(EngineLog {
            tempo_bpm: planner.tempo_bpm(),
            bars: pretouched(LOG_MAX_BARS + 1, BarEntry::zero()),
            cuts: pretouched(LOG_MAX_CUTS + 1, CutEntry::zero()),
            commands: VecDeque::with_capacity(LOG_MAX_COMMANDS + 1),
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let realtime = setup.realtime;
        let loaders = Loaders::start(&setup.data_root, setup.user_templates.clone());
        let mut w = Worker {
            rx,
            planner,
            loaders,
            renderer: None,
            font: None,
            composer: None,
            next_renderer: None,
            leveler: Leveler::new(),
            prefs: setup.prefs.clone(),
            undo: Vec::new(),
            piece: None,
            style: None,
            restyle: false,
            camera_running: false,
            shared,
            status,
            control,
            metrics,
            log: log.clone(),
            stop: stop.clone(),
            started: Instant::now(),
            buf: Vec::new(),
            recent_energy: VecDeque::new(),
            recent_density: VecDeque::new(),
            template_ids: Vec::new(),
            data_root: setup.data_root,
            user_templates: setup.user_templates,
        };
        let thread = std::thread::Builder::new()
            .name("music".into())
            .spawn(move || {
                if realtime {
                    if let Err(e) = crate::sink::alsa::promote_current_thread(MUSIC_PRIORITY) {
                        tracing::warn!(
                            error = %std::io::Error::from_raw_os_error(e),
                            "music thread stays at normal priority"
                        );
                    }
                }
                w.run()
            })
            .expect("spawn the music thread");
        Ok(Engine {
            tx,
            thread: Some(thread),
            log,
            stop,
        })
    }

    pub fn send(&self, input: Input) {
        let _ = self.tx.send(input);
    }

    /// A copy of the music log (for the report).
    pub fn log(&self) -> EngineLog {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the music log in place (the periodic report serialises it without a copy).
    pub fn with_log<R>(&self, f: impl FnOnce(&EngineLog) -> R) -> R {
        f(&self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The music stages loading in parallel (cold start: the renderer is needed for the first
/// sound, the note model for the first melody — bars before it are played without one).
struct Loaders {
    #[allow(clippy::type_complexity)]
    renderer:
        Option<JoinHandle<Result<(Renderer, Arc<rustysynth::SoundFont>, Option<String>), String>>>,
    composer: Option<JoinHandle<Result<Composer, String>>>,
}

impl Loaders {
    fn start(data_root: &Path, user_templates: Option<PathBuf>) -> Loaders {
        let root = data_root.to_path_buf();
        let renderer = std::thread::Builder::new()
            .name("load-renderer".into())
            .spawn(move || {
                let (lib, user_error) =
                    load_library(&root, user_templates.as_deref()).map_err(|e| e.to_string())?;
                let font = render::synth::load_soundfont(&render::default_soundfont_path(&root))
                    .map_err(|e| e.to_string())?;
                let r = Renderer::with_font(lib, &font).map_err(|e| e.to_string())?;
                Ok((r, font, user_error))
            })
            .expect("spawn loader");
        let root = data_root.to_path_buf();
        let composer = std::thread::Builder::new()
            .name("load-composer".into())
            .spawn(move || {
                Composer::load(&Composer::default_model_path(&root)).map_err(|e| e.to_string())
            })
            .expect("spawn loader");
        Loaders {
            renderer: Some(renderer),
            composer: Some(composer),
        }
    }
}

/// The shipped template library with the user's uploads merged in. A user library that
/// does not load is left out — the shipped one still plays — and its error is returned
/// beside the library for the report.
pub fn load_library(
    data_root: &Path,
    user: Option<&Path>,
) -> Result<(Library, Option<String>), render::RenderError> {
    let mut lib = Library::load(&render::default_library_dir(data_root))?;
    let mut user_error = None;
    if let Some(dir) = user {
        if let Err(e) = lib.merge_user(dir) {
            tracing::warn!(error = %e, "uploaded templates left out");
            user_error = Some(format!("uploaded templates left out: {e}"));
        }
    }
    Ok((lib, user_error))
}

struct Worker {
    rx: Receiver<Input>,
    planner: LivePlanner,
    loaders: Loaders,
    renderer: Option<Renderer>,
    font: Option<Arc<rustysynth::SoundFont>>,
    composer: Option<Composer>,
    /// A reloaded template library's renderer, swapped in at the next section start.
    next_renderer: Option<Renderer>,
    leveler: Leveler,
    prefs: Preferences,
    undo: Vec<Preferences>,
    /// Genre and lead instrument decided once for the run (from the first bar with a
    /// picture), unless a preference sets them: a track that changes genre at every cut
    /// sounds like channel-hopping (as offline).
    piece: Option<(Genre, Instrument)>,
    style: Option<StyleVector>,
    restyle: bool,
    camera_running: bool,
    shared: Arc<Shared>,
    status: Arc<PlaybackStatus>,
    control: Arc<Control>,
    metrics: Arc<Metrics>,
    log: Arc<Mutex<EngineLog>>,
    stop: Arc<AtomicBool>,
    started: Instant,
    buf: Vec<f32>,
    /// Energy and density class of the last bars (for the refine options).
    recent_energy: VecDeque<f32>,
    recent_density: VecDeque<u8>,
    /// Template ids as shared strings, one per template played (the bar log points at them).
    template_ids: Vec<Arc<str>>,
    data_root: PathBuf,
    user_templates: Option<PathBuf>,
}

impl Worker {
    /// The shared copy of template id `id` (made on its first bar).
    fn template_id(&mut self, id: &str) -> Arc<str> {
        if let Some(a) = self.template_ids.iter().find(|a| &***a == id) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(id);
        self.template_ids.push(a.clone());
        a
    }

    fn log(&self) -> std::sync::MutexGuard<'_, EngineLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&mut self) {
        while !self.stop.load(Ordering::Acquire) {
            self.check_loaders();
            let need = self.renderer.is_some() && self.need_bar();
            let wait = if need { Duration::ZERO } else { IDLE_WAIT };
            match self.rx.recv_timeout(wait) {
                Ok(m) => {
                    self.handle(m);
                    while let Ok(m) = self.rx.try_recv() {
                        self.handle(m);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.drain_heard();
            if self.renderer.is_some() {
                // Commands are taken at once (within one IDLE_WAIT), not at the next bar to
                // render: that came up to a bar (2.4 s at 100 BPM) after the click.
                self.apply_commands();
                if self.need_bar() {
                    self.make_bar();
                }
            }
        }
    }

    fn check_loaders(&mut self) {
        if self
            .loaders
            .renderer
            .as_ref()
            .is_some_and(|h| h.is_finished())
        {
            let h = self.loaders.renderer.take().expect("loader");
            match h.join().unwrap_or_else(|_| Err("loader panicked".into())) {
                Ok((r, font, user_error)) => {
                    if let Some(e) = user_error {
                        self.note_error(e);
                    }
                    self.renderer = Some(r);
                    self.font = Some(font);
                    self.log().renderer_ready_s = Some(self.started.elapsed().as_secs_f64());
                    tracing::info!(
                        after_s = self.started.elapsed().as_secs_f64(),
                        "renderer ready"
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot load the templates or the SoundFont; no music");
                    self.note_error(e);
                }
            }
        }
        if self
            .loaders
            .composer
            .as_ref()
            .is_some_and(|h| h.is_finished())
        {
            let h = self.loaders.composer.take().expect("loader");
            match h.join().unwrap_or_else(|_| Err("loader panicked".into())) {
                Ok(mut c) => {
                    c.start(melody_seed(&self.prefs));
                    self.composer = Some(c);
                    self.log().composer_ready_s = Some(self.started.elapsed().as_secs_f64());
                    tracing::info!(
                        after_s = self.started.elapsed().as_secs_f64(),
                        "note model ready"
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot load the note model; playing without a melody");
                    self.note_error(e);
                }
            }
        }
    }

    fn note_error(&self, e: String) {
        let mut l = self.log();
        l.errors += 1;
        l.last_error = Some(e);
    }

    /// The rendered audio reaches less than [`LOOKAHEAD_BARS`] + one period past the listener.
    fn need_bar(&self) -> bool {
        let end = self.shared.lock().end_frame();
        let pos = self.status.position();
        let ahead = frame_of(self.planner.bar_seconds() * LOOKAHEAD_BARS);
        end < pos + ahead + PERIOD_FRAMES as u64
    }

    fn handle(&mut self, m: Input) {
        match m {
            Input::Frame { t, speed, saliency } => self.planner.push_frame(t, speed, saliency),
            Input::Camera(s) => {
                self.camera_running = s == DeviceState::Running;
                self.planner.set_camera_running(self.camera_running);
            }
            Input::Cut { pts, t, detected } => self.cut(pts, t, detected),
        }
    }

    fn cut(&mut self, pts: f64, t: f64, detected: f64) {
        let (d, earliest) = self.section_at_or_after(t);
        let beat = self.planner.beat_seconds();
        let mut l = self.log();
        l.cuts_total += 1;
        l.cuts.push_back(CutEntry {
            pts,
            t,
            detected_at: detected,
            queued_until: earliest,
            section_at: d.section_at,
            on_grid: d.on_grid,
            section_bar: None,
            reached_pcm_at: None,
            reaction: None,
            budget: beat + 0.1,
        });
        while l.cuts.len() > LOG_MAX_CUTS {
            l.cuts.pop_front();
        }
        drop(l);
        self.cut_logged(&d, t, detected);
    }

    /// Starts a new section on the first beat at or after `t` that is not yet committed to
    /// the ring: audio rendered ahead past it is cut short (with a fade) and its bars are
    /// withdrawn, so what follows is planned anew. Returns the decision and the earliest time
    /// that was still open.
    fn section_at_or_after(&mut self, t: f64) -> (CutDecision, f64) {
        let (d, earliest): (CutDecision, f64) = {
            let mut p = self.shared.lock();
            let earliest_frame = p.committed + CUT_FADE_FRAMES as u64;
            let earliest = secs(earliest_frame);
            let d = self.planner.cut(t, earliest);
            if !d.unchanged {
                let s = frame_of(d.section_at);
                if s < p.end_frame() {
                    let keep = (s.saturating_sub(p.committed) as usize) * CH;
                    p.pcm.truncate(keep);
                    let n = (keep / CH).min(CUT_FADE_FRAMES);
                    let len = p.pcm.len();
                    for i in 0..n {
                        let g = i as f32 / n as f32; // last frame → 0
                        for c in 0..CH {
                            p.pcm[len - (i + 1) * CH + c] *= g;
                        }
                    }
                    p.marks.retain(|&(f, _)| f < s);
                }
            }
            (d, earliest)
        };
        let mut l = self.log();
        if let Some(i) = d.truncated {
            if let Some(b) = l.bars.iter_mut().find(|b| b.index == i) {
                b.end = d.section_at;
                b.beats = ((d.section_at - b.start) / (60.0 / b.tempo_bpm) - 1e-6)
                    .ceil()
                    .clamp(1.0, 4.0) as u8;
                b.truncated = true;
            }
        }
        if let Some(i) = d.withdrawn_from {
            let before = l.bars.len();
            l.bars.retain(|b| b.index < i);
            l.bars_total -= (before - l.bars.len()) as u64;
        }
        if !d.unchanged {
            // Earlier cuts whose section was planned at or after this one's start now share
            // it (their bars were withdrawn or cut short).
            for c in l.cuts.iter_mut() {
                if c.reached_pcm_at.is_none() && c.section_at >= d.section_at - 1e-6 {
                    c.section_at = d.section_at;
                }
            }
        }
        (d, earliest)
    }

    /// The metrics and log line of a cut.
    fn cut_logged(&mut self, d: &CutDecision, t: f64, detected: f64) {
        self.metrics.cuts.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            t,
            detected,
            section_at = d.section_at,
            on_grid = d.on_grid,
            "cut: new section"
        );
    }

    /// Bars the listener has reached: report times, status, cut reactions.
    fn drain_heard(&mut self) {
        let heard = std::mem::take(&mut self.shared.lock().heard);
        if heard.is_empty() {
            return;
        }
        let mut l = self.log();
        for (bar, pos) in heard {
            let at = secs(pos);
            let Some(b) = l.bars.iter_mut().find(|b| b.index == bar) else {
                continue;
            };
            b.heard_at = Some(at);
            let b = b.clone();
            if b.section_start {
                for c in l.cuts.iter_mut() {
                    // The bar that starts the section planned for this cut.
                    if c.reached_pcm_at.is_none() && (c.section_at - b.start).abs() < 1e-6 {
                        c.reached_pcm_at = Some(at);
                        c.section_bar = Some(b.index);
                        c.reaction = Some(at - c.t);
                    }
                }
            }
            let style = self.style.clone();
            self.control.update_status(|s| {
                s.bar = b.index as u64;
                s.section = b.section;
                s.tempo_bpm = b.tempo_bpm;
                s.density_class = b.density_class;
                s.strength_class = b.strength_class;
                s.energy = b.energy;
                s.level_rms_dbfs = b.rms_dbfs;
                s.level_peak_dbfs = b.peak_dbfs;
                s.template.clear();
                s.template.push_str(&b.template);
                if let Some(v) = &style {
                    s.genre = name_of(&v.genre);
                    s.mood = name_of(&v.mood);
                    s.instrument = name_of(&v.instrument);
                    s.key = format!("{:?}", v.key);
                }
            });
        }
    }

    /// Applies the commands queued since the last call. A change of preferences starts a
    /// section on the next beat not yet in the ring (the bars rendered ahead are replanned).
    fn apply_commands(&mut self) {
        let cmds = self.control.drain_commands();
        if cmds.is_empty() {
            return;
        }
        let at = self.planner.next_start();
        let before = self.prefs.clone();
        let n_cmds = cmds.len();
        for cmd in cmds {
            let text = format!("{cmd:?}");
            let text = text.chars().take(200).collect::<String>();
            match cmd {
                Command::Like => {
                    self.undo.clear();
                    self.control.update_status(|s| {
                        s.disliked = false;
                        s.options.clear();
                        s.undo_depth = 0;
                    });
                }
                Command::Dislike => {
                    let opts: Vec<String> = self.options().iter().map(|o| o.to_string()).collect();
                    self.control.update_status(|s| {
                        s.disliked = true;
                        s.options = opts;
                    });
                }
                Command::Apply(opt) => {
                    let p = self.refined(opt);
                    self.undo.push(self.prefs.clone());
                    if self.undo.len() > MAX_UNDO {
                        self.undo.remove(0);
                    }
                    self.set_prefs(p);
                    let depth = self.undo.len();
                    self.control.update_status(|s| {
                        s.disliked = false;
                        s.options.clear();
                        s.undo_depth = depth;
                    });
                }
                Command::Undo => {
                    if let Some(p) = self.undo.pop() {
                        self.set_prefs(p);
                    }
                    let depth = self.undo.len();
                    self.control.update_status(|s| s.undo_depth = depth);
                }
                Command::SetPreferences(p) => self.set_prefs(p),
                Command::SetVolumeDb(db) => {
                    self.shared.set_volume_db(db);
                    self.control.update_status(|s| s.volume_db = db.min(0.0));
                }
                Command::Reconfigure(cfg) => {
                    // Music settings apply live; the refinements made on top are kept.
                    let mut p = cfg.music.to_preferences();
                    p.density_offset = self.prefs.density_offset;
                    p.melody_variation = self.prefs.melody_variation;
                    self.set_prefs(p);
                }
                Command::ReloadTemplates => self.reload_templates(),
            }
            let bar = self.log().bars.back().map_or(0, |b| b.index + 1);
            let mut l = self.log();
            l.commands.push_back(CommandEntry {
                t: at,
                bar,
                command: text,
            });
            while l.commands.len() > LOG_MAX_COMMANDS {
                l.commands.pop_front();
            }
        }
        if self.prefs != before {
            // The refinement loop: the new music starts a section on the next beat that is not
            // yet in the ring, instead of after the bars already rendered ahead.
            let now = secs(self.shared.lock().committed);
            let (d, _) = self.section_at_or_after(now);
            tracing::info!(
                section_at = d.section_at,
                "preferences changed: new section"
            );
            // The commands of this round take effect from that section's first bar.
            let mut l = self.log();
            let bar = l.bars.back().map_or(0, |b| b.index + 1);
            for c in l.commands.iter_mut().rev().take(n_cmds) {
                c.bar = bar;
                c.t = d.section_at;
            }
        }
    }

    fn set_prefs(&mut self, p: Preferences) {
        if let Err(e) = self.planner.set_preferences(p.clone()) {
            tracing::warn!(error = %e, "preferences rejected");
            self.note_error(e.to_string());
            return;
        }
        let style_changed = p.genre != self.prefs.genre
            || p.instrument != self.prefs.instrument
            || p.energy != self.prefs.energy
            || p.mood != self.prefs.mood;
        if p.melody_variation != self.prefs.melody_variation || p.seed != self.prefs.seed {
            if let Some(c) = self.composer.as_mut() {
                c.start(melody_seed(&p));
            }
        }
        if style_changed {
            // A new arrangement needs a new segment: a section from the next bar.
            self.planner.start_section_next();
            self.restyle = true;
        }
        self.log().tempo_bpm = self.planner.tempo_bpm();
        self.prefs = p.clone();
        self.control.update_status(|s| s.preferences = p);
    }

    fn reload_templates(&mut self) {
        let Some(font) = self.font.clone() else {
            return;
        };
        match load_library(&self.data_root, self.user_templates.as_deref())
            .and_then(|(lib, user_error)| Ok((Renderer::with_font(lib, &font)?, user_error)))
        {
            Ok((r, user_error)) => {
                if let Some(e) = user_error {
                    self.note_error(e);
                }
                self.next_renderer = Some(r);
                self.planner.start_section_next();
            }
            Err(e) => {
                tracing::warn!(error = %e, "template reload failed; keeping the loaded library");
                self.note_error(e.to_string());
            }
        }
    }

    /// What plays now, from the recent bars, for `score::refine::options_for` (the same
    /// options and steps as for a scored file).
    fn playing(&self) -> refine::Playing {
        let n = self.recent_energy.len().max(1) as f32;
        let (genre, mood, instrument) = match &self.style {
            Some(v) => (Some(v.genre), Some(v.mood), Some(v.instrument)),
            None => (self.prefs.genre, self.prefs.mood, self.prefs.instrument),
        };
        refine::Playing {
            energy: self.recent_energy.iter().sum::<f32>() / n,
            density: self.recent_density.iter().map(|&d| d as f32).sum::<f32>() / n,
            genre,
            mood,
            instrument,
        }
    }

    fn options(&self) -> Vec<RefineOption> {
        refine::options_for(&self.prefs, &self.playing())
    }

    fn refined(&self, opt: RefineOption) -> Preferences {
        refine::apply_option(&self.prefs, opt, self.playing().energy)
    }

    fn style_for(&mut self, bar: &BarPlan, notes: Option<&NoteSet>, fallback: bool) -> StyleVector {
        if bar.section_start || self.style.is_none() || self.restyle {
            let sets: Vec<NoteSet> = notes.cloned().into_iter().collect();
            let mut v = style::style_of(&sets, std::slice::from_ref(bar));
            if self.piece.is_none() && !fallback {
                self.piece = Some((v.genre, v.instrument));
            }
            if let Some((g, i)) = self.piece {
                if self.prefs.genre.is_none() {
                    v.genre = g;
                }
                if self.prefs.instrument.is_none() {
                    v.instrument = i;
                }
            }
            self.style = Some(v);
            self.restyle = false;
        }
        self.style.clone().expect("style set above")
    }

    fn make_bar(&mut self) {
        let fallback = !self.camera_running;
        let bar = self.planner.next_bar();
        if bar.section_start {
            if let Some(r) = self.next_renderer.take() {
                self.renderer = Some(r);
            }
        }
        let notes = match self.composer.as_mut() {
            Some(c) => {
                let t = Instant::now();
                let controls = BarControls {
                    density: bar.density_class,
                    strength: bar.strength_class,
                    section_start: bar.section_start,
                    // live, a cut is seen after the bar before it was written
                    next_section_start: false,
                    chord: bar.chord,
                    beats: bar.beats,
                };
                match c.next_bar(bar.index, &controls) {
                    Ok(set) => {
                        self.metrics
                            .model_step_seconds
                            .set(t.elapsed().as_secs_f64() / (set.notes.len() + 2) as f64);
                        Some(set)
                    }
                    Err(e) => {
                        tracing::warn!(bar = bar.index, error = %e, "note model failed; bar without melody");
                        self.note_error(e.to_string());
                        None
                    }
                }
            }
            None => None,
        };
        let style = self.style_for(&bar, notes.as_ref(), fallback);
        let frames = (frame_of(bar.end) - frame_of(bar.start)) as usize;
        self.buf.clear();
        self.buf.resize(frames * CH, 0.0);
        let ahead = self.planner.preview(3);
        let renderer = self
            .renderer
            .as_mut()
            .expect("renderer checked by the caller");
        let rendered =
            match renderer.render_bar(&bar, notes.as_ref(), &style, &ahead, &mut self.buf) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(bar = bar.index, error = %e, "render failed; a bar of silence");
                    self.buf.iter_mut().for_each(|s| *s = 0.0);
                    self.note_error(e.to_string());
                    None
                }
            };
        self.leveler.process(&mut self.buf);
        let (mut sq, mut peak) = (0.0f64, 0.0f32);
        for &s in &self.buf {
            sq += (s * s) as f64;
            peak = peak.max(s.abs());
        }
        let rms = (sq / self.buf.len().max(1) as f64).sqrt() as f32;
        let dbfs = |x: f32| 20.0 * x.max(1e-9).log10();
        {
            let mut p = self.shared.lock();
            let start = frame_of(bar.start);
            // After a cut the plan restarts exactly at the end of the kept audio.
            debug_assert_eq!(
                start,
                p.end_frame(),
                "bar {} starts off the stream",
                bar.index
            );
            p.pcm.extend(self.buf.iter().copied());
            p.marks.push_back((start, bar.index));
        }
        self.metrics.bars.fetch_add(1, Ordering::Relaxed);
        self.recent_energy.push_back(bar.energy);
        self.recent_density.push_back(bar.density_class);
        if self.recent_energy.len() > 8 {
            self.recent_energy.pop_front();
            self.recent_density.pop_front();
        }
        let (notes_n, vel) = notes.as_ref().map_or((0, 0.0), |n| {
            let c = n.notes.len();
            let v = n.notes.iter().map(|x| x.velocity as f32).sum::<f32>() / c.max(1) as f32;
            (c, v)
        });
        let entry = BarEntry {
            index: bar.index,
            start: bar.start,
            end: bar.end,
            beats: bar.beats,
            tempo_bpm: bar.tempo_bpm,
            section: bar.section,
            section_start: bar.section_start,
            density_class: bar.density_class,
            strength_class: bar.strength_class,
            energy: bar.energy,
            speed: bar.speed,
            saliency: bar.saliency,
            fallback,
            chord: bar.chord,
            notes: notes_n,
            mean_velocity: vel,
            template: self.template_id(rendered.as_ref().map_or("", |r| r.template_id.as_str())),
            layer: rendered.as_ref().map_or(0, |r| r.layer),
            join: rendered.as_ref().is_some_and(|r| r.join),
            rms_dbfs: dbfs(rms),
            peak_dbfs: dbfs(peak),
            truncated: false,
            heard_at: None,
        };
        self.control.push_bar(BarPoint {
            seq: 0,
            bar: bar.index as u64,
            t: bar.start,
            section: bar.section,
            section_start: bar.section_start,
            density_class: bar.density_class,
            strength_class: bar.strength_class,
            notes: notes_n as u32,
        });
        let mut l = self.log();
        l.bars_total += 1;
        l.sections_total += u64::from(bar.section_start);
        l.bars.push_back(entry);
        while l.bars.len() > LOG_MAX_BARS {
            l.bars.pop_front();
        }
    }
}

fn melody_seed(p: &Preferences) -> u64 {
    p.seed
        .wrapping_add(MELODY_SEED_STEP.wrapping_mul(p.melody_variation as u64))
}

/// The lowercase name serde gives an enum value.
fn name_of<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

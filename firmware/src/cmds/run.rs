//! `undertone run`: the live appliance.
//!
//! Reads the config (`/etc/undertone/config.toml` or `--config`), applies the flags, and
//! runs until `--duration` is over, the file source ends, or SIGTERM/SIGINT arrives:
//! the ALSA playback thread (its sample position is the master clock), the capture
//! supervisor (camera or file, reopened with backoff; `--realtime` paces a file like a
//! camera), `/metrics` and `/healthz`, systemd notification (READY once running,
//! WATCHDOG from this loop, STATUS on every state change), and the JSON report, rewritten
//! atomically every few seconds and at the end.
//!
//! What plays: the music engine (`live::engine`): frames → extraction (here, on this loop)
//! → the live planner, note model and renderer (the `music` thread) → the `feeder` thread
//! → the ALSA ring. `--play WAV` instead loops a WAV file through the whole audio path
//! (installation check, soak tests of the audio path alone). See `docs/design/live.md`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::extract::Extractor;
use crate::live::clock::{Clock, RealClock};
use crate::live::config::{Config, ConfigLocations, SourceSpec};
use crate::live::control::{Control, FeaturePoint, Snapshot};
use crate::live::device::{Capture, CaptureEvent, DeviceState};
use crate::live::engine::{Engine, EngineLog, EngineSetup, Feeder, Input, Shared};
use crate::live::metrics::Metrics;
use crate::live::notify::{watchdog_interval, Notifier};
use crate::live::timeline::FrameClock;
use crate::music::{CHANNELS, SAMPLE_RATE};
use crate::sink::alsa::{AlsaOptions, HwBuffer, PlaybackStats};
use crate::sink::{AlsaSink, Sink, WavSink};
use crate::source::{AnalysisSize, CaptureRequest, FileSource, Source, SourceError, V4l2Source};

/// How often the report is rewritten during a run: a crash loses at most this much.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// Longest the loop waits for a missing camera before doing its other work (audio
/// top-up, watchdog): a fraction of the audio ring, so the ring never runs dry waiting.
const CAPTURE_MAX_WAIT: Duration = Duration::from_millis(20);
/// Ring of a `--play` run, ms (at least): what the loop's top-up between frames needs.
const PLAY_RING_MS: u32 = 500;
/// Samples moved into the ring per top-up step (20 ms of stereo).
const TOPUP_SAMPLES: usize = SAMPLE_RATE as usize / 50 * CHANNELS as usize;
/// Window of the frame-rate gauge.
const FPS_WINDOW: Duration = Duration::from_secs(1);
/// Watchdog interval when systemd did not set one (the loop still proves it is alive).
const DEFAULT_WATCHDOG: Duration = Duration::from_secs(5);
/// The dashboard's snapshot is refreshed every this many frames (3 per second at 30 fps).
const SNAPSHOT_EVERY: u64 = 10;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Config file (default /etc/undertone/config.toml; defaults apply when that one is absent).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Frame source: v4l2:/dev/videoN or file:CLIP (overrides `source`).
    #[arg(long, value_name = "SPEC")]
    pub source: Option<String>,
    /// Replay a file source at its own frame rate, as a camera would deliver it.
    #[arg(long)]
    pub realtime: bool,
    /// ALSA PCM to play on (overrides `audio_device`; list them with `aplay -L`).
    #[arg(long, value_name = "PCM")]
    pub audio_device: Option<String>,
    /// Stop after this many seconds (default: run until SIGTERM or the end of a file source).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// JSON report of the run (overrides `report`).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Also record what is played to this WAV file (overrides `record`).
    #[arg(long, value_name = "WAV")]
    pub record: Option<PathBuf>,
    /// Metrics address IP:PORT (overrides `listen`; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Loop this WAV (48 kHz, mono or stereo) through the audio path instead of music.
    #[arg(long, value_name = "WAV")]
    pub play: Option<PathBuf>,
}

/// The config the run uses: file, then flags; validated as a whole. Also where changes
/// are saved (`--config FILE`, else the state folder's copy: see `ConfigLocations`).
pub fn effective_config(args: &Args) -> anyhow::Result<(Config, ConfigLocations)> {
    let loc = ConfigLocations::appliance(args.config.as_deref());
    let path = loc.read.clone();
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::load_or_default(&path)?,
    };
    if let Some(s) = &args.source {
        cfg.source = s.clone();
    }
    cfg.realtime |= args.realtime;
    if let Some(d) = &args.audio_device {
        cfg.audio_device = d.clone();
    }
    if let Some(r) = &args.report {
        cfg.report = Some(r.clone());
    }
    if let Some(r) = &args.record {
        cfg.record = Some(r.clone());
    }
    if let Some(l) = &args.listen {
        cfg.listen = l.clone();
    }
    // Flags are checked like config keys; the message names both places they may come from.
    cfg.validate(Path::new(&format!(
        "{} with the command-line flags",
        path.display()
    )))?;
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0) {
            bail!("--duration {d}: give a positive number of seconds");
        }
    }
    Ok((cfg, loc))
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Async-signal-safe: one atomic store.
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with a handler that only stores an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// One state change of a device, for the report.
#[derive(Debug, Clone, Serialize)]
struct StateChange {
    /// Seconds since the run started.
    t: f64,
    state: DeviceState,
}

/// The JSON report of a run.
#[derive(Debug, Clone, Serialize)]
struct RunReport {
    source: String,
    audio_device: String,
    /// Seconds the run lasted (so far).
    duration: f64,
    /// Why it ended (`running` while it goes on).
    stopped_by: &'static str,
    frames_seen: u64,
    /// Mean analysis frame rate.
    fps: f64,
    camera_states: Vec<StateChange>,
    audio_states: Vec<StateChange>,
    /// The playback thread's counters (underruns, reopens, position...).
    audio: PlaybackStats,
    /// Audio seconds queued ahead of the listener: lowest seen while playing, and last.
    headroom_min: Option<f64>,
    headroom_last: f64,
    /// Seconds from the start of the run until the master clock first moved (first sound).
    first_sound_s: Option<f64>,
}

/// Writes the report atomically, streamed into the temporary file (no copy of the music
/// log, no buffer the size of the report: a long run's report is hundreds of kB).
fn write_report(path: &Path, r: &RunReport, music: Option<&EngineLog>) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(flatten)]
        run: &'a RunReport,
        /// The music engine's log: tempo, per bar, cuts with their reaction, commands.
        #[serde(skip_serializing_if = "Option::is_none")]
        music: Option<&'a EngineLog>,
    }
    let tmp = crate::fsutil::temp_path(path);
    let res = (|| -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        serde_json::to_writer_pretty(&mut w, &Out { run: r, music })
            .map_err(std::io::Error::other)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        crate::fsutil::commit(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.with_context(|| format!("{}: cannot write the report", path.display()))
}

/// A WAV to loop, as interleaved stereo f32.
fn load_play(path: &Path) -> anyhow::Result<Vec<f32>> {
    let mut r = hound::WavReader::open(path)
        .with_context(|| format!("{}: cannot read the WAV", path.display()))?;
    let spec = r.spec();
    if spec.sample_rate != SAMPLE_RATE || !(1..=2).contains(&spec.channels) {
        bail!(
            "{}: {} Hz, {} channels; --play takes 48000 Hz mono or stereo (convert with `sox IN -r 48000 OUT.wav`)",
            path.display(),
            spec.sample_rate,
            spec.channels
        );
    }
    let v: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<_, _>>()?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.map(|s| s as f32 * scale))
                .collect::<Result<_, _>>()?
        }
    };
    let v = if spec.channels == 1 {
        v.iter().flat_map(|&s| [s, s]).collect()
    } else {
        v
    };
    if v.is_empty() {
        bail!("{}: the WAV has no samples", path.display());
    }
    Ok(v)
}

/// Either source the config can name.
enum AnySource {
    V4l2(V4l2Source),
    File(FileSource),
}

impl Source for AnySource {
    fn info(&self) -> &crate::source::SourceInfo {
        match self {
            AnySource::V4l2(s) => s.info(),
            AnySource::File(s) => s.info(),
        }
    }
    fn next_frame(&mut self) -> Result<Option<crate::source::Frame>, SourceError> {
        match self {
            AnySource::V4l2(s) => s.next_frame(),
            AnySource::File(s) => s.next_frame(),
        }
    }
}

fn open_source(spec: &SourceSpec, cfg: &Config) -> Result<AnySource, SourceError> {
    let analysis = AnalysisSize::default();
    Ok(match spec {
        SourceSpec::V4l2(dev) => AnySource::V4l2(V4l2Source::open(
            dev,
            CaptureRequest {
                width: cfg.width,
                height: cfg.height,
                fps: cfg.fps.round() as u32,
            },
            analysis,
        )?),
        SourceSpec::File(p) => AnySource::File(FileSource::open(p, analysis)?),
    })
}

/// Allocator settings for a process that runs for days (glibc). Each section start decodes
/// a template into a buffer of several MB and frees the old one; glibc's default raises its
/// mmap threshold after such a free, so later big buffers come from the heap between
/// long-lived small allocations and the heap creeps up (RSS growth in the soak). A fixed
/// threshold keeps every buffer of 256 kB or more in its own mapping, returned on free; two
/// arenas (instead of 8 per core) keep the worker threads from each growing their own.
fn tune_allocator() {
    /// Allocations at least this big get their own mapping.
    const MMAP_THRESHOLD: libc::c_int = 256 * 1024;
    /// Malloc arenas shared by all threads.
    const ARENA_MAX: libc::c_int = 2;
    // SAFETY: mallopt only changes allocator parameters; called before the threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

/// What fills the audio ring: a looped WAV (audio path only) or the music engine.
enum Audio {
    Play {
        sink: AlsaSink,
        record: Option<WavSink>,
        pcm: Vec<f32>,
        pos: usize,
    },
    Music {
        feeder: Feeder,
        engine: Engine,
        shared: Arc<Shared>,
    },
}

pub fn run(args: Args, data_root: &Path) -> anyhow::Result<()> {
    tune_allocator();
    let (cfg, config_at) = effective_config(&args)?;
    let spec = cfg.source_spec().map_err(anyhow::Error::msg)?;
    let play = args.play.as_deref().map(load_play).transpose()?;
    STOP.store(false, Ordering::SeqCst);
    install_signal_handlers();
    let clock = RealClock::new();
    let notifier = Notifier::from_env()?;
    let watchdog = watchdog_interval().unwrap_or(DEFAULT_WATCHDOG);

    let metrics = Metrics::new();
    // The engine's control surface: status, live series and commands (web page, button).
    let control = Arc::new(Control::new());
    let listen = cfg.listen_addr().map_err(anyhow::Error::msg)?;
    // The HTTP endpoints (metrics, health; the web page will take `control` here too).
    let mut server = crate::web::WebServer::start_with_library(
        listen,
        control.clone(),
        metrics.clone(),
        &config_at.save,
        &cfg.web.data_dir,
        &data_root.join("templates"),
    )?;
    eprintln!("undertone: metrics on http://{}/metrics", server.addr());
    // The board's button, status LED and hardware watchdog (`[web] board`, see
    // docs/guide/board.md): a wrong chip or line is logged and left out; the music goes on.
    let _board = undertone_board::start_named(
        &cfg.web.board,
        {
            let c = control.clone();
            move || {
                let s = c.status();
                undertone_board::EngineView {
                    camera: s.camera.name().into(),
                    audio: s.audio.name().into(),
                    disliked: s.disliked,
                    options: s.options,
                    progress: c.version(),
                }
            }
        },
        {
            let c = control.clone();
            move |a| {
                let cmd = match a {
                    undertone_board::Action::Like => crate::live::control::Command::Like,
                    undertone_board::Action::Dislike => crate::live::control::Command::Dislike,
                    undertone_board::Action::Apply(o) => match o.parse() {
                        Ok(o) => crate::live::control::Command::Apply(o),
                        Err(_) => return,
                    },
                };
                if let Err(e) = c.send(cmd) {
                    tracing::warn!("button: {e}");
                }
            }
        },
    );

    // `--play` is topped up by this loop between frames (a frame period, more on a busy
    // box), so it keeps the old half-second ring; the engine's feeder tops up every 5 ms.
    let ring_ms = if play.is_some() {
        cfg.audio_buffer_ms.max(PLAY_RING_MS)
    } else {
        cfg.audio_buffer_ms
    };
    let ring_frames = ring_ms as usize * SAMPLE_RATE as usize / 1000;
    // The ALSA hardware buffer is the board's (`audio_period_frames` × `audio_periods` in
    // its profile; the default where the profile leaves them out).
    let sink = AlsaSink::start_with_buffer(
        &cfg.audio_device,
        AlsaOptions {
            ring_frames,
            realtime: cfg.realtime_audio,
        },
        HwBuffer::for_board(&cfg.web.board),
    )?;
    let status = sink.status();
    metrics.attach_playback(status.clone());
    let record = cfg.record.as_deref().map(WavSink::create).transpose()?;
    // The extraction model loads while the audio starts (it is needed by the first frame).
    let extractor_loader = if play.is_none() {
        let model = crate::extract::default_model_path(data_root);
        Some(
            std::thread::Builder::new()
                .name("load-extractor".into())
                .spawn(move || Extractor::load(&model))?,
        )
    } else {
        None
    };
    let mut audio = match play {
        Some(pcm) => Audio::Play {
            sink,
            record,
            pcm,
            pos: 0,
        },
        None => {
            let shared = Shared::new();
            let engine = Engine::start(
                EngineSetup {
                    data_root: data_root.to_path_buf(),
                    user_templates: Some(
                        cfg.web
                            .data_dir
                            .join(crate::web::templates::USER_TEMPLATES_DIR),
                    ),
                    prefs: cfg.music.to_preferences(),
                    realtime: cfg.realtime_audio,
                },
                shared.clone(),
                status.clone(),
                control.clone(),
                metrics.clone(),
            )?;
            let feeder = Feeder::start(sink, record, shared.clone(), cfg.realtime_audio)?;
            Audio::Music {
                feeder,
                engine,
                shared,
            }
        }
    };
    let mut extractor_loader = extractor_loader;
    let mut extractor: Option<Extractor> = None;
    let mut frame_clock = FrameClock::new();
    let mut extract_errors = 0u64;

    let source_name = spec.to_string();
    let mut capture = Capture::new(source_name.clone(), || open_source(&spec, &cfg), &clock);
    let camera_state = capture.state_handle();

    let mut report = RunReport {
        source: source_name.clone(),
        audio_device: cfg.audio_device.clone(),
        duration: 0.0,
        stopped_by: "running",
        frames_seen: 0,
        fps: 0.0,
        camera_states: vec![],
        audio_states: vec![],
        audio: status.snapshot(),
        headroom_min: None,
        headroom_last: 0.0,
        first_sound_s: None,
    };
    let t0 = clock.now();
    let mut last_cam = None;
    let mut last_audio = None;
    let mut last_watchdog = t0;
    let mut last_report = t0;
    let mut fps_window = (t0, 0u64);
    // File pacing: (first pts, run time it was shown at).
    let mut pace: Option<(f64, Duration)> = None;
    let mut ready = false;
    let stopped_by = loop {
        let now = clock.now();
        let elapsed = now - t0;
        if STOP.load(Ordering::SeqCst) {
            break "signal";
        }
        if args.duration.is_some_and(|d| elapsed.as_secs_f64() >= d) {
            break "duration";
        }

        // Audio: keep the ring topped up without blocking this loop.
        match &mut audio {
            Audio::Play {
                sink,
                record,
                pcm,
                pos,
            } => {
                while sink.free_samples() >= TOPUP_SAMPLES {
                    let mut chunk = [0.0f32; TOPUP_SAMPLES];
                    for c in chunk.iter_mut() {
                        *c = pcm[*pos];
                        *pos = (*pos + 1) % pcm.len();
                    }
                    sink.write(&chunk)?;
                    if let Some(r) = record.as_mut() {
                        r.write(&chunk)?;
                    }
                }
                let headroom = sink.headroom_frames() as f64 / SAMPLE_RATE as f64;
                if status.state() == DeviceState::Running && status.snapshot().ring_frames > 0 {
                    metrics.record_headroom(headroom);
                    report.headroom_min = Some(
                        report
                            .headroom_min
                            .map_or(headroom, |m: f64| m.min(headroom)),
                    );
                }
                report.headroom_last = headroom;
            }
            Audio::Music { feeder, shared, .. } => {
                // The feeder tops the ring up on its own thread; this loop only watches it.
                if feeder.is_finished() {
                    break "audio error";
                }
                let headroom =
                    shared.headroom_frames.load(Ordering::Relaxed) as f64 / SAMPLE_RATE as f64;
                let min = shared.headroom_min_frames.load(Ordering::Relaxed);
                if min != u64::MAX {
                    let min = min as f64 / SAMPLE_RATE as f64;
                    report.headroom_min = Some(min);
                    metrics.record_headroom(min);
                }
                if status.position() > 0 {
                    // Before the first sound the queue is empty by design, not starved.
                    metrics.record_headroom(headroom);
                }
                report.headroom_last = headroom;
            }
        }
        if report.first_sound_s.is_none() && status.position() > 0 {
            report.first_sound_s = Some((clock.now() - t0).as_secs_f64());
        }
        if extractor_loader.as_ref().is_some_and(|h| h.is_finished()) {
            let h = extractor_loader.take().expect("loader");
            match h.join() {
                Ok(Ok(x)) => extractor = Some(x),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot load the extraction model; the music stays on its calm fallback")
                }
                Err(_) => tracing::error!("the extraction model loader panicked"),
            }
        }

        // Video: one frame (or one open attempt / backoff step).
        match capture.poll(CAPTURE_MAX_WAIT) {
            CaptureEvent::Frame(f) => {
                report.frames_seen += 1;
                metrics.frames.fetch_add(1, Ordering::Relaxed);
                if cfg.realtime && matches!(spec, SourceSpec::File(_)) {
                    let (pts0, at) = *pace.get_or_insert((f.pts, clock.now() - t0));
                    let due = at + Duration::from_secs_f64((f.pts - pts0).max(0.0));
                    let run_now = clock.now() - t0;
                    if due > run_now {
                        clock.sleep(due - run_now);
                    }
                }
                if let Audio::Music { engine, .. } = &audio {
                    // Video time onto the master clock: the frame is shown now, and the
                    // listener now hears sample `position` (before the first sound the clock
                    // stands still and tells nothing).
                    let pos = status.position();
                    if pos > 0 {
                        frame_clock.observe(f.pts, pos);
                    }
                    let now_s = pos as f64 / SAMPLE_RATE as f64;
                    let to_master = |pts: f64| {
                        frame_clock
                            .to_audio(pts)
                            .map_or(now_s, |a| a / SAMPLE_RATE as f64)
                    };
                    if let Some(x) = extractor.as_mut() {
                        match x.push(&f) {
                            Ok(Some(ff)) => {
                                let t = to_master(ff.t);
                                engine.send(Input::Frame {
                                    t,
                                    // as the offline plan: frames inside a transition count
                                    // by how little of them is a transition
                                    speed: ff.motion_speed(),
                                    saliency: ff.saliency,
                                });
                                control.push_feature(FeaturePoint {
                                    seq: 0,
                                    t,
                                    speed: ff.speed,
                                    saliency: ff.saliency,
                                    cut_prob: ff.transition,
                                    cut: false,
                                });
                            }
                            Ok(None) => {}
                            Err(e) => {
                                extract_errors += 1;
                                if extract_errors.is_power_of_two() {
                                    tracing::warn!(error = %e, count = extract_errors, "frame not analysed");
                                }
                            }
                        }
                        for tr in x.take_transitions() {
                            let t = to_master(tr.t);
                            engine.send(Input::Cut {
                                pts: tr.t,
                                t,
                                detected: now_s,
                            });
                            control.push_feature(FeaturePoint {
                                seq: 0,
                                t,
                                speed: 0.0,
                                saliency: 0.0,
                                cut_prob: tr.confidence,
                                cut: true,
                            });
                        }
                    }
                    if report.frames_seen % SNAPSHOT_EVERY == 1 {
                        control.set_snapshot(Snapshot {
                            t: now_s,
                            width: f.width,
                            height: f.height,
                            gray: f.gray,
                        });
                    }
                }
            }
            CaptureEvent::NoFrame(_) => {}
            CaptureEvent::End => break "end of file",
        }
        let now = clock.now();
        if now - fps_window.0 >= FPS_WINDOW {
            let n = report.frames_seen - fps_window.1;
            metrics
                .fps
                .set(n as f64 / (now - fps_window.0).as_secs_f64());
            fps_window = (now, report.frames_seen);
            let snap = status.snapshot();
            let headroom_ms = report.headroom_last * 1000.0;
            let fps = metrics.fps.get();
            let uptime = (now - t0).as_secs_f64();
            control.update_status(|s| {
                s.underruns = snap.underruns;
                s.audio = snap.state;
                s.headroom_ms = headroom_ms;
                s.fps = fps;
                s.uptime_s = uptime;
            });
        }

        // State changes: log, report, systemd status.
        let t = (now - t0).as_secs_f64();
        let cam = camera_state.load();
        metrics.camera.store(cam);
        let audio_state = status.state();
        if last_cam != Some(cam) || last_audio != Some(audio_state) {
            if last_cam != Some(cam) {
                report.camera_states.push(StateChange { t, state: cam });
                if let Audio::Music { engine, .. } = &audio {
                    engine.send(Input::Camera(cam));
                }
                if cam != DeviceState::Running {
                    // A reopened camera starts a new stream: new timestamps, new motion.
                    frame_clock = FrameClock::new();
                }
            }
            control.update_status(|s| {
                s.camera = cam;
                s.audio = audio_state;
            });
            if last_audio != Some(audio_state) {
                tracing::info!(device = %cfg.audio_device, state = audio_state.name(), "audio state");
                report.audio_states.push(StateChange {
                    t,
                    state: audio_state,
                });
            }
            last_cam = Some(cam);
            last_audio = Some(audio_state);
            let line = format!("camera {}, audio {}", cam.name(), audio_state.name());
            if !ready {
                notifier.ready(&line)?;
                ready = true;
            } else {
                notifier.status(&line)?;
            }
        }
        // Watchdog from the processing loop itself: a wedged loop stops feeding it.
        if now - last_watchdog >= watchdog / 2 {
            notifier.watchdog()?;
            last_watchdog = now;
        }
        if let Some(path) = &cfg.report {
            if now - last_report >= REPORT_EVERY {
                report.duration = t;
                report.audio = status.snapshot();
                report.fps = report.frames_seen as f64 / t.max(1e-9);
                match &audio {
                    Audio::Music { engine, .. } => {
                        engine.with_log(|m| write_report(path, &report, Some(m)))?
                    }
                    Audio::Play { .. } => write_report(path, &report, None)?,
                }
                last_report = now;
            }
        }
    };

    tracing::info!(reason = stopped_by, "stopping");
    notifier.stopping()?;
    let t = (clock.now() - t0).as_secs_f64();
    let mut music = None;
    let (mut sink, record) = match audio {
        Audio::Play { sink, record, .. } => (sink, record),
        Audio::Music { feeder, engine, .. } => {
            let log = engine.log.clone();
            engine.stop();
            music = Some(log.lock().unwrap_or_else(|e| e.into_inner()).clone());
            feeder.stop()?
        }
    };
    // A signal stops now (what is queued is dropped); a duration or file end plays out.
    if stopped_by == "signal" {
        sink.abort();
    } else {
        sink.stop()?;
    }
    if let Some(mut r) = record {
        r.stop()?;
    }
    server.stop();
    report.stopped_by = stopped_by;
    report.duration = t;
    report.audio = status.snapshot();
    report.fps = report.frames_seen as f64 / t.max(1e-9);
    if let Some(path) = &cfg.report {
        write_report(path, &report, music.as_ref())?;
    }
    eprintln!(
        "undertone: {stopped_by} after {t:.1} s: {} frames, {} underruns, audio {}",
        report.frames_seen,
        report.audio.underruns,
        report.audio.state.name()
    );
    Ok(())
}

//! Offline scoring: a video file in, music that follows it out (`undertone score`).
//!
//! `analyze → plan → compose → style → render`, then the outputs (see `docs/ref/outputs.md`),
//! all written into a staging folder inside the output folder and renamed into place only
//! when every one of them is complete, so a failure leaves nothing behind.

mod aac;
mod mp4out;
mod mux;
mod plot;
pub mod refine;
mod report;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use thiserror::Error;
use tracing::info;

use crate::compose::{BarControls, Composer};
use crate::extract::{self, Analysis};
use crate::midi::{self, MidiTrack, TimedNote};
use crate::music::{NoteSet, Preferences, BEATS_PER_BAR, SAMPLE_RATE, TICKS_PER_BEAT};
use crate::plan::{self, Plan};
use crate::render::{self, Rendered, Renderer};
use crate::style::{self, StyleVector};

pub use report::Report;

/// Files `score` writes, in the order they are renamed into place.
pub const OUTPUT_FILES: [&str; 6] = [
    "music.wav",
    "notes.mid",
    "report.json",
    "report.png",
    "analysis.json",
    "scored.mp4",
];
/// The cached analysis that `refine` reuses instead of decoding the video again.
pub const ANALYSIS_FILE: &str = "analysis.json";
/// In the staging folder: the input's video re-encoded for scored.mp4, and ffmpeg's messages.
const TRANSCODED_VIDEO: &str = "video.transcoded.mp4";
const TRANSCODE_LOG: &str = "transcode.log";
/// Golden-ratio increment that turns a "new melody" request into an unrelated seed.
const MELODY_SEED_STEP: u64 = 0x9E37_79B9_7F4A_7C15;
/// Pieces of at least this many bars are composed in two parts at once ([`second_part_start`]):
/// the note model writes about a bar per 15–20 ms on one core, and the other core is mostly
/// idle while it does. It was 8 bars until the music's AAC encoders stopped being processes
/// that started during the compose (session 18): bikes (7 bars) then went from 0.492 to
/// 0.434 s, its compose stage 0.113 → 0.072 s (`tools/bench/ab.sh`, medians of 7).
const SPLIT_COMPOSE_MIN_BARS: usize = 4;
/// Odd increment that gives a piece's second part a seed of its own.
const SECOND_PART_SEED_STEP: u64 = 0xD1B5_4A32_D192_ED03;

#[derive(Debug, Error)]
pub enum ScoreError {
    #[error(transparent)]
    Extract(#[from] extract::ExtractError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Compose(#[from] crate::compose::ComposeError),
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error("cannot write output folder {path}: {reason}")]
    Output { path: String, reason: String },
    #[error("{0}")]
    Mux(String),
    #[error("{path}: {reason}")]
    Previous { path: String, reason: String },
    #[error("cannot write output folder {path}: its disk is full ({free_kib} KiB free); {remedy}")]
    DiskFull {
        path: String,
        free_kib: u64,
        remedy: &'static str,
    },
}

/// What to score and how.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub input: PathBuf,
    pub out_dir: PathBuf,
    pub prefs: Preferences,
    pub warp: bool,
    pub data_root: PathBuf,
}

/// Progress callbacks for a long job (the CLI draws a bar; tests pass a no-op).
pub trait Progress {
    /// A new stage begins; `total` units of work (0 = unknown).
    fn stage(&mut self, name: &str, total: u64);
    /// `done` units of the current stage are finished.
    fn set(&mut self, done: u64);
}

/// No progress display.
pub struct NoProgress;
impl Progress for NoProgress {
    fn stage(&mut self, _: &str, _: u64) {}
    fn set(&mut self, _: u64) {}
}

/// Per-stage wall times, seconds.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Timings {
    pub analyze: f64,
    pub plan: f64,
    pub compose: f64,
    pub style: f64,
    pub render: f64,
    pub write: f64,
    pub total: f64,
}

/// Everything the music was made from, kept to write the outputs.
pub struct Scored {
    pub plan: Plan,
    pub notes: Vec<NoteSet>,
    pub styles: Vec<StyleVector>,
    pub rendered: Rendered,
}

/// Scores a video file into `opts.out_dir`.
pub fn score(opts: &ScoreOptions, progress: &mut dyn Progress) -> Result<Report, ScoreError> {
    let t0 = Instant::now();
    // libavcodec (and the ~95 libraries it links) takes 25-60 ms of one core to open, and the
    // decoder's first frame waits for it: open it now, beside the folder set-up, the MP4
    // index and the extraction model, not once the decoder thread asks for it.
    crate::lavc::load_in_background(None);
    let staging = Staging::create(&opts.out_dir)?;
    let report = score_staged(opts, progress, &staging, t0)
        .map_err(|e| staging.explain(e, SCORE_DISK_FULL_REMEDY))?;
    staging.commit(&OUTPUT_FILES)?;
    Ok(report)
}

/// [`score`]'s work, writing every output into `staging`.
fn score_staged(
    opts: &ScoreOptions,
    progress: &mut dyn Progress,
    staging: &Staging,
    t0: Instant,
) -> Result<Report, ScoreError> {
    let mut timings = Timings::default();

    let model = extract::default_model_path(&opts.data_root);
    progress.stage("analyzing video", 0);
    let t = Instant::now();
    // The note model, the templates and the SoundFont load on other threads while the video is
    // decoded and analysed, so their start-up cost is hidden behind the decode. They run at the
    // decode's priority: on a short clip the note model is what `score` waits for once the
    // analysis is done, and one decoder and the extraction leave part of a second core, which
    // the loader shares with the extraction (the extraction keeps up with the decoder; see
    // [`REFILL_NICE`] for the measurements). The video's length reaches the loader at the
    // first frame: a long piece's refill plan is optimised right after the note model, at
    // idle priority beside the decode.
    let (length_tx, length_rx) = mpsc::channel::<f64>();
    // A video scored.mp4 cannot carry as it is starts being re-encoded at the first frame.
    let mut transcode = None;
    let (analysis, engines) = std::thread::scope(|scope| {
        let loader = std::thread::Builder::new()
            .name("load-engines".into())
            .spawn_scoped(scope, move || {
                Engines::load_with(&opts.data_root, move || {
                    let long = length_rx
                        .recv()
                        .is_ok_and(|s| s >= EARLY_REFILL_MIN_SECONDS);
                    if long {
                        // the refill plan's thread, started from this one, takes its priority
                        crate::threads::set_nice(REFILL_NICE);
                    }
                    long
                })
            })
            .expect("spawn loader thread");
        // The bar gets its length from the source's own probe, at the first frame.
        let mut length_tx = Some(length_tx);
        let analysis = extract::analyze_file(&opts.input, &model, &mut |p| {
            if let Some(tx) = length_tx.take() {
                let _ = tx.send(p.duration.unwrap_or(0.0));
                let ms = p.duration.map_or(0, |d| (d * 1000.0) as u64);
                progress.stage("analyzing video", ms);
                if !opts.warp && !mux::mp4_carries(p.codec) {
                    transcode = Some(mux::Transcode::start(
                        &opts.input,
                        &staging.path(TRANSCODED_VIDEO),
                        &staging.path(TRANSCODE_LOG),
                    ));
                }
            }
            progress.set((p.seconds * 1000.0) as u64)
        });
        // An analysis that failed before its first frame sent no length: the loader must
        // not wait for one.
        drop(length_tx);
        let engines = loader.join().expect("loader thread panicked");
        (analysis, engines)
    });
    let analysis = analysis?;
    let mut engines = engines?;
    timings.analyze = t.elapsed().as_secs_f64();
    info!(
        frames = analysis.frames.len(),
        cuts = analysis.transitions.len(),
        "analysis done"
    );

    let plan = plan_music(&analysis, &opts.prefs, opts.warp, &mut timings)?;
    // ffmpeg starts now, so it is loaded and has the video open when the music is done (or,
    // for a video being re-encoded, once x264 is done).
    let muxer = mux::Muxer::start_with(
        &opts.input,
        &staging.path("scored.mp4"),
        opts.warp.then_some(&plan.warps[..]),
        analysis.fps,
        plan.duration,
        analysis.video_codec.as_deref(),
        transcode.transpose()?,
    )?;
    let scored = make_music(plan, &opts.prefs, &mut engines, &mut timings, progress)?;
    let t = Instant::now();
    progress.stage("writing outputs", 0);
    let analysis_json = serde_json::to_vec(&analysis).expect("analysis serialises");
    fs_write(&staging.path(ANALYSIS_FILE), &analysis_json)?;
    let report = write_outputs(
        staging,
        &opts.input,
        &analysis,
        &scored,
        &opts.prefs,
        opts.warp,
        muxer,
    )?;
    timings.write = t.elapsed().as_secs_f64();
    timings.total = t0.elapsed().as_secs_f64();
    let report = report.with_timings(timings);
    fs_write(&staging.path("report.json"), &report.to_json())?;
    Ok(report)
}

/// Videos at least this long get the note model's refill plan optimised while they are
/// analysed (the plan is needed when a part of the piece fills the model's window; each of
/// the two parts of a 40 s piece has 8 bars or more at 100 BPM and may). On the trailer
/// (55 s) this moves 0.16 CPU-s from the compose stage, where the two parts and ffmpeg's start
/// use both cores, to the idle-priority loader beside the decode: compose 0.30 → 0.22 s,
/// `score` 2.63 → 2.56 s (`tools/bench/ab.sh`, medians of 7), the analysis unchanged.
const EARLY_REFILL_MIN_SECONDS: f64 = 40.0;

/// Nice value of the thread optimising a long piece's refill plan beside the decode (the
/// lowest priority): its 0.16 CPU-s would slow the two decoders of a long file (the
/// trailer, everything at nice 0: 2.118 → 2.174 s). The note model, the templates and the
/// SoundFont load at the decode's own priority. `tools/bench/ab.sh`, the loader at nice 19
/// → this, medians of 11 rounds: bikes 0.402 → 0.384 s, `cup.mp4` 0.417 → 0.405 s,
/// `box.mp4` 0.734 → 0.727 s, carphone 0.223 → 0.226 s, Big Buck Bunny (21 rounds)
/// 0.333 → 0.339 s; 7 rounds: 960x540 1.071 → 1.049 s, the trailer 2.216 → 2.203 s.
const REFILL_NICE: libc::c_int = 19;

/// The loaded models and libraries of the music stages.
pub struct Engines {
    pub composer: Composer,
    pub renderer: Renderer,
}

impl Engines {
    /// Loads (and checks) the note model, the template library and the melody SoundFont.
    /// The note model (optimising it is most of the cost) and the renderer (the template
    /// library opened, each template's audio checked when first played; the SoundFont
    /// parsed) load on two threads at once, both at the calling
    /// thread's priority (Linux gives a new thread its creator's nice value).
    pub fn load(data_root: &Path) -> Result<Self, ScoreError> {
        Self::load_with(data_root, || false)
    }

    /// [`Engines::load`], then, if `long_piece()` says so once the note model is loaded,
    /// starts optimising its refill plan on a thread of its own (at this thread's priority).
    pub fn load_with(
        data_root: &Path,
        long_piece: impl FnOnce() -> bool,
    ) -> Result<Self, ScoreError> {
        let (composer, renderer) = std::thread::scope(|scope| {
            let renderer = std::thread::Builder::new()
                .name("load-renderer".into())
                .spawn_scoped(scope, || {
                    let t = Instant::now();
                    // each template's audio is checked when the piece first plays it
                    let library = render::Library::open(&render::default_library_dir(data_root))?;
                    tracing::debug!(seconds = t.elapsed().as_secs_f64(), "library loaded");
                    let t = Instant::now();
                    let renderer =
                        Renderer::new(library, &render::default_soundfont_path(data_root))?;
                    tracing::debug!(seconds = t.elapsed().as_secs_f64(), "soundfont loaded");
                    Ok::<_, ScoreError>(renderer)
                })
                .expect("spawn loader thread");
            let t = Instant::now();
            let mut composer = Composer::load(&Composer::default_model_path(data_root));
            tracing::debug!(seconds = t.elapsed().as_secs_f64(), "composer loaded");
            if let Ok(c) = composer.as_mut() {
                if long_piece() {
                    c.prepare_refill();
                }
            }
            (composer, renderer.join().expect("loader thread panicked"))
        });
        Ok(Engines {
            composer: composer?,
            renderer: renderer?,
        })
    }
}

/// The plan of an analysis (shared by `score` and `refine`).
pub fn plan_music(
    analysis: &Analysis,
    prefs: &Preferences,
    warp: bool,
    timings: &mut Timings,
) -> Result<Plan, ScoreError> {
    let t = Instant::now();
    let plan = plan::plan_offline(analysis, prefs, warp)?;
    timings.plan = t.elapsed().as_secs_f64();
    info!(tempo = plan.tempo_bpm, bars = plan.bars.len(), "plan done");
    Ok(plan)
}

/// Compose → style → render, from a plan (shared by `score` and `refine`).
pub fn make_music(
    plan: Plan,
    prefs: &Preferences,
    engines: &mut Engines,
    timings: &mut Timings,
    progress: &mut dyn Progress,
) -> Result<Scored, ScoreError> {
    let t = Instant::now();
    progress.stage("composing", plan.bars.len() as u64);
    let seed = prefs
        .seed
        .wrapping_add(MELODY_SEED_STEP.wrapping_mul(prefs.melody_variation as u64));
    let notes = compose(&mut engines.composer, &plan.bars, seed, progress)?;
    timings.compose = t.elapsed().as_secs_f64();

    let t = Instant::now();
    // Genre and lead instrument are decided once for the piece (a track that changes genre at
    // every cut sounds like channel-hopping); energy, mood and key follow each section.
    let piece = style::style_of(&notes, &plan.bars);
    let mut styles = Vec::with_capacity(plan.bars.len());
    let mut s = 0;
    while s < plan.bars.len() {
        let mut e = s + 1;
        while e < plan.bars.len() && !plan.bars[e].section_start {
            e += 1;
        }
        let mut v = style::style_of(&notes[s..e], &plan.bars[s..e]);
        v.genre = piece.genre;
        v.instrument = piece.instrument;
        styles.extend(std::iter::repeat_n(v, e - s));
        s = e;
    }
    timings.style = t.elapsed().as_secs_f64();

    let t = Instant::now();
    progress.stage("rendering", 0);
    let renderer = &mut engines.renderer;
    let length = (plan.duration * SAMPLE_RATE as f64).round() as usize;
    let rendered = renderer.render(&plan.bars, &notes, &styles, length)?;
    timings.render = t.elapsed().as_secs_f64();
    Ok(Scored {
        plan,
        notes,
        styles,
        rendered,
    })
}

/// The notes of every bar of the plan. A long piece is written in two parts at once, the
/// second from a section start near the middle ([`second_part_start`]) on a sibling
/// composer: the note model was trained on crops that start at any bar, and a section start
/// is where a phrase begins anyway.
fn compose(
    composer: &mut Composer,
    plan: &[crate::plan::BarPlan],
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<Vec<NoteSet>, ScoreError> {
    let controls: Vec<BarControls> = plan
        .iter()
        .enumerate()
        .map(|(i, bar)| BarControls {
            density: bar.density_class,
            strength: bar.strength_class,
            section_start: bar.section_start,
            // the plan sees the whole video: the next bar's cut (or the end) is known here
            next_section_start: plan.get(i + 1).is_none_or(|b| b.section_start),
            chord: bar.chord,
            beats: bar.beats,
        })
        .collect();
    let starts: Vec<bool> = plan.iter().map(|b| b.section_start).collect();
    let k = second_part_start(&starts).unwrap_or(plan.len());
    let mut second = (k < plan.len()).then(|| composer.sibling()).transpose()?;
    composer.start_piece(seed, &controls[..k]);
    if let Some(c) = second.as_mut() {
        c.start_piece(seed.wrapping_add(SECOND_PART_SEED_STEP), &controls[k..]);
    }
    let (first, later) = (&plan[..k], &plan[k..]);
    std::thread::scope(|scope| {
        let second = second.as_mut().map(|c| {
            std::thread::Builder::new()
                .name("compose-2".into())
                .spawn_scoped(scope, || -> Result<Vec<NoteSet>, ScoreError> {
                    let mut notes = Vec::with_capacity(later.len());
                    for (bar, ctl) in later.iter().zip(&controls[k..]) {
                        notes.push(c.next_bar(bar.index, ctl)?);
                    }
                    Ok(notes)
                })
                .expect("spawn composer thread")
        });
        let mut notes = Vec::with_capacity(plan.len());
        let written = (|| {
            for (i, (bar, ctl)) in first.iter().zip(&controls).enumerate() {
                notes.push(composer.next_bar(bar.index, ctl)?);
                progress.set(i as u64 + 1);
            }
            Ok::<_, ScoreError>(())
        })();
        let rest = second.map(|h| h.join().expect("composer thread panicked"));
        written?;
        if let Some(rest) = rest {
            notes.extend(rest?);
        }
        progress.set(plan.len() as u64);
        Ok(notes)
    })
}

/// The bar where a long piece's second part starts, given which bars start a section: the
/// section start nearest the middle, within the middle third of the bars. `None` (a short
/// piece, or no section starts there): the piece is written in one part.
fn second_part_start(section_starts: &[bool]) -> Option<usize> {
    let n = section_starts.len();
    if n < SPLIT_COMPOSE_MIN_BARS {
        return None;
    }
    (n / 3..=2 * n / 3)
        .filter(|&k| section_starts[k])
        .min_by_key(|&k| k.abs_diff(n / 2))
}

/// Writes music.wav, notes.mid and report.png into the staging folder, and has `muxer`
/// (started by the caller on the staging folder's scored.mp4) finish scored.mp4; returns
/// the report (written by the caller once timings are known).
fn write_outputs(
    staging: &Staging,
    input: &Path,
    analysis: &Analysis,
    scored: &Scored,
    prefs: &Preferences,
    warp: bool,
    muxer: mux::Muxer,
) -> Result<Report, ScoreError> {
    let png = staging.path("report.png");
    // The mux (AAC encoding is the longest step here) takes the music on another thread;
    // this one writes music.wav and notes.mid and draws the picture meanwhile.
    let (muxed, written) = std::thread::scope(|scope| {
        let muxer = std::thread::Builder::new()
            .name("mux".into())
            .spawn_scoped(scope, || {
                let t = Instant::now();
                let r = muxer.finish(&scored.rendered.pcm);
                tracing::debug!(seconds = t.elapsed().as_secs_f64(), "scored.mp4 muxed");
                r
            })
            .expect("spawn mux thread");
        let written = (|| {
            let t = Instant::now();
            write_wav(&staging.path("music.wav"), &scored.rendered.pcm)?;
            tracing::debug!(seconds = t.elapsed().as_secs_f64(), "music.wav written");
            let t = Instant::now();
            let tracks = midi_tracks(scored);
            let meters = meter_changes(&scored.plan);
            midi::write_midi_with_meters(
                &staging.path("notes.mid"),
                scored.plan.tempo_bpm,
                &meters,
                &tracks,
            )
            .map_err(|e| ScoreError::Output {
                path: staging.final_dir.display().to_string(),
                reason: e.to_string(),
            })?;
            tracing::debug!(seconds = t.elapsed().as_secs_f64(), "notes.mid written");
            let t = Instant::now();
            let report = Report::new(input, analysis, scored, prefs, warp);
            plot::draw(&png, &report).map_err(|e| ScoreError::Output {
                path: staging.final_dir.display().to_string(),
                reason: format!("report.png: {e}"),
            })?;
            tracing::debug!(seconds = t.elapsed().as_secs_f64(), "report.png drawn");
            // fsynced now, while the music is still being encoded, not at the commit
            for name in ["music.wav", "notes.mid", "report.png"] {
                fs::File::open(staging.path(name))
                    .and_then(|f| f.sync_all())
                    .map_err(|e| ScoreError::Output {
                        path: staging.final_dir.display().to_string(),
                        reason: format!("{name}: {e}"),
                    })?;
            }
            Ok::<_, ScoreError>(report)
        })();
        (muxer.join().expect("mux thread panicked"), written)
    });
    muxed?;
    written
}

/// The melody as heard (every voice the note model wrote, fitted to the template's chords)
/// followed by the template's parts, on the output timeline.
fn midi_tracks(scored: &Scored) -> Vec<MidiTrack> {
    let ticks_per_second = scored.plan.tempo_bpm / 60.0 * TICKS_PER_BEAT as f64;
    let bar_ticks: Vec<u64> = scored
        .plan
        .bars
        .iter()
        .map(|b| (b.start * ticks_per_second).round() as u64)
        .collect();
    let mut melody = Vec::new();
    for (set, &bar_tick) in scored.rendered.melody.iter().zip(&bar_ticks) {
        for n in &set.notes {
            melody.push(TimedNote {
                tick: bar_tick + n.start as u64,
                duration: n.duration as u64,
                pitch: n.pitch,
                velocity: n.velocity,
            });
        }
    }
    let mut tracks = vec![MidiTrack {
        name: "melody".into(),
        channel: 0,
        program: scored.rendered.melody_program,
        notes: melody,
    }];
    // The renderer already lays the template parts on the output timeline (short bars
    // trimmed); give them the documented part names.
    for t in &scored.rendered.backing {
        let mut t = t.clone();
        t.name = part_name(&t).into();
        tracks.push(t);
    }
    tracks
}

/// Time-signature changes that keep a DAW's bar lines on the planned bars: a pickup gets its
/// own bar (e.g. 3/16), a short bar its own meter (e.g. 2/4), and the next whole bar restores 4/4.
fn meter_changes(plan: &Plan) -> Vec<midi::Meter> {
    let ticks_per_second = plan.tempo_bpm / 60.0 * TICKS_PER_BEAT as f64;
    let mut out = Vec::new();
    let mut current = BEATS_PER_BAR as u8;
    if plan.pickup_sixteenths > 0 {
        out.push(midi::Meter::sixteenths(0, plan.pickup_sixteenths));
        current = 0; // the first bar states its meter
    }
    for b in &plan.bars {
        if b.beats != current {
            out.push(midi::Meter::quarters(
                (b.start * ticks_per_second).round() as u64,
                b.beats,
            ));
            current = b.beats;
        }
    }
    out
}

/// The documented part name (`docs/ref/outputs.md`) of a template track.
fn part_name(t: &MidiTrack) -> &'static str {
    let n = t.name.to_lowercase();
    if t.channel == midi::DRUM_CHANNEL || n.contains("drum") || n.contains("perc") {
        "drums"
    } else if n.contains("bass") {
        "bass"
    } else {
        "chords"
    }
}

/// Samples converted and written to music.wav at a time (256 kB of 16-bit samples).
const WAV_BLOCK_SAMPLES: usize = 128 * 1024;

/// 16-bit stereo WAV at the output rate.
fn write_wav(path: &Path, pcm: &[f32]) -> Result<(), ScoreError> {
    let err = |e: String| ScoreError::Output {
        path: path.display().to_string(),
        reason: e,
    };
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| err(e.to_string()))?;
    // hound's 16-bit writer buffers all it is given: a block at a time keeps that small
    // (a whole 10-minute piece was another 116 MB).
    for block in pcm.chunks(WAV_BLOCK_SAMPLES) {
        let mut w16 = w.get_i16_writer(block.len() as u32);
        for &s in block {
            w16.write_sample(mux::pcm_i16(s));
        }
        w16.flush().map_err(|e| err(e.to_string()))?;
    }
    w.finalize().map_err(|e| err(e.to_string()))
}

fn fs_write(path: &Path, bytes: &[u8]) -> Result<(), ScoreError> {
    fs::write(path, bytes).map_err(|e| ScoreError::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Free space, in bytes, below which a failed write into the output folder is put down to a
/// full disk: a write fails there when the space left is smaller than what it writes (a few
/// KiB; ffmpeg said only "Error initializing output stream 0:1" when scored.mp4 hit a full
/// disk).
const DISK_FULL_BYTES: u64 = 1 << 20;

/// What to do when `score`'s output folder is on a full disk.
const SCORE_DISK_FULL_REMEDY: &str = "free some space there or choose another folder with -o";

/// Bytes an unprivileged process may still write on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` a statvfs buffer that statvfs fills on
    // success; it is read only then.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it wrote the whole struct.
    let st = unsafe { st.assume_init() };
    // the fields are narrower on some 32-bit targets
    #[allow(clippy::useless_conversion)]
    Some(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

/// `e`, or [`ScoreError::DiskFull`] when `e` is a failed write (ours or ffmpeg's) and the
/// disk holding the output folder has less than [`DISK_FULL_BYTES`] free.
fn explain_write_error(
    out_dir: &Path,
    free: Option<u64>,
    remedy: &'static str,
    e: ScoreError,
) -> ScoreError {
    match (&e, free) {
        (ScoreError::Output { .. } | ScoreError::Mux(_), Some(free)) if free < DISK_FULL_BYTES => {
            ScoreError::DiskFull {
                path: out_dir.display().to_string(),
                free_kib: free / 1024,
                remedy,
            }
        }
        _ => e,
    }
}

/// A hidden folder inside the output folder where outputs are written before they are
/// renamed into place; removed (with the output folder, if this run created it) on failure.
pub(crate) struct Staging {
    dir: PathBuf,
    final_dir: PathBuf,
    created_out_dir: bool,
    committed: bool,
    /// The output folder, open and locked (`flock`, exclusive) while this run writes into
    /// it: a second `score` or `refine` on the same folder is refused instead of mixing its
    /// outputs with this run's. Released when the run ends, however it ends.
    _lock: fs::File,
}

/// Opens `dir` and takes an exclusive `flock` on it without waiting; the reason, as the
/// user should read it, when another process holds it.
fn lock_folder(dir: &Path) -> Result<fs::File, String> {
    use std::os::unix::io::AsRawFd;
    let f = fs::File::open(dir).map_err(|e| format!("{e}; choose a folder you can read"))?;
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(f);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err("another undertone is writing there; wait for it to finish (or score into another folder with -o)".into())
    } else {
        // a filesystem without locks (some network mounts): write without one
        tracing::debug!(folder = %dir.display(), "no lock on the output folder: {e}");
        Ok(f)
    }
}

/// The folder inside `out_dir` where this process writes its outputs before renaming them
/// into place (hidden, named by the process id).
pub fn staging_dir(out_dir: &Path) -> PathBuf {
    out_dir.join(format!(".undertone-staging-{}", std::process::id()))
}

impl Staging {
    pub(crate) fn create(out_dir: &Path) -> Result<Self, ScoreError> {
        let err = |reason: String| ScoreError::Output {
            path: out_dir.display().to_string(),
            reason,
        };
        let created_out_dir = !out_dir.exists();
        if out_dir.exists() && !out_dir.is_dir() {
            return Err(err(
                "it exists and is not a folder; choose another -o".into()
            ));
        }
        fs::create_dir_all(out_dir)
            .map_err(|e| err(format!("{e}; choose a folder you can write to")))?;
        let lock = match lock_folder(out_dir) {
            Ok(lock) => lock,
            Err(reason) => {
                if created_out_dir {
                    let _ = fs::remove_dir(out_dir);
                }
                return Err(err(reason));
            }
        };
        let dir = staging_dir(out_dir);
        if let Err(e) = fs::create_dir(&dir) {
            if created_out_dir {
                let _ = fs::remove_dir(out_dir);
            }
            return Err(err(format!("{e}; choose a folder you can write to")));
        }
        Ok(Staging {
            dir,
            final_dir: out_dir.to_path_buf(),
            created_out_dir,
            committed: false,
            _lock: lock,
        })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `e` as the user should read it: a write that failed on a full disk says so, and
    /// `remedy` (measured while the staged files still take their space).
    pub(crate) fn explain(&self, e: ScoreError, remedy: &'static str) -> ScoreError {
        explain_write_error(&self.final_dir, free_bytes(&self.dir), remedy, e)
    }

    /// Fsyncs and renames every file into the output folder.
    pub(crate) fn commit(mut self, names: &[&str]) -> Result<(), ScoreError> {
        // Each file is fsynced (most were, as soon as they were written, beside the rest of
        // the work) and renamed into place; the folder is fsynced once, after the last.
        for name in names {
            let from = self.dir.join(name);
            crate::fsutil::persist(&from, &self.final_dir.join(name)).map_err(|e| {
                ScoreError::Output {
                    path: self.final_dir.join(name).display().to_string(),
                    reason: e.to_string(),
                }
            })?;
        }
        if let Some(last) = names.last() {
            crate::fsutil::sync_parent(&self.final_dir.join(last));
        }
        self.committed = true;
        let _ = fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
            if self.created_out_dir {
                let _ = fs::remove_dir(&self.final_dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed write on a disk with less than a MiB free is reported as a full disk, with
    /// what to do; other failures, or any failure with room left, keep their own message.
    #[test]
    fn a_write_that_fails_on_a_full_disk_says_so() {
        let dir = Path::new("/media/card/out");
        let mux = || {
            ScoreError::Mux(
                "ffmpeg could not write scored.mp4: Error initializing output stream 0:1 --".into(),
            )
        };
        let e = explain_write_error(dir, Some(12 * 1024), SCORE_DISK_FULL_REMEDY, mux());
        assert_eq!(
            e.to_string(),
            "cannot write output folder /media/card/out: its disk is full (12 KiB free); \
             free some space there or choose another folder with -o"
        );
        let output = ScoreError::Output {
            path: "/media/card/out".into(),
            reason: "No space left on device (os error 28)".into(),
        };
        assert!(matches!(
            explain_write_error(dir, Some(0), SCORE_DISK_FULL_REMEDY, output),
            ScoreError::DiskFull { free_kib: 0, .. }
        ));
        assert!(matches!(
            explain_write_error(
                dir,
                Some(DISK_FULL_BYTES * 100),
                SCORE_DISK_FULL_REMEDY,
                mux()
            ),
            ScoreError::Mux(_)
        ));
        assert!(matches!(
            explain_write_error(dir, None, SCORE_DISK_FULL_REMEDY, mux()),
            ScoreError::Mux(_)
        ));
        let previous = ScoreError::Previous {
            path: "x".into(),
            reason: "y".into(),
        };
        assert!(matches!(
            explain_write_error(dir, Some(0), SCORE_DISK_FULL_REMEDY, previous),
            ScoreError::Previous { .. }
        ));
        // the real call on a folder with room
        assert!(free_bytes(Path::new("/tmp")).is_some_and(|b| b > 0));
    }

    fn bars(n: usize, starts: &[usize]) -> Vec<bool> {
        (0..n).map(|i| i == 0 || starts.contains(&i)).collect()
    }

    /// The second part starts at the section start nearest the middle, within the middle
    /// third; short pieces and pieces without one there are written in one part.
    #[test]
    fn a_long_piece_is_parted_at_its_middle_section_start() {
        assert_eq!(second_part_start(&bars(24, &[5, 10, 15, 20])), Some(10));
        assert_eq!(second_part_start(&bars(24, &[9, 14])), Some(14));
        assert_eq!(second_part_start(&bars(24, &[3, 20])), None);
        let n = SPLIT_COMPOSE_MIN_BARS;
        assert_eq!(second_part_start(&bars(n - 1, &[n / 2])), None);
        assert_eq!(second_part_start(&bars(n, &[n / 2])), Some(n / 2));
    }
}

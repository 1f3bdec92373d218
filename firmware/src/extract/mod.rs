//! `extract` stage: per-frame motion speed, motion saliency, transition evidence and
//! visual-beat (impact) envelope, then cuts, visual beats and a visual tempo.
//!
//! | file | what |
//! |---|---|
//! | `model.rs` | the extraction ONNX model (dense motion maps + transition evidence) run by tract |
//! | `features.rs` | speed and motion saliency (camera-motion fit) from the flow map |
//! | `post.rs` | cut probability and detection, gradual transitions, impact, beats, tempo |
//! | `plot.rs` | the PNG `undertone analyze --png` writes |
//!
//! Design and measured figures: `docs/design/extraction.md`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::source::{
    convert::resize_area, AnalysisSize, FileSource, Frame, Source, SourceError, MIN_ANALYSIS_SIDE,
};

mod conv;
mod features;
mod model;
pub mod plot;
mod post;

pub use features::{saliency, Saliency, NOISE_PX};
pub use model::{Evidence, ExtractModel, PairMaps};
pub use post::{CUT_WINDOW, MIN_CUT_GAP_S};

/// Features of one frame (computed from it and the frame before).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureFrame {
    /// Presentation time in seconds.
    pub t: f64,
    /// Motion speed in frame diagonals per second (resolution- and fps-independent).
    pub speed: f32,
    /// Motion saliency 0..=1: how conspicuous the motion is against the rest of the frame.
    pub saliency: f32,
    /// Probability 0..=1 that a scene transition happens at this frame.
    pub transition: f32,
    /// Visual impact envelope (sharp motion change), for visual beats.
    pub impact: f32,
    /// Change of the frame's mean brightness since the previous frame, in units of its contrast
    /// (|Δ mean luma| / luma standard deviation; 0 = steady light).
    #[serde(default)]
    pub light: f32,
}

/// Brightness change ([`FeatureFrame::light`]) at which a frame's flow counts as no motion.
/// Block flow assumes constant brightness, so a flash, a fade or a pulsing light reads as
/// motion (the trailer's pulsing close-ups: 3-4 times Farneback's share); Farneback, fitting
/// local polynomials, barely reacts. Per bar of the evaluation clips (`tools/eval/run_clips.sh`),
/// ρ(Farneback speed, the plan's bar speed) went 0.75 → 0.87 (trailer), 0.86 → 0.94 (trailer
/// warped), 0.72 → 0.74 and 0.73 → 0.79 (cuts montage, plain and warped), 0.90 → 0.91 (speeds
/// montage) and 0.89 → 0.86 (bikes); 0.80 → 0.86 over all of them.
pub const LIGHT_CHANGE_NO_MOTION: f32 = 1.0 / 3.0;

impl FeatureFrame {
    /// The frame's speed counted as motion: a frame inside a scene transition changes by
    /// replacing or blending the picture, not by moving it, so its flow is discounted by the
    /// transition probability (a hard cut counts as no motion, as the evaluation drops the
    /// frame pair across a cut; a dissolve, whose block flow is mostly blending artefacts, counts
    /// by how unsure the detector is); a frame whose brightness jumps changes by its light, so
    /// its flow is discounted by the jump (see [`LIGHT_CHANGE_NO_MOTION`]). Per-bar speeds
    /// average this.
    pub fn motion_speed(&self) -> f32 {
        let lit = (self.light.max(0.0) / LIGHT_CHANGE_NO_MOTION).min(1.0);
        self.speed * (1.0 - self.transition.clamp(0.0, 1.0)) * (1.0 - lit)
    }
}

/// Kind of scene transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionKind {
    Cut,
    Gradual,
}

/// A detected scene transition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Time of the (first frame of the) new shot, seconds.
    pub t: f64,
    /// End of the transition (equal to `t` for a hard cut), seconds.
    pub end: f64,
    pub kind: TransitionKind,
    pub confidence: f32,
}

/// Everything extraction found in a whole video (offline) — what `analyze` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub duration: f64,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub frames: Vec<FeatureFrame>,
    pub transitions: Vec<Transition>,
    /// Times of visual beats (sharp motion changes), seconds.
    pub visual_beats: Vec<f64>,
    /// Visual tempo estimate in BPM, when the motion has a rhythm.
    pub visual_tempo_bpm: Option<f64>,
    /// The input's video codec as ffmpeg names it ("h264", "hevc", …), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<String>,
}

/// Why extraction failed. Each message is one line naming the input and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{path}: the extraction model is missing; run from the source checkout, pass --data DIR, or rebuild it with tools/train/extract/build_model.py")]
    ModelMissing { path: PathBuf },
    #[error("{path}: not a usable extraction model ({detail}); rebuild it with tools/train/extract/build_model.py")]
    ModelInvalid { path: PathBuf, detail: String },
    #[error("{path}: the extraction model failed on a frame ({detail})")]
    Inference { path: PathBuf, detail: String },
    #[error("frame at {pts:.3} s is {width}x{height}: too small to analyse (needs at least {min}x{min})")]
    FrameTooSmall {
        pts: f64,
        width: u32,
        height: u32,
        min: u32,
    },
    #[error("frame at {pts:.3} s: {detail}")]
    BadFrame { pts: f64, detail: String },
    #[error("{path}: only {frames} video frame(s); analysis needs at least 2")]
    TooShort { path: PathBuf, frames: usize },
}

/// File name of the extraction model under `<data root>/models/extract/`.
pub const MODEL_FILE: &str = "extract_v2.onnx";

/// The extraction model inside a data root (`--data`, `$UNDERTONE_DATA`, the checkout).
pub fn default_model_path(data_root: &Path) -> PathBuf {
    data_root.join("models").join("extract").join(MODEL_FILE)
}

/// Frames wider or taller than this are area-resampled to the analysis size before the
/// model sees them (a camera or caller may hand over full-size frames).
const MAX_MODEL_WIDTH: u32 = 2 * crate::source::ANALYSIS_WIDTH;
const MAX_MODEL_HEIGHT: u32 = 4 * crate::source::ANALYSIS_WIDTH;
/// Frame interval used until the stream shows its own (and when timestamps are broken).
const DEFAULT_DT: f64 = 1.0 / 30.0;
/// Frames of per-frame records kept behind the output (look-back of the cut gap).
const KEEP_BEHIND: usize = 32;
/// Most frames in a row taken as repeats of one picture (see [`Extractor::push`]): enough for
/// any frame-rate conversion up to the analysis rate (10 frames/s content at 30 repeats each
/// picture twice), while a still picture (a paused stream, a frozen camera) is analysed as
/// such and its features keep coming with the usual latency.
const MAX_REPEATS: usize = 4;

#[derive(Debug, Clone)]
struct Rec {
    t: f64,
    speed: f32,
    saliency: f32,
    mad: f32,
    structure: f32,
    /// Directogram in diagonals per second.
    dgram: [f32; model::DIRECTIONS],
    p: Option<f32>,
    cut: bool,
    /// See [`FeatureFrame::light`].
    light: f32,
    /// Times of the frames after this one that repeat its picture exactly.
    repeats: Vec<f64>,
}

/// Streaming extractor: push frames in presentation order, get [`FeatureFrame`]s back
/// [`Extractor::LATENCY_FRAMES`] frames later (the cut detector looks that far ahead).
pub struct Extractor {
    model: ExtractModel,
    /// Size and timestamp of the previous frame (the model keeps its pixels' state).
    prev: Option<(u32, u32, f64)>,
    dt: f64,
    recs: VecDeque<Rec>,
    /// Index (in `recs`) of the next record to emit.
    next: usize,
    cuts: Vec<Transition>,
    history: Option<Vec<post::History>>,
    last_cut_emitted: bool,
    /// Mean luma of the previous frame (for [`FeatureFrame::light`]); `None` after a reset.
    prev_luma_mean: Option<f32>,
    /// Whether repeated pictures are recognised (offline only, see [`Extractor::push`]).
    collapse_repeats: bool,
    /// The previous picture as the model saw it (to recognise a frame that repeats it).
    prev_gray: Vec<u8>,
    /// Features decided and not yet returned, in frame order (a picture's, then its repeats').
    ready: VecDeque<FeatureFrame>,
}

impl Extractor {
    /// Output latency in frames: the cut decision for frame t needs frames up to t + 4.
    pub const LATENCY_FRAMES: usize = 2 * CUT_WINDOW;

    /// Loads the extraction model (see [`default_model_path`]).
    pub fn load(model_path: &Path) -> Result<Self, ExtractError> {
        Ok(Self::with_model(ExtractModel::load(model_path)?))
    }

    /// [`Extractor::load`] for frames of `w` x `h` (the model is optimised for their size
    /// once, instead of for a default size and then again at the first frame).
    pub fn load_for(model_path: &Path, w: u32, h: u32) -> Result<Self, ExtractError> {
        let (mw, mh) = Self::model_size(w, h);
        Ok(Self::with_model(ExtractModel::load_sized(
            model_path, mw, mh,
        )?))
    }

    fn with_model(model: ExtractModel) -> Self {
        Extractor {
            model,
            prev: None,
            dt: DEFAULT_DT,
            recs: VecDeque::new(),
            next: 0,
            cuts: Vec::new(),
            history: None,
            last_cut_emitted: false,
            prev_luma_mean: None,
            collapse_repeats: false,
            prev_gray: Vec::new(),
            ready: VecDeque::new(),
        }
    }

    /// Keeps a compact per-frame history for the offline passes (gradual transitions).
    fn keep_history(&mut self) {
        self.history = Some(Vec::new());
    }

    /// Recognises repeated pictures (see [`Extractor::push`]). Offline only: a live source's
    /// run of repeats (a capture card showing a still slide) would hold back the decision on
    /// the cut before it by up to [`MAX_REPEATS`] + 1 frames per picture of look-ahead.
    fn collapse_repeats(&mut self) {
        self.collapse_repeats = true;
    }

    /// The size the model sees frames of `w` x `h` at (analysis-sized frames are only
    /// cropped to multiples of 8; [`Extractor::prepare`] resamples larger ones first).
    fn model_size(w: u32, h: u32) -> (u32, u32) {
        let (w, h) = if w > MAX_MODEL_WIDTH || h > MAX_MODEL_HEIGHT {
            AnalysisSize::default().frame_size(w, h)
        } else {
            (w, h)
        };
        let m = model::MODEL_MULTIPLE;
        (w / m * m, h / m * m)
    }

    /// Resamples and crops a frame to what the model takes (sides multiples of 8).
    fn prepare(frame: &Frame) -> Result<(u32, u32, Cow<'_, [u8]>), ExtractError> {
        let (w, h) = (frame.width, frame.height);
        if frame.gray.len() as u64 != w as u64 * h as u64 {
            return Err(ExtractError::BadFrame {
                pts: frame.pts,
                detail: format!(
                    "{w}x{h} needs {} luma bytes, got {}",
                    w as u64 * h as u64,
                    frame.gray.len()
                ),
            });
        }
        if w < MIN_ANALYSIS_SIDE || h < MIN_ANALYSIS_SIDE {
            return Err(ExtractError::FrameTooSmall {
                pts: frame.pts,
                width: w,
                height: h,
                min: MIN_ANALYSIS_SIDE,
            });
        }
        let (mut w, mut h, mut gray) = (w, h, Cow::Borrowed(&frame.gray[..]));
        if w > MAX_MODEL_WIDTH || h > MAX_MODEL_HEIGHT {
            let (aw, ah) = AnalysisSize::default().frame_size(w, h);
            gray = Cow::Owned(resize_area(&frame.gray, w, h, aw, ah));
            (w, h) = (aw, ah);
        }
        let (cw, ch) = Self::model_size(w, h);
        if (cw, ch) == (w, h) {
            return Ok((w, h, gray));
        }
        let (x0, y0) = (((w - cw) / 2) as usize, ((h - ch) / 2) as usize);
        let mut out = Vec::with_capacity((cw * ch) as usize);
        for y in 0..ch as usize {
            let row = (y0 + y) * w as usize + x0;
            out.extend_from_slice(&gray[row..row + cw as usize]);
        }
        Ok((cw, ch, Cow::Owned(out)))
    }

    /// Adds one frame; returns the features of an earlier frame once its look-ahead is
    /// complete (`None` while the pipeline fills).
    ///
    /// Offline ([`analyze_file`]), a frame that repeats the previous picture exactly (the
    /// duplicates a frame-rate conversion inserts: 24 frames/s content at 30 or 60, a
    /// variable-rate phone video or a stream with dropped frames made regular) is not a new
    /// picture: the next picture is compared with the one it repeats, over both intervals,
    /// and the repeat shares that pair's motion (see [`Extractor::emit`]); its features come
    /// out in frame order, with the usual latency counted in pictures. Counted as a pair that
    /// did not move, every fifth frame of 24 frames/s content at 30 read as motion stopping
    /// and starting again, and the cut and transition detectors, which compare a frame's
    /// change with its neighbours', saw the changes of a dissolve stand out against those
    /// still pairs as cuts.
    pub fn push(&mut self, frame: &Frame) -> Result<Option<FeatureFrame>, ExtractError> {
        let (w, h, gray) = Self::prepare(frame)?;
        let repeat = self.collapse_repeats
            && matches!(self.prev, Some((pw, ph, pt)) if (pw, ph) == (w, h) && frame.pts > pt)
            && *gray == self.prev_gray[..];
        if let Some(last) = self
            .recs
            .back_mut()
            .filter(|r| repeat && r.repeats.len() < MAX_REPEATS)
        {
            last.repeats.push(frame.pts);
            return Ok(self.ready.pop_front());
        }
        match self.prev {
            Some((pw, ph, pt)) if (pw, ph) == (w, h) => {
                let dt = frame.pts - pt;
                if dt > 1e-4 && dt < 1.0 {
                    self.dt = dt;
                } else {
                    debug!(
                        pts = frame.pts,
                        dt, "irregular timestamp; using the last frame interval"
                    );
                }
            }
            Some((pw, ph, _)) => {
                warn!(from = ?(pw, ph), to = ?(w, h), "frame size changed; restarting motion analysis");
                self.model.reset();
                self.prev_luma_mean = None;
            }
            None => {
                self.model.reset();
                self.prev_luma_mean = None;
            }
        }
        let rec = match self.model.push(&gray, w, h)? {
            Some(maps) => self.record(frame.pts, w, h, &maps),
            // First frame (or first after a size change): no motion yet.
            None => Rec {
                t: frame.pts,
                speed: 0.0,
                saliency: 0.0,
                mad: 0.0,
                structure: 0.0,
                dgram: [0.0; 8],
                p: None,
                cut: false,
                light: 0.0,
                repeats: Vec::new(),
            },
        };
        self.prev = Some((w, h, frame.pts));
        if self.collapse_repeats {
            self.prev_gray.clear();
            self.prev_gray.extend_from_slice(&gray);
        }
        self.recs.push_back(rec);
        self.fill_probabilities(false);
        self.emit(false);
        Ok(self.ready.pop_front())
    }

    /// Flushes the frames still waiting for look-ahead (end of stream).
    pub fn finish(&mut self) -> Vec<FeatureFrame> {
        self.fill_probabilities(true);
        while self.emit(true) {}
        self.ready.drain(..).collect()
    }

    /// Hard cuts detected so far (taken: each is returned once).
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.cuts)
    }

    fn record(&mut self, t: f64, w: u32, h: u32, maps: &PairMaps) -> Rec {
        let diag = ((w * w + h * h) as f32).sqrt();
        let per_s = 1.0 / (diag * self.dt as f32);
        let sal = features::saliency(&maps.dx, &maps.dy, &maps.conf, maps.bw, maps.bh);
        let speed = sal.speed * per_s;
        let sal = sal.saliency;
        let mut dgram = maps.evidence.directogram;
        dgram.iter_mut().for_each(|d| *d *= per_s);
        let mean = maps.evidence.luma_mean;
        let light = self.prev_luma_mean.replace(mean).map_or(0.0, |p| {
            (mean - p).abs() / maps.evidence.luma_sd.max(post::FLAT_SD)
        });
        if let Some(hist) = self.history.as_mut() {
            hist.push(post::History {
                t,
                speed,
                mad: maps.evidence.mad,
                luma_sd: maps.evidence.luma_sd,
                thumb: maps.thumb.clone(),
            });
        }
        Rec {
            t,
            speed,
            saliency: sal,
            mad: maps.evidence.mad,
            structure: maps.evidence.structure,
            dgram,
            p: None,
            cut: false,
            light,
            repeats: Vec::new(),
        }
    }

    fn fill_probabilities(&mut self, at_end: bool) {
        let n = self.recs.len();
        let mad: Vec<f32> = self.recs.iter().map(|r| r.mad).collect();
        let st: Vec<f32> = self.recs.iter().map(|r| r.structure).collect();
        for i in 0..n {
            if self.recs[i].p.is_none() && (at_end || i + CUT_WINDOW < n) {
                // The first frame of a stream (no pair) is never a cut.
                let first = i == 0 && self.recs[i].mad == 0.0 && self.next == 0;
                let p = if first {
                    0.0
                } else {
                    post::cut_probability(&mad, &st, i)
                };
                tracing::trace!(
                    t = self.recs[i].t,
                    mad = mad[i],
                    structure = st[i],
                    p,
                    "cut evidence"
                );
                self.recs[i].p = Some(p);
            }
        }
    }

    /// Decides the next picture's features once its look-ahead is there, and queues them
    /// with its repeats' in [`Extractor::ready`]; false when it has to wait.
    fn emit(&mut self, at_end: bool) -> bool {
        let i = self.next;
        let n = self.recs.len();
        if i >= n || (!at_end && i + 2 * CUT_WINDOW >= n) {
            return false;
        }
        let known = self.recs.iter().take_while(|r| r.p.is_some()).count();
        let p: Vec<f32> = self
            .recs
            .iter()
            .take(known)
            .map(|r| r.p.unwrap_or(0.0))
            .collect();
        let t: Vec<f64> = self.recs.iter().take(known).map(|r| r.t).collect();
        let cut = post::is_cut(&p, &t, i);
        let impact = if i == 0 || cut || self.last_cut_emitted {
            0.0 // no meaningful motion change across a cut or at the start
        } else {
            post::impact(&self.recs[i - 1].dgram, &self.recs[i].dgram)
        };
        let r = &mut self.recs[i];
        r.cut = cut;
        if cut {
            self.cuts.push(Transition {
                t: r.t,
                end: r.t,
                kind: TransitionKind::Cut,
                confidence: p[i],
            });
        }
        self.last_cut_emitted = cut;
        let out = FeatureFrame {
            t: r.t,
            speed: r.speed,
            saliency: r.saliency,
            transition: p[i],
            impact,
            light: r.light,
        };
        self.ready.push_back(out);
        // The repeats of this picture lie inside the pair that compares it with the next one:
        // they share that pair's motion as it counts (its flow per second over the whole
        // span, discounted as a transition or a light change discounts it: see
        // FeatureFrame::motion_speed), so a bar's mean speed is the content's. Nothing changes
        // into a repeat (no transition, no impact, steady light). After the last picture,
        // its own motion goes on.
        let spanning = self.recs.get(i + 1).map_or(out, |n| FeatureFrame {
            t: n.t,
            speed: n.speed,
            saliency: n.saliency,
            transition: n.p.unwrap_or(0.0),
            impact: 0.0,
            light: n.light,
        });
        let repeat = FeatureFrame {
            t: out.t,
            speed: spanning.motion_speed(),
            saliency: spanning.saliency,
            transition: 0.0,
            impact: 0.0,
            light: 0.0,
        };
        let repeats = std::mem::take(&mut self.recs[i].repeats);
        self.ready
            .extend(repeats.into_iter().map(|t| FeatureFrame { t, ..repeat }));
        self.next += 1;
        while self.next > KEEP_BEHIND {
            self.recs.pop_front();
            self.next -= 1;
        }
        true
    }
}

/// Cost of an extraction run (for `analyze`'s summary and the benchmark).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ExtractStats {
    /// Frames timed (all but the first two).
    pub frames: usize,
    /// Wall-clock seconds spent inside [`Extractor::push`] (model + post-processing) for those
    /// frames, not counting decoding (which runs in ffmpeg, in parallel).
    pub extract_seconds: f64,
    /// CPU seconds this thread spent inside [`Extractor::push`] for those frames: the cost on
    /// one core, unaffected by other processes competing for the CPU (on a loaded machine the
    /// wall-clock figure also counts the time the thread waited to be scheduled).
    pub extract_cpu_seconds: f64,
    /// The first two pushes: the graph is optimised for the frame size there (once per stream).
    pub setup_seconds: f64,
    /// Wall-clock seconds of the whole analysis including waiting for the decoder.
    pub total_seconds: f64,
}

/// How far [`analyze_file`] is: the time of the frame just analysed, and the file's
/// duration and video codec as its probe found them (the total for a progress bar, and
/// whether `score` must re-encode the video, without a second probe).
#[derive(Debug, Clone, Copy)]
pub struct Progressed<'a> {
    pub seconds: f64,
    pub duration: Option<f64>,
    pub codec: Option<&'a str>,
}

/// CPU time of the calling thread in seconds (`CLOCK_THREAD_CPUTIME_ID`; 0 if unavailable).
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Analyses a whole video file: per-frame features, hard cuts and gradual transitions,
/// visual beats and tempo. `progress` is told after every frame how far the analysis is.
pub fn analyze_file(
    path: &Path,
    model_path: &Path,
    progress: &mut dyn FnMut(Progressed),
) -> Result<Analysis, ExtractError> {
    analyze_file_with_stats(path, model_path, progress).map(|(a, _)| a)
}

/// [`analyze_file`], also returning what the extraction cost.
pub fn analyze_file_with_stats(
    path: &Path,
    model_path: &Path,
    progress: &mut dyn FnMut(Progressed),
) -> Result<(Analysis, ExtractStats), ExtractError> {
    let t_start = std::time::Instant::now();
    let mut busy = std::time::Duration::ZERO;
    let mut busy_cpu = 0.0;
    let mut setup = std::time::Duration::ZERO;
    let mut pushed = 0usize;
    // The decoder starts first, so the model loads while ffmpeg opens the file.
    let mut source = FileSource::open(path, AnalysisSize::default())?;
    let info = source.info().clone();
    let (fw, fh) = AnalysisSize::default().frame_size(info.width, info.height);
    let mut extractor = Extractor::load_for(model_path, fw, fh)?;
    extractor.keep_history();
    extractor.collapse_repeats();
    let mut frames = Vec::new();
    while let Some(frame) = source.next_frame()? {
        let t = frame.pts;
        let t0 = std::time::Instant::now();
        let c0 = thread_cpu_seconds();
        let out = extractor.push(&frame)?;
        pushed += 1;
        if pushed <= 2 {
            // The first pair of a frame size optimises the graph for it: a one-off cost, kept apart.
            setup += t0.elapsed();
        } else {
            busy += t0.elapsed();
            busy_cpu += thread_cpu_seconds() - c0;
        }
        if let Some(f) = out {
            frames.push(f);
        }
        progress(Progressed {
            seconds: t,
            duration: info.duration,
            codec: info.codec.as_deref(),
        });
    }
    frames.extend(extractor.finish());
    let stats = ExtractStats {
        frames: frames.len().saturating_sub(2),
        extract_seconds: busy.as_secs_f64(),
        extract_cpu_seconds: busy_cpu,
        setup_seconds: setup.as_secs_f64(),
        total_seconds: t_start.elapsed().as_secs_f64(),
    };
    if frames.len() < 2 {
        return Err(ExtractError::TooShort {
            path: path.to_path_buf(),
            frames: frames.len(),
        });
    }
    let fps = info.fps;
    let mut transitions = extractor.take_transitions();
    let cut_times: Vec<f64> = transitions.iter().map(|c| c.t).collect();
    let history = extractor.history.take().unwrap_or_default();
    let gradual = post::gradual_transitions(&history, &cut_times, fps);
    for g in &gradual {
        for f in frames
            .iter_mut()
            .filter(|f| f.t >= g.t - 1e-9 && f.t <= g.end + 1e-9)
        {
            f.transition = f.transition.max(g.confidence.max(0.5));
        }
    }
    transitions.extend(gradual);
    transitions.sort_by(|a, b| a.t.total_cmp(&b.t));
    let times: Vec<f64> = frames.iter().map(|f| f.t).collect();
    let impact: Vec<f32> = frames.iter().map(|f| f.impact).collect();
    let visual_beats = post::visual_beats(&times, &impact);
    let visual_tempo_bpm = post::visual_tempo(&impact, fps, visual_beats.len());
    let last = frames.last().map_or(0.0, |f| f.t);
    // Read again at the end: a file source that found its frames ending before the length
    // the file states (a longer audio track's) ends the analysis with its video.
    let duration = source.info().duration.unwrap_or(last + 1.0 / fps).max(last);
    debug!(
        frames = frames.len(),
        transitions = transitions.len(),
        beats = visual_beats.len(),
        "analysis"
    );
    let analysis = Analysis {
        duration,
        fps,
        width: info.width,
        height: info.height,
        frames,
        transitions,
        visual_beats,
        visual_tempo_bpm,
        video_codec: info.codec.clone(),
    };
    Ok((analysis, stats))
}

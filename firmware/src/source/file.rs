//! File source: the stream's facts are read (by [`super::mp4`], [`super::avi`] or
//! `ffprobe`), then the video is decoded from the start (a second decoder from a key frame,
//! see [`FileSource`]), at a constant rate at the analysis rate, scaled to the analysis
//! size with area averaging, as 8-bit luma: by libavcodec on a thread of this process for
//! H.264 or HEVC in a plain constant-rate MP4/MOV ([`super::lavcdec`]), else by an
//! `ffmpeg` subprocess piping raw luma. A queue of decoded frames between the decoder and
//! the consumer lets decoding overlap extraction.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;

use serde::Deserialize;
use tracing::{debug, warn};

use super::lavcdec::{self, Msg};
use super::mp4::DecodePlan;
use super::{AnalysisSize, Frame, Source, SourceError, SourceInfo};

/// Frames decoded ahead of the consumer: about a second of video, so a slow extraction
/// step never stalls ffmpeg and vice versa (160x90 luma = 14 kB a frame).
const FRAME_QUEUE: usize = 32;
/// Memory the second decoder of a split file may fill before it waits (about 4,600 frames
/// at 160x90, three minutes at 25 frames/s): it decodes the last half of the file, or its
/// last this-many bytes of frames if that is less.
const AHEAD_MAX_BYTES: usize = 64 << 20;
/// How far (in frames) the frames may end before the length a file states without that
/// length being questioned: a stated length rounds the last frame's own, and a variable-rate
/// file's frames are put on the analysis grid.
const END_SLACK_FRAMES: f64 = 2.0;
/// A video that ends this much before its own stated length, after ffmpeg reported damage,
/// is cut off (a partial download) and refused as the "truncated" bad input.
const CUT_OFF_MIN_SECONDS: f64 = 1.0;
/// Files shorter than this are decoded by one process (two would barely start).
const SPLIT_MIN_SECONDS: f64 = 8.0;
/// Files with smaller frames are decoded by one decoder: there one decoder keeps up with the
/// extraction, and a second only adds its start and competes with the engines loading beside
/// it. Until session 22 the bound was half of 1280x720 (460,800 pixels), set when the
/// extraction took 2.7x longer a frame: `score`, A/B medians of one binary splitting at 8 s
/// and one never splitting, split / not: bikes (640x272, 10 s) 0.651 / 0.586 s; the
/// trailer's first 30 s at 854x480 1.295 / 1.291 s, at 960x540 1.280 / 1.303 s; its first
/// 20 s (1280x720) 1.284 / 1.364 s. With the extraction's convolutions on direct loops
/// (`extract::conv`) one decoder is what bikes waits for (`tools/bench/ab.sh`, the bound at
/// this value / at 460,800, the same binary, two sets of 11 rounds on a slow day): bikes
/// 0.451 / 0.495 s and 0.517 / 0.603 s; 12 s of the trailer at 320x180 (57,600 pixels), the
/// bound at 0 / at 460,800, 9 rounds: 0.486 / 0.470 s, so small frames keep one decoder.
const SPLIT_MIN_PIXELS: u64 = 150_000;
/// Share of a split file's frames the first decoder takes. The second decoder runs at a
/// lower priority, on what the first and the extraction leave, and the extraction reaches
/// its frames last: given 60 % the first and the second finish together (trailer: split at
/// the middle, the first was done at 1.30 s and the second at 1.67 s; at 60 %, 1.52 s and
/// 1.53 s).
const SPLIT_FIRST_SHARE: f64 = 0.6;
/// Nice value of the second decoder's process (see [`Decoder::spawn`]).
const AHEAD_NICE: libc::c_int = 10;
/// Frames of the second decoder checked against the first's before it is trusted.
const VERIFY_FRAMES: usize = 3;
/// Leading frames of the second decoder that may differ from the first decoder's and are
/// taken from the first. A video stream that starts a little after the file (recordings
/// joined with ffmpeg's concat demuxer: frames at 0.025 s + n/24) has its frames past the
/// middle of the rate's grid: after the seek to frame k, the one the first decoder gives as
/// k is dropped as earlier than the seek, and the fps filter fills its slot with a copy of
/// frame k + 1; from k + 1 on the two decoders agree. So with frames stamped a little
/// before their slots (whole milliseconds at 15 frames/s).
const SEEK_SETTLE_FRAMES: usize = 2;
/// Threads of each decoder's filter graph (fps, scale, format).
const FILTER_THREADS: &str = "1";
/// Lines of ffmpeg's stderr kept for error messages.
const STDERR_LINES: usize = 8;
/// Smallest input-to-analysis width ratio at which the decoder skips its in-loop
/// deblocking filter (`-skip_loop_filter all`). Deblocking smooths a few pixels either side
/// of 4- and 8-pixel block edges; from 4× down, one analysis pixel averages whole blocks,
/// so the filter's pairwise-balanced corrections (H.264's p0 += Δ, q0 −= Δ) mostly cancel
/// inside it, while skipping it saves about a third of an H.264 decode (trailer 1280x720:
/// 3.2 → 2.2 CPU-s). Smaller inputs, where a block edge is a visible fraction of an
/// analysis pixel, are decoded in full. Measured effect: docs/design/extraction.md.
const SKIP_DEBLOCK_MIN_SCALE: u32 = 4;

/// Frames of a video file at the analysis size and rate.
///
/// A long enough constant-rate file (at any input rate) in an indexed container (MP4/MOV,
/// Matroska/WebM) is decoded by two decoders at once (threads of this process, or ffmpeg
/// processes): one from the start, one from a later key frame, whose frames wait in memory
/// (at most [`AHEAD_MAX_BYTES`]). One single-threaded
/// decoder per half uses two cores far better than one frame-threaded decoder (trailer,
/// 2 cores: 1.3 s instead of 2.0–2.2 s). The frames are delivered in order, and the later
/// decoder is trusted only if its first [`VERIFY_FRAMES`] frames equal, byte for byte, those
/// the first decoder gives at the same place, allowing its first [`SEEK_SETTLE_FRAMES`] to
/// differ (a seek can land on a frame that needs pictures from before it); otherwise the
/// first decoder simply goes on to the end.
pub struct FileSource {
    path: PathBuf,
    info: SourceInfo,
    /// Whose length `info.duration` is, as the file states it.
    stated_by: StatedBy,
    /// How the decoders decode (a decoder that falls back to ffmpeg needs it again).
    spec: DecodeSpec,
    main: Decoder,
    ahead: Option<Decoder>,
    /// The frame the second decoder starts at, if there is one.
    split: Option<u64>,
    /// Frames delivered so far.
    delivered: u64,
    /// Frames already checked and waiting to be delivered (the first decoder's, at the
    /// hand-over).
    pending: VecDeque<Frame>,
    done: bool,
}

/// One decoder of the file from frame `start` on: a thread of this process
/// ([`lavcdec`]), or an ffmpeg process with the thread reading it.
struct Decoder {
    rx: Receiver<Msg>,
    /// The ffmpeg process and its id, if this decoder is one.
    child: Option<(Arc<Mutex<Child>>, u32)>,
    /// This decoder's number among the process's decoders (for tests: which one gave a
    /// frame).
    id: u64,
    start: u64,
    /// Frames its queue holds.
    queue: usize,
    /// The codec's last message when it ended after reporting damage.
    damage: Option<String>,
}

/// Numbers the decoders ([`Decoder::id`]).
static DECODERS: AtomicU64 = AtomicU64::new(0);

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    duration: Option<String>,
    nb_frames: Option<String>,
    disposition: Option<ProbeDisposition>,
    /// Matroska's statistics tags (`DURATION`, as ffmpeg, OBS and mkvmerge write them):
    /// a stream's own length where the container stores none but the whole file's.
    tags: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct ProbeDisposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
    format_name: Option<String>,
}

/// What [`probe`] learns beyond [`SourceInfo`]: whether the file can be split between two
/// decoders (a constant frame rate, in a container with a seek index).
struct Probed {
    info: SourceInfo,
    /// Where `info.duration` comes from.
    stated_by: StatedBy,
    constant_rate: bool,
    indexed: bool,
    /// The key frames (frame numbers at the file's rate), when the container says where they
    /// are ([`super::mp4`]).
    keyframes: Option<Vec<u64>>,
}

fn rate(s: &Option<String>) -> Option<f64> {
    let s = s.as_deref()?;
    let (n, d) = s.split_once('/').unwrap_or((s, "1"));
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d > 0.0 && n > 0.0).then(|| n / d)
}

/// Whose length a file's stated duration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatedBy {
    /// The video stream's own (an MP4 track, an AVI header, a stream duration or tag).
    Video,
    /// The whole file's: in Matroska without statistics tags, the longest stream's, which
    /// may be an audio track running on after the video.
    Container,
}

/// The end of the first video stream as its packets time it (the latest presentation time
/// plus duration), by ffprobe reading the packets without decoding; `None` if it cannot.
fn packets_end(path: &Path) -> Option<f64> {
    let out = crate::children::output(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args([
                "-show_entries",
                "packet=pts_time,duration_time",
                "-of",
                "csv=p=0",
            ])
            .arg(super::ff_file(path)),
    )
    .ok()
    .filter(|o| o.status.success())?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (pts, dur) = l.split_once(',')?;
            let pts: f64 = pts.trim().parse().ok()?;
            Some(
                pts + dur
                    .trim()
                    .trim_end_matches(',')
                    .parse::<f64>()
                    .unwrap_or(0.0),
            )
        })
        .filter(|e| e.is_finite())
        .reduce(f64::max)
}

/// A Matroska `DURATION` tag ("01:02:03.456000000") in seconds.
fn tag_duration(tags: &Option<HashMap<String, String>>) -> Option<f64> {
    let v = tags.as_ref()?.iter().find_map(|(k, v)| {
        let k = k.to_ascii_uppercase();
        (k == "DURATION" || k.starts_with("DURATION-")).then_some(v)
    })?;
    let mut parts = v.trim().split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (h, m, sec): (f64, f64, f64) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    Some(h * 3600.0 + m * 60.0 + sec).filter(|d| d.is_finite() && *d >= 0.0)
}

fn num(s: &Option<String>) -> Option<f64> {
    s.as_deref()?
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
}

/// The last meaningful line of ffmpeg's stderr, for one-line error messages.
/// ffmpeg names a file as it was given, behind the `file:` protocol ([`super::ff_file`]):
/// the prefix is dropped where a name starts (the line's start, after a space or a quote).
pub(crate) fn last_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .last()
        .unwrap_or("no message");
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("file:") {
        let starts_name = i == 0 || matches!(rest.as_bytes()[i - 1], b' ' | b'\'' | b'"');
        out.push_str(&rest[..i]);
        if !starts_name {
            out.push_str("file:");
        }
        rest = &rest[i + "file:".len()..];
    }
    out.push_str(rest);
    out
}

/// Does the file start with the signature of a common media container?
fn looks_like_media(path: &Path) -> bool {
    let mut head = [0u8; 12];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let h = &head[..n];
    let at = |off: usize, sig: &[u8]| h.len() >= off + sig.len() && &h[off..off + sig.len()] == sig;
    at(4, b"ftyp") // MP4 / MOV / 3GP
        || at(4, b"moov")
        || at(4, b"mdat")
        || at(4, b"free")
        || at(0, &[0x1A, 0x45, 0xDF, 0xA3]) // Matroska / WebM (EBML)
        || at(0, b"RIFF") // AVI
        || at(0, b"OggS")
        || at(0, b"FLV")
        || at(0, &[0x00, 0x00, 0x01, 0xBA]) // MPEG program stream
        || (n >= 1 && h[0] == 0x47) // MPEG transport stream sync byte
}

/// Where the second decoder of a file of `frames` frames starts: [`SPLIT_FIRST_SHARE`] of
/// the way in, or the frame that leaves it `most` frames, whichever is later; at the key
/// frame nearest that when the key frames are known. A seek lands on the key frame at or
/// before its target and decodes from there, so starting on one wastes nothing (the
/// trailer's middle is 3 s past a key frame; a 20-second cut of it has none between 0 s and
/// 10.4 s, and a split at the middle decoded its first half twice). No key frame within a quarter of the file from
/// that point: no split.
fn split_frame(frames: u64, most: u64, keyframes: Option<&[u64]>) -> Option<u64> {
    let want = frames - ((frames as f64 * (1.0 - SPLIT_FIRST_SHARE)) as u64).min(most);
    let Some(keys) = keyframes else {
        return Some(want);
    };
    keys.iter()
        .copied()
        .filter(|&k| k > 0 && k < frames && frames - k <= most && k.abs_diff(want) <= frames / 4)
        .min_by_key(|&k| k.abs_diff(want))
}

/// Reads the stream facts (of a plain MP4/MOV or an AVI in process, see [`super::mp4`] and
/// [`super::avi`]; else with ffprobe) and classifies unreadable inputs.
fn probe(path: &Path) -> Result<Probed, SourceError> {
    if let Some(v) = super::mp4::probe(path) {
        debug!(path = %path.display(), keyframes = v.keyframes.len(), constant_rate = v.constant_rate, "stream facts read from the MP4 index");
        return Ok(Probed {
            info: SourceInfo {
                width: v.width,
                height: v.height,
                fps: v.fps(),
                duration: Some(v.duration()),
                codec: v.codec().map(String::from),
            },
            stated_by: StatedBy::Video,
            constant_rate: v.constant_rate,
            indexed: true,
            keyframes: v.constant_rate.then_some(v.keyframes),
        });
    }
    if let Some(v) = super::avi::probe(path) {
        debug!(path = %path.display(), codec = v.codec, "stream facts read from the AVI header");
        // An AVI's frames are on a constant-rate grid, but it has no index ffmpeg seeks by
        // quickly: one decoder, as when ffprobe reads it.
        return Ok(Probed {
            info: SourceInfo {
                width: v.width,
                height: v.height,
                fps: v.fps(),
                duration: Some(v.duration()),
                codec: Some(v.codec.to_string()),
            },
            stated_by: StatedBy::Video,
            constant_rate: true,
            indexed: false,
            keyframes: None,
        });
    }
    let out = crate::children::output(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-print_format",
                "json",
                "-show_format",
                "-show_streams",
            ])
            .arg(super::ff_file(path)),
    )
    .map_err(|source| SourceError::Tool {
        tool: "ffprobe",
        source,
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let detail = last_line(&stderr);
        let p = path.to_path_buf();
        // A file that starts like a media container but cannot be parsed is damaged (typically
        // cut off before its index); anything else is simply not a video.
        if looks_like_media(path) {
            return Err(SourceError::Corrupt { path: p, detail });
        }
        return Err(SourceError::NotAVideo { path: p, detail });
    }
    let probe: Probe = serde_json::from_slice(&out.stdout).map_err(|e| SourceError::NotAVideo {
        path: path.to_path_buf(),
        detail: format!("unreadable ffprobe output: {e}"),
    })?;
    let video = probe.streams.iter().find(|s| {
        s.codec_type.as_deref() == Some("video")
            && s.disposition.as_ref().map_or(true, |d| d.attached_pic == 0)
    });
    let Some(v) = video else {
        return Err(SourceError::NoVideoStream {
            path: path.to_path_buf(),
        });
    };
    let (width, height) = match (v.width, v.height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => {
            return Err(SourceError::Corrupt {
                path: path.to_path_buf(),
                detail: "the video stream has no frame size".into(),
            })
        }
    };
    let fps = rate(&v.avg_frame_rate)
        .or_else(|| rate(&v.r_frame_rate))
        .unwrap_or(0.0);
    let own = num(&v.duration).or_else(|| tag_duration(&v.tags));
    let stated_by = if own.is_some() {
        StatedBy::Video
    } else {
        StatedBy::Container
    };
    let duration = own.or_else(|| probe.format.as_ref().and_then(|f| num(&f.duration)));
    if num(&v.nb_frames) == Some(0.0) || duration == Some(0.0) {
        return Err(SourceError::ZeroLength {
            path: path.to_path_buf(),
        });
    }
    let (avg, raw) = (rate(&v.avg_frame_rate), rate(&v.r_frame_rate));
    let constant_rate = matches!((avg, raw), (Some(a), Some(r)) if (a - r).abs() <= 1e-3 * r);
    let format = probe
        .format
        .as_ref()
        .and_then(|f| f.format_name.as_deref())
        .unwrap_or("");
    let indexed = ["mp4", "mov", "matroska", "webm"]
        .iter()
        .any(|k| format.split(',').any(|f| f == *k));
    Ok(Probed {
        info: SourceInfo {
            width,
            height,
            fps,
            duration,
            codec: v.codec_name.clone(),
        },
        stated_by,
        constant_rate,
        indexed,
        keyframes: None,
    })
}

/// Who decodes a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decoders {
    /// libavcodec in this process where the file allows it (H.264 or HEVC in a plain MP4/MOV
    /// at a constant rate, see [`super::mp4::decode_plan`]), else ffmpeg processes.
    #[default]
    Best,
    /// ffmpeg processes only (to compare the two).
    Ffmpeg,
}

impl FileSource {
    /// Opens `path` and starts decoding it at the analysis size and rate.
    pub fn open(path: &Path, analysis: AnalysisSize) -> Result<Self, SourceError> {
        Self::open_with(path, analysis, Decoders::Best)
    }

    /// [`FileSource::open`], decoding with `decoders`.
    pub fn open_with(
        path: &Path,
        analysis: AnalysisSize,
        decoders: Decoders,
    ) -> Result<Self, SourceError> {
        let p = path.to_path_buf();
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SourceError::NotFound { path: p.clone() },
            _ => SourceError::Io {
                path: p.clone(),
                source: e,
            },
        })?;
        if meta.is_file() && meta.len() == 0 {
            return Err(SourceError::Empty { path: p });
        }
        if !meta.is_file() {
            // A pipe (`<(curl …)`) or a device would be read once by the probe and then leave
            // the decoder waiting for ever: the file is read several times (probe, index,
            // decoders, the copy into scored.mp4).
            use std::os::unix::fs::FileTypeExt;
            let t = meta.file_type();
            let (what, hint) = if t.is_dir() {
                ("a folder", "give a video file in it")
            } else if t.is_char_device() || t.is_block_device() {
                (
                    "a device",
                    "for a camera use `undertone run`; give a video file here",
                )
            } else {
                (
                    "a pipe or socket",
                    "the video is read more than once: save it to a file first",
                )
            };
            return Err(SourceError::NotAFile {
                path: p,
                what,
                hint,
            });
        }
        let probed = probe(path)?;
        let mut info = probed.info;
        let fps = analysis.rate(info.fps);
        let (aw, ah) = analysis.frame_size(info.width, info.height);
        let in_fps = info.fps;
        info.fps = fps;
        debug!(path = %path.display(), w = info.width, h = info.height, fps, aw, ah, "file source");
        let frame_len = (aw * ah) as usize;
        // Split between two decoders where that is safe and worth it (see [`FileSource`]):
        // at frame `k`, leaving the second decoder the last half or what fits its memory.
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        let split = match info.duration {
            Some(d)
                if cores >= 2
                    && probed.constant_rate
                    && probed.indexed
                    && d >= SPLIT_MIN_SECONDS
                    && u64::from(info.width) * u64::from(info.height) >= SPLIT_MIN_PIXELS =>
            {
                let frames = (d * fps).floor() as u64;
                let most = (AHEAD_MAX_BYTES / frame_len.max(1)) as u64;
                // A file above the analysis rate (60 frames/s analysed at 30) is split too:
                // both decoders' fps filters keep the frames nearest the same grid. Its key
                // frames, numbered at the file's rate, become the first analysis frame at or
                // after them (a seek there starts decoding from that key frame).
                let keys = probed.keyframes.as_deref().map(|ks| {
                    ks.iter()
                        .map(|&k| (k as f64 * fps / in_fps - 1e-6).ceil() as u64)
                        .collect::<Vec<_>>()
                });
                split_frame(frames, most, keys.as_deref())
            }
            _ => None,
        };
        // Decoder threads: every core but one, which the extraction (and, in `score`, the
        // music engines loading beside it) keeps busy, shared by the decoders.
        let threads = (cores.saturating_sub(1) / if split.is_some() { 2 } else { 1 }).max(1);
        let spec = DecodeSpec {
            path: p.clone(),
            fps_filter: format!("fps={fps}"),
            filter: format!("scale={aw}:{ah}:flags=area,format=gray"),
            skip_deblock: info.width >= aw * SKIP_DEBLOCK_MIN_SCALE,
            threads,
            frame: (aw, ah),
            fps,
            // In process only where every frame of the file is one analysis frame: the fps
            // filter of an ffmpeg process at a lower rate picks frames by their times.
            plan: (decoders == Decoders::Best && crate::lavc::COMPILED && fps == in_fps)
                .then(|| super::mp4::decode_plan(path).map(Arc::new))
                .flatten(),
        };
        let main = Decoder::spawn(&spec, 0, FRAME_QUEUE)?;
        let ahead = match split {
            Some(k) => {
                debug!(path = %path.display(), from_frame = k, "second decoder");
                Some(Decoder::spawn(
                    &spec,
                    k,
                    (AHEAD_MAX_BYTES / frame_len.max(1)).max(1),
                )?)
            }
            None => None,
        };
        Ok(FileSource {
            path: p,
            info,
            stated_by: probed.stated_by,
            main,
            ahead,
            split,
            spec,
            delivered: 0,
            pending: VecDeque::new(),
            done: false,
        })
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Process id of the ffmpeg process decoding now, if one does (for supervision and
    /// tests).
    pub fn decoder_pid(&self) -> Option<u32> {
        self.main.child.as_ref().map(|(_, pid)| *pid)
    }

    /// Which decoder (a number unique in this process) decodes now: the second one of a
    /// split file once it has taken over (for tests).
    pub fn decoder_id(&self) -> u64 {
        self.main.id
    }

    /// The frame a second decoder starts decoding at, when the file is split between two.
    pub fn split_at(&self) -> Option<u64> {
        self.split
    }

    /// At the second decoder's first frame: checks its frames against the first decoder's
    /// there and keeps whichever decoder goes on (see [`FileSource`]).
    fn hand_over(&mut self) -> Result<(), SourceError> {
        let Some(mut ahead) = self.ahead.take() else {
            return Ok(());
        };
        let span = SEEK_SETTLE_FRAMES + VERIFY_FRAMES;
        let mut mine = Vec::with_capacity(span);
        let mut theirs = Vec::with_capacity(span);
        for _ in 0..span {
            match self.main.next(&self.spec)? {
                Some(f) => mine.push(f),
                None => break,
            }
            match ahead.next(&self.spec) {
                Ok(Some(f)) => theirs.push(f),
                _ => break,
            }
        }
        // The two must agree from one of the first SEEK_SETTLE_FRAMES + 1 frames to the end
        // of the span (VERIFY_FRAMES or more). The whole span is delivered from the first
        // decoder; the second goes on after it.
        let agree = |from: usize| {
            theirs.len() == span
                && mine.len() == span
                && theirs[from..]
                    .iter()
                    .zip(&mine[from..])
                    .all(|(t, m)| t.gray == m.gray)
        };
        let settled = (0..=SEEK_SETTLE_FRAMES).find(|&k| agree(k));
        if let Some(k) = settled.filter(|&k| k > 0) {
            debug!(path = %self.path.display(), frames = k, "the second decoder's first frames differ after its seek; the first decoder's are kept");
        }
        self.pending.extend(mine);
        if settled.is_some() {
            self.main = ahead; // the first decoder is stopped as it drops
        } else {
            warn!(path = %self.path.display(), frame = self.delivered, "the second decoder's frames differ after its seek; decoding on from the start");
        }
        Ok(())
    }
}

/// How the decoders of one file run ffmpeg.
struct DecodeSpec {
    path: PathBuf,
    /// The `fps` filter making the frames regular at the analysis rate.
    fps_filter: String,
    /// The rest of the filter chain (size and pixel format).
    filter: String,
    skip_deblock: bool,
    threads: usize,
    /// Analysis frame size.
    frame: (u32, u32),
    fps: f64,
    /// How to decode the file in this process, where it can be ([`lavcdec`]).
    plan: Option<Arc<DecodePlan>>,
}

impl Decoder {
    /// Starts decoding on frame `start`, with a queue of `queue` frames between the
    /// decoder and the consumer: in this process where the file has a plan for it, else
    /// (or when that decoder gives up before its first frame) by an ffmpeg process.
    fn spawn(spec: &DecodeSpec, start: u64, queue: usize) -> Result<Self, SourceError> {
        let Some(plan) = spec.plan.clone() else {
            return Self::spawn_process(spec, start, queue);
        };
        let (tx, rx) = sync_channel(queue);
        let job = lavcdec::Job {
            path: spec.path.clone(),
            plan,
            start,
            threads: spec.threads,
            skip_deblock: spec.skip_deblock,
            frame: spec.frame,
            fps: spec.fps,
        };
        thread::Builder::new()
            .name(if start == 0 { "decode" } else { "decode-2" }.into())
            .spawn(move || {
                if start > 0 {
                    // As the second ffmpeg process did: it takes the CPU the first decoder
                    // and the extraction leave.
                    crate::threads::set_nice(AHEAD_NICE);
                }
                lavcdec::run(job, tx)
            })
            .map_err(|source| SourceError::Io {
                path: spec.path.clone(),
                source,
            })?;
        Ok(Decoder {
            rx,
            child: None,
            id: DECODERS.fetch_add(1, Ordering::Relaxed),
            start,
            queue,
            damage: None,
        })
    }

    /// Starts ffmpeg on frame `start` (a seek to `start / fps` seconds when not 0), with a
    /// queue of `queue` frames between its reader thread and the consumer.
    fn spawn_process(spec: &DecodeSpec, start: u64, queue: usize) -> Result<Self, SourceError> {
        let p = spec.path.clone();
        let (aw, ah) = spec.frame;
        let fps = spec.fps;
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-hide_banner", "-v", "error"]);
        cmd.args(["-threads", &spec.threads.to_string()]);
        // One filter thread: the filters' slice threads would wake per frame for a
        // 160-pixel-wide picture (trailer: 5,400 futex waits and a tenth of the process's
        // CPU as system time), and every core is already busy decoding.
        cmd.args(["-filter_threads", FILTER_THREADS]);
        if spec.skip_deblock {
            cmd.args(["-skip_loop_filter", "all"]);
        }
        if start > 0 {
            cmd.args(["-ss", &format!("{:.6}", start as f64 / fps)]);
            // The second decoder works ahead into a deep queue: it takes the CPU the first
            // decoder and the extraction leave, instead of starving them (its frames are
            // needed last).
            // SAFETY: the closure runs in the forked child before exec and only makes the
            // setpriority syscall, which is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::setpriority(libc::PRIO_PROCESS, 0, AHEAD_NICE);
                    Ok(())
                });
            }
        }
        // The analysis timeline is the file's: frame k is at k / fps from the file's time
        // zero. A video that starts later (an AVI with B-frames stamps its first picture a
        // frame in) starts with copies of its first picture (`start_time=0`), as ffmpeg's
        // own constant-rate output did only for some such files (one with an audio stream,
        // not one without); a warp cuts the video at these times (score::mux::warp_graph),
        // and a copied video keeps its own. The second decoder's timestamps start at its
        // seek (ffmpeg puts the seek point at 0), and its grid starts there too: a frame
        // stamped a little before its slot (a 15 frames/s WebM screencast stamped in whole
        // milliseconds, frame 334 at 22.266 s for 22.2667) is dropped by the seek, and the
        // first slot is filled with the next frame, which the hand-over allows; from the
        // first frame on, the grid began one slot late and every frame was one early, and the
        // split was given up.
        let filter = format!("{}:start_time=0,{}", spec.fps_filter, spec.filter);
        // Frames as coded, not turned upright by a rotation the container asks for: motion
        // and change do not depend on the picture's orientation, and the analysis size is
        // the coded frame's (a portrait phone video, coded landscape, was squeezed into it).
        // fps: constant rate (variable-rate files and >30 fps inputs become regular frames);
        // scale with area averaging (see convert::resize_area for why).
        let mut child = crate::children::spawn(
            cmd.arg("-noautorotate")
                .arg("-i")
                .arg(super::ff_file(&p))
                .args([
                    "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", &filter, "-f", "rawvideo",
                    "-pix_fmt", "gray", "-",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .map_err(|source| SourceError::Tool {
            tool: "ffmpeg",
            source,
        })?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let child = Arc::new(Mutex::new(child));
        let (tx, rx) = sync_channel(queue);

        // stderr drainer: keeps the last lines (a chatty ffmpeg must never block on a full pipe).
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let err_thread = {
            let tail = tail.clone();
            thread::Builder::new()
                .name("ffmpeg-stderr".into())
                .spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        let mut t = tail.lock().expect("stderr tail lock");
                        if t.len() == STDERR_LINES {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                })
                .map_err(|source| SourceError::Io {
                    path: p.clone(),
                    source,
                })?
        };
        let reader_child = child.clone();
        let rp = p.clone();
        thread::Builder::new()
            .name("ffmpeg-frames".into())
            .spawn(move || {
                let frame_len = (aw * ah) as usize;
                let mut out = BufReader::with_capacity(frame_len * 4, stdout);
                // Frame numbers count from the file's start, so a frame's time is n / fps.
                let mut n: u64 = start;
                let end = loop {
                    let mut buf = vec![0u8; frame_len];
                    match read_full(&mut out, &mut buf) {
                        Ok(len) if len == frame_len => {
                            let frame = Frame {
                                pts: n as f64 / fps,
                                width: aw,
                                height: ah,
                                gray: buf,
                            };
                            n += 1;
                            if tx.send(Msg::Frame(frame)).is_err() {
                                return; // consumer dropped the source
                            }
                        }
                        Ok(len) => break Some(len),
                        Err(e) => {
                            let _ = tx.send(Msg::End(Err(SourceError::Io {
                                path: rp.clone(),
                                source: e,
                            })));
                            return;
                        }
                    }
                };
                let status = reader_child.lock().expect("child lock").wait();
                let _ = err_thread.join();
                let detail = tail
                    .lock()
                    .expect("stderr tail lock")
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | ");
                let ok = matches!(status, Ok(s) if s.success());
                let partial = end.unwrap_or(0) > 0;
                let result = if !ok || partial {
                    let detail = if detail.is_empty() {
                        "ffmpeg stopped".to_string()
                    } else {
                        last_line(&detail.replace(" | ", "\n"))
                    };
                    if n == 0 {
                        Err(SourceError::Corrupt {
                            path: rp.clone(),
                            detail,
                        })
                    } else {
                        Err(SourceError::Truncated {
                            path: rp.clone(),
                            frames: n,
                            detail,
                        })
                    }
                } else if n == start {
                    Err(SourceError::ZeroLength { path: rp.clone() })
                } else if detail.is_empty() {
                    Ok(None)
                } else {
                    // Decodable with damage (a few broken packets, or a file cut off: the
                    // source tells which by where the frames end).
                    Ok(Some(last_line(&detail.replace(" | ", "\n"))))
                };
                let _ = tx.send(Msg::End(result));
            })
            .map_err(|source| SourceError::Io {
                path: p.clone(),
                source,
            })?;
        Ok(Decoder {
            rx,
            child: Some((child, pid)),
            id: DECODERS.fetch_add(1, Ordering::Relaxed),
            start,
            queue,
            damage: None,
        })
    }

    /// The next frame; `Ok(None)` at the clean end.
    fn next(&mut self, spec: &DecodeSpec) -> Result<Option<Frame>, SourceError> {
        let path = &spec.path;
        match self.rx.recv() {
            Ok(Msg::Frame(f)) => Ok(Some(f)),
            Ok(Msg::End(r)) => r.map(|damage| {
                self.damage = damage;
                None
            }),
            Ok(Msg::Fallback(why)) => {
                debug!(path = %path.display(), from_frame = self.start, "ffmpeg decodes: {why}");
                *self = Self::spawn_process(spec, self.start, self.queue)?;
                self.next(spec)
            }
            Err(_) => Err(SourceError::Truncated {
                path: path.to_path_buf(),
                frames: self.start,
                detail: "the decoder thread stopped".into(),
            }),
        }
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // Stop ffmpeg if the consumer quits early; the reader thread then sees EOF and exits.
        // (A decoding thread ends as its channel closes.)
        let Some((child, _)) = &self.child else {
            return;
        };
        if let Ok(mut c) = child.lock() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

#[cfg(test)]
#[test]
fn ffmpeg_messages_name_files_without_the_protocol() {
    assert_eq!(
        last_line("x\nfile:take:2.mp4: Invalid data found when processing input\n"),
        "take:2.mp4: Invalid data found when processing input"
    );
    // inside a word it is not a protocol
    assert_eq!(
        last_line("[libx264] profile:high"),
        "[libx264] profile:high"
    );
    assert_eq!(
        last_line("Error opening output 'file:out:1/a.mp4'"),
        "Error opening output 'out:1/a.mp4'"
    );
}

#[cfg(test)]
#[test]
fn the_second_decoder_starts_on_the_key_frame_nearest_its_share() {
    // unknown key frames: 60 % in, or what the memory leaves
    assert_eq!(split_frame(1000, 5000, None), Some(600));
    assert_eq!(split_frame(1000, 300, None), Some(700));
    // the trailer's key frames (1323 frames, 60 % is frame 794): 769 is the nearest
    let trailer = [0, 250, 339, 589, 769, 864, 900, 988, 1049, 1134, 1248];
    assert_eq!(split_frame(1323, 5000, Some(&trailer)), Some(769));
    // a cut of its first 20 s: the key frame at 10.4 s (frame 250), not frame 290
    assert_eq!(split_frame(482, 5000, Some(&[0, 250, 339])), Some(250));
    // only the first frame is a key frame: no split
    assert_eq!(split_frame(1000, 5000, Some(&[0])), None);
    // the memory cap: no key frame late enough
    assert_eq!(split_frame(1000, 100, Some(&[0, 500, 880])), None);
    assert_eq!(split_frame(1000, 200, Some(&[0, 500, 880])), Some(880));
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl Source for FileSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.done {
            return Ok(None);
        }
        if self.pending.is_empty()
            && self
                .ahead
                .as_ref()
                .is_some_and(|a| a.start == self.delivered)
        {
            if let Err(e) = self.hand_over() {
                self.done = true;
                return Err(e);
            }
        }
        let next = match self.pending.pop_front() {
            Some(f) => Ok(Some(f)),
            None => self.main.next(&self.spec),
        };
        match next {
            Ok(Some(f)) => {
                self.delivered += 1;
                Ok(Some(f))
            }
            Ok(None) => {
                self.done = true;
                self.check_end().map(|()| None)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }
}

impl FileSource {
    /// At the clean end: holds the frames' end (frame n at n / fps from the file's start)
    /// against the length the file states. A video that ends more than
    /// [`END_SLACK_FRAMES`] early either was cut off (ffmpeg reported damage, and the
    /// video's own stated length runs on [`CUT_OFF_MIN_SECONDS`] or more past the frames:
    /// a partial download, refused) or the stated length was not the video's (a Matroska
    /// file's length is its longest stream's: an audio track running on after the video);
    /// the source's duration becomes the frames' end then, so the music ends with the
    /// video scored.mp4 carries, not with the audio it replaces.
    fn check_end(&mut self) -> Result<(), SourceError> {
        let damage = self.main.damage.take();
        let fps = self.info.fps;
        let end = self.delivered as f64 / fps;
        if let Some(stated) = self
            .info
            .duration
            .filter(|&d| d - end > END_SLACK_FRAMES / fps)
        {
            if let Some(detail) = damage.as_ref().filter(|_| {
                self.stated_by == StatedBy::Video && stated - end >= CUT_OFF_MIN_SECONDS
            }) {
                return Err(SourceError::EndsEarly {
                    path: self.path.clone(),
                    seconds: end,
                    stated,
                    detail: detail.clone(),
                });
            }
            // The frames' end is on the analysis grid, which can hold the last picture a
            // frame longer than the stream does; the stream's own packets tell its end.
            let end = packets_end(&self.path)
                .filter(|e| (e - end).abs() <= END_SLACK_FRAMES / fps)
                .unwrap_or(end);
            warn!(path = %self.path.display(), video_ends = end, stated, "the video ends before the length the file states; the music ends with the video");
            self.info.duration = Some(end);
        }
        if let Some(detail) = damage {
            // Decodable with damage (a few broken packets): the frames are usable.
            warn!(path = %self.path.display(), frames = self.delivered, "the decoder reported errors: {detail}");
        }
        Ok(())
    }
}

//! `scored.mp4`: the video (warped or not) with the music as its audio. libavcodec's AAC
//! encoder encodes the music in this process ([`aac`]; ffmpeg processes where it cannot be
//! loaded); a plain MP4/MOV's video is muxed with it here ([`mp4out`]), any other input by
//! ffmpeg, which also re-encodes a video when needed.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::aac::{self, Halves, Packets};
use super::mp4out::{self, AacTrack, CopiedVideo, WriteError};
use super::ScoreError;
use crate::music::{CHANNELS, SAMPLE_RATE};
use crate::plan::Warp;
use crate::source::{ff_file, last_line};

/// The sample entry HEVC gets in scored.mp4: `hvc1` (parameter sets in the entry) plays on
/// Apple's players, which refuse ffmpeg's default `hev1` (an HEVC recording from OBS in MKV,
/// copied as it is, would not play on an iPhone).
const HEVC_TAG: &str = "hvc1";
/// x264 settings when the video must be re-encoded (warping, or a codec mp4 cannot carry).
const X264_PRESET: &str = "veryfast";
const X264_CRF: &str = "20";
/// Video codecs (as ffmpeg names them) that scored.mp4 carries as they are: ffmpeg's mp4
/// muxer takes them, and phones or browsers play them from an MP4. Anything else (an AVI's
/// DivX 3 or Cinepak, a MOV's ProRes, WMV, Theora, VP8, …) is re-encoded with x264 by a
/// [`Transcode`] that starts as soon as the codec is known. So are MPEG-1, MPEG-2 and MJPEG
/// (a DVD's or an HDV camcorder's MPEG-2, an old camera's or a webcam's MJPEG AVI): the muxer
/// takes them, but no browser, iPhone or Android player plays them from an MP4, and
/// scored.mp4 is a file to share.
const MP4_VIDEO_CODECS: [&str; 5] = ["h264", "hevc", "av1", "vp9", "mpeg4"];
/// Nice value of a [`Transcode`]'s process: the analysis and the music are on the critical
/// path and keep their cores; x264 takes what they leave.
const TRANSCODE_NICE: libc::c_int = 10;

/// Whether scored.mp4 can carry a video coded with `codec` as it is (an unknown codec is
/// tried, and re-encoded if the muxer refuses it).
pub fn mp4_carries(codec: Option<&str>) -> bool {
    codec.is_none_or(|c| MP4_VIDEO_CODECS.contains(&c))
}

/// The input's video re-encoded with x264 into a video-only MP4 beside the outputs, for a
/// codec scored.mp4 cannot carry. It starts when the analysis reads its first frame and runs
/// beside the analysis and the music at a lower priority (an 80 s DivX AVI needs about 4 s
/// of CPU in x264), instead of after the music, and after a failed attempt to copy.
///
/// The video is made regular at its own rate on the file's timeline ([`TRANSCODE_FILTER`]),
/// as the analysis decodes it: a video that starts after the file (a WMV or FLV whose
/// audio comes first: 46 ms in) keeps that start, filled with its first picture, instead of
/// being moved to the start of scored.mp4 a frame ahead of its music (the video-only file
/// starts with its video, and ffmpeg takes a file's start as zero), and its last frame keeps
/// its length (ASF and FLV store none: it came out 0.7 ms long, the video 2 frames shorter
/// than the music).
pub struct Transcode {
    /// Taken by [`Transcode::wait`]; a transcode dropped unfinished is killed.
    child: Option<Child>,
    video: PathBuf,
    log: PathBuf,
}

/// ffmpeg's crop to even sides, for [`EVEN_SIZE`] and [`TRANSCODE_FILTER`].
macro_rules! even_size {
    () => {
        "crop=trunc(iw/2)*2:trunc(ih/2)*2:0:0"
    };
}

/// A re-encoded video's frames: at the rate ffmpeg takes for the video (its frame rate, or
/// its average rate where that is far lower, as for a variable-rate phone video stamped in
/// 1/1000 s), from the file's time zero, a gap filled with the frame before it; cropped to
/// even sides as [`EVEN_SIZE`] (a 274x269 Theora screencast from GNOME's developer docs
/// failed to score: "Error while opening encoder").
const TRANSCODE_FILTER: &str = concat!("fps=source_fps:start_time=0,", even_size!());

impl Transcode {
    /// Starts re-encoding `input`'s first video stream into `video` (ffmpeg's messages go to
    /// `log`, beside it).
    pub fn start(input: &Path, video: &Path, log: &Path) -> Result<Self, ScoreError> {
        let err = File::create(log).map_err(|e| ScoreError::Output {
            path: log.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-v", "error", "-nostdin", "-y", "-i"])
            .arg(ff_file(input))
            .args(["-map", "0:v:0", "-an", "-sn", "-dn"])
            .args(["-vf", TRANSCODE_FILTER]);
        x264(&mut cmd);
        keep_frame_times(&mut cmd);
        cmd.args(["-map_metadata", "-1", "-fflags", "+bitexact"])
            .args(["-flags:v", "+bitexact"])
            .arg(ff_file(video));
        // SAFETY: the closure runs in the forked child before exec and only makes the
        // setpriority syscall, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setpriority(libc::PRIO_PROCESS, 0, TRANSCODE_NICE);
                Ok(())
            });
        }
        let child =
            crate::children::spawn(cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err))
                .map_err(ffmpeg_missing)?;
        Ok(Transcode {
            child: Some(child),
            video: video.to_path_buf(),
            log: log.to_path_buf(),
        })
    }

    /// Waits for the re-encoded video.
    fn wait(mut self) -> Result<PathBuf, ScoreError> {
        let mut child = self.child.take().expect("a transcode is waited for once");
        let status = child
            .wait()
            .map_err(|e| ScoreError::Mux(format!("ffmpeg did not finish: {e}")))?;
        if status.success() {
            Ok(self.video.clone())
        } else {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            Err(ScoreError::Mux(format!(
                "ffmpeg could not re-encode the video for scored.mp4: {}",
                last_line(&log)
            )))
        }
    }
}

impl Drop for Transcode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What writes `scored.mp4`, set going before the music exists: libavcodec loading (or the
/// ffmpeg processes starting) and the video's index being read happen while the music is
/// composed and rendered, and the PCM is encoded the moment it is mastered, with no WAV to
/// parse.
///
/// The AAC encode is the longest step after rendering, so the music of all but a short piece
/// is encoded in two halves at once (see [`aac::encode_split`]), in this process
/// ([`Encoding::InProcess`]), or where libavcodec cannot be loaded by two ffmpeg processes
/// (see [`encode`]). The video of a plain MP4/MOV is then muxed with the AAC packets in
/// process ([`mp4out`], `Job::Own`); any other input's by an ffmpeg (`Job::Copy`), or, for a
/// short piece encoded by processes, by the one ffmpeg that encodes it (`Job::Direct`): its
/// encode is over before two more ffmpeg processes would have loaded (each costs about
/// 45–60 ms of CPU just to start).
pub struct Muxer {
    /// Taken by [`Muxer::finish`]; a muxer dropped unfinished (the music failed) kills it.
    job: Option<Job>,
    video: PathBuf,
    out: PathBuf,
}

/// With ffmpeg processes encoding (libavcodec not loadable here), music at least this long
/// is encoded in two halves at once (about 0.4 s of one core's
/// AAC encoding a minute here, against ~45 ms of CPU to start the extra encoder, at
/// [`MUX_NICE`] while the music is made). Since scored.mp4 is muxed in process (session
/// 17: one encoder more, not two encoders and a muxer), a split pays from about 8 s
/// (`tools/bench/ab.sh`, 6 s against 14 s, medians of 9–11): bikes (10 s) 0.433 → 0.404 s,
/// its write stage 0.093 → 0.059 s; the trailer's first 7 s at 640x360 0.346 → 0.345 s (its
/// write 0.072 → 0.054 s, its compose and render slower by as much). It was 14 s with
/// ffmpeg muxing (from session 12), 20 s before the muxers ran at nice 10.
pub const SPLIT_ENCODE_MIN_SECONDS: f64 = 8.0;
/// The same when ffmpeg muxes (an input [`mp4out`] does not copy): two processes more,
/// a split pays from about 13 s (session 12, `tools/bench/ab.sh`, medians of 5–9: `box.mp4`
/// (15.2 s) 0.792 → 0.759 s; the trailer's first 12 s 0.785 s either way; bikes (10 s)
/// 0.477 → 0.482 s).
const SPLIT_MUXED_ENCODE_MIN_SECONDS: f64 = 14.0;
/// The same for the encoder in this process ([`aac`]): a second encoder costs no process,
/// only its lead-in ([`Halves`]) and a thread. Split from 4 s rather than 8 s
/// (`tools/bench/ab.sh`, medians of 9): Big Buck Bunny (5 s) 0.387 → 0.372 s, its write
/// stage 0.044 → 0.032 s; carphone (4.8 s) 0.278 → 0.275 s, its write 0.035 → 0.027 s.
pub const SPLIT_IN_PROCESS_MIN_SECONDS: f64 = 4.0;

/// Who encodes the music.
enum Encoding {
    /// libavcodec in this process ([`aac`]), in two halves at once when `split`; `muxed`
    /// when ffmpeg muxes scored.mp4 (for the thresholds of ffmpeg processes, should the
    /// library not load).
    InProcess { split: bool, muxed: bool },
    /// ffmpeg processes writing ADTS: one, or two for a long piece (see [`encode`]).
    Processes(Vec<Child>),
}

/// The music encoded, as [`Encoding`] gives it.
enum Encoded {
    /// The packets and their AudioSpecificConfig.
    Packets(Packets, [u8; 2]),
    /// An ADTS stream.
    Adts(Vec<u8>),
}

impl Encoding {
    /// ffmpeg processes for a piece to be encoded in two halves when `split` (the second is
    /// not started otherwise).
    fn processes(split: bool) -> Result<Self, ScoreError> {
        let encoder = || {
            let mut c = Command::new("ffmpeg");
            c.args(["-v", "error", "-nostdin"]);
            pcm_input(&mut c);
            aac_args(&mut c);
            c.args(["-f", "adts", "pipe:1"]);
            spawn(c, true)
        };
        Ok(Encoding::Processes(if split {
            vec![encoder()?, encoder()?]
        } else {
            vec![encoder()?]
        }))
    }

    fn run(self, pcm: &[f32]) -> Result<Encoded, ScoreError> {
        self.run_if_loaded(pcm, aac::available())
    }

    /// [`Encoding::run`], given whether libavcodec could be loaded (`loaded`): if not, music
    /// meant for the in-process encoder is encoded by ffmpeg processes after all.
    fn run_if_loaded(self, pcm: &[f32], loaded: Result<(), &str>) -> Result<Encoded, ScoreError> {
        match self {
            Encoding::InProcess { split, muxed } => {
                if let Err(why) = loaded {
                    tracing::info!("encoding the music with ffmpeg: {why}");
                    let seconds = (pcm.len() / CHANNELS as usize) as f64 / SAMPLE_RATE as f64;
                    let min = match muxed {
                        true => SPLIT_MUXED_ENCODE_MIN_SECONDS,
                        false => SPLIT_ENCODE_MIN_SECONDS,
                    };
                    return Encoding::processes(seconds >= min)?.run(pcm);
                }
                aac::encode_split(pcm, split)
                    .map(|(packets, config)| Encoded::Packets(packets, config))
                    .map_err(|e| {
                        ScoreError::Mux(format!("cannot encode the music for scored.mp4: {e}"))
                    })
            }
            Encoding::Processes(children) => encode(children, pcm).map(Encoded::Adts),
        }
    }

    fn kill(self) {
        if let Encoding::Processes(children) = self {
            for mut c in children {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

enum Job {
    /// The video is being re-encoded; the music is muxed with it once it is done.
    AfterTranscode { transcode: Transcode, seconds: f64 },
    /// One ffmpeg encoding the music and the warped video.
    Warped(Child),
    /// One ffmpeg encoding the music and copying the video stream.
    Direct(Child),
    /// The music's encoding, and the muxer copying the video stream.
    Copy { encoding: Encoding, mux: Child },
    /// The music's encoding, muxed here with the video samples copied from a plain MP4/MOV
    /// ([`mp4out`]).
    Own {
        encoding: Encoding,
        video: CopiedVideo,
    },
}

impl Muxer {
    /// Starts ffmpeg muxing `video`'s first video stream (coded with `codec`, as ffmpeg names
    /// it, when known) with the music to come (`seconds` long) into `out`. With `warps`, the
    /// video is retimed segment by segment and re-encoded at `fps`.
    pub fn start(
        video: &Path,
        out: &Path,
        warps: Option<&[Warp]>,
        fps: f64,
        seconds: f64,
        codec: Option<&str>,
    ) -> Result<Self, ScoreError> {
        Self::start_with(video, out, warps, fps, seconds, codec, None)
    }

    /// [`Muxer::start`], with the video already being re-encoded by `transcode` (unwarped
    /// only): the muxing starts when it is done.
    pub fn start_with(
        video: &Path,
        out: &Path,
        warps: Option<&[Warp]>,
        fps: f64,
        seconds: f64,
        codec: Option<&str>,
        transcode: Option<Transcode>,
    ) -> Result<Self, ScoreError> {
        Self::start_encoding(
            video,
            out,
            warps,
            fps,
            seconds,
            codec,
            transcode,
            aac::COMPILED,
        )
    }

    /// [`Muxer::start_with`], with the music encoded in this process (libavcodec starts
    /// loading now; if it cannot be, ffmpeg processes encode it after all) or not.
    #[allow(clippy::too_many_arguments)]
    fn start_encoding(
        video: &Path,
        out: &Path,
        warps: Option<&[Warp]>,
        fps: f64,
        seconds: f64,
        codec: Option<&str>,
        transcode: Option<Transcode>,
        in_process: bool,
    ) -> Result<Self, ScoreError> {
        // A warp that retimes nothing (no cut could be moved, or none was found) leaves the
        // video as it is: copied, not re-encoded.
        let warps = warps.filter(|w| w.iter().any(|s| s.rate != 1.0));
        if let (Some(transcode), None) = (transcode, warps) {
            return Ok(Muxer {
                job: Some(Job::AfterTranscode { transcode, seconds }),
                video: video.to_path_buf(),
                out: out.to_path_buf(),
            });
        }
        let copy_video: &[&str] = match codec {
            Some("hevc") => &["-c:v", "copy", "-tag:v", HEVC_TAG],
            Some(MPEG4) => &["-c:v", "copy", "-bsf:v", MPEG4_UNPACK],
            _ => &["-c:v", "copy"],
        };
        let own = match warps {
            None => CopiedVideo::read(video),
            Some(_) => None,
        };
        let split = seconds
            >= if in_process {
                SPLIT_IN_PROCESS_MIN_SECONDS
            } else if own.is_some() {
                SPLIT_ENCODE_MIN_SECONDS
            } else {
                SPLIT_MUXED_ENCODE_MIN_SECONDS
            };
        if in_process && warps.is_none() {
            aac::load_in_background(Some(MUX_NICE));
        }
        let muxed = own.is_none();
        let encoding = || match in_process {
            true => Ok(Encoding::InProcess { split, muxed }),
            false => Encoding::processes(split),
        };
        let job = match (warps, own) {
            (None, Some(video)) => Job::Own {
                encoding: encoding()?,
                video,
            },
            (None, None) if !split && !in_process => {
                let mut cmd = Command::new("ffmpeg");
                cmd.args(["-v", "error", "-nostdin", "-y"]);
                copied_input(&mut cmd, video, codec);
                pcm_input(&mut cmd);
                cmd.args(["-map", "0:v:0", "-map", "1:a:0"])
                    .args(copy_video);
                common_tail(&mut cmd, out);
                Job::Direct(spawn(cmd, false)?)
            }
            (None, None) => {
                let mut mux = Command::new("ffmpeg");
                mux.args(["-v", "error", "-nostdin", "-y"]);
                copied_input(&mut mux, video, codec);
                mux
                    // The spliced ADTS stream carries the encoder's priming frame; starting
                    // it that much early gives scored.mp4 the edit list a direct encode has.
                    .args([
                        "-itsoffset",
                        &format!("-{:.10}", AAC_PRIMING as f64 / SAMPLE_RATE as f64),
                    ])
                    .args([
                        "-thread_queue_size",
                        PIPE_QUEUE,
                        "-f",
                        "aac",
                        "-i",
                        "pipe:0",
                    ])
                    .args(["-map", "0:v:0", "-map", "1:a:0", "-c:a", "copy"])
                    .args(copy_video);
                container_tail(&mut mux, out);
                Job::Copy {
                    encoding: encoding()?,
                    mux: spawn(mux, false)?,
                }
            }
            (Some(warps), _) => {
                let mut cmd = ffmpeg(video);
                cmd.args([
                    "-filter_complex",
                    &warp_graph(warps, fps),
                    "-map",
                    "[v]",
                    "-map",
                    "1:a:0",
                ]);
                x264(&mut cmd);
                common_tail(&mut cmd, out);
                Job::Warped(spawn(cmd, false)?)
            }
        };
        Ok(Muxer {
            job: Some(job),
            video: video.to_path_buf(),
            out: out.to_path_buf(),
        })
    }

    /// Feeds the music (interleaved stereo at [`SAMPLE_RATE`], written as 16-bit samples,
    /// exactly those of music.wav) and waits for scored.mp4. A video codec mp4 cannot
    /// carry as it is gets re-encoded with x264.
    pub fn finish(mut self, pcm: &[f32]) -> Result<(), ScoreError> {
        let copied = match self.job.take().expect("a muxer finishes once") {
            Job::AfterTranscode { transcode, seconds } => {
                let video = transcode.wait()?;
                let muxer = Muxer::start(&video, &self.out, None, 0.0, seconds, Some("h264"))?;
                return muxer.finish(pcm);
            }
            Job::Warped(child) => return feed(child, pcm),
            Job::Direct(child) => feed(child, pcm),
            Job::Copy { encoding, mux } => mux_encoded(encoding, mux, pcm),
            Job::Own { encoding, video } => {
                let frames = (pcm.len() / CHANNELS as usize) as u64;
                let audio = match encoding.run(pcm)? {
                    Encoded::Packets(packets, config) => {
                        AacTrack::from_packets(packets, config, frames)
                    }
                    Encoded::Adts(adts) => AacTrack::from_adts(&adts, frames),
                };
                let audio = audio.map_err(|e| {
                    ScoreError::Mux(format!(
                        "ffmpeg's AAC encoder wrote a stream scored.mp4 cannot take: {e}"
                    ))
                })?;
                return mp4out::write(&self.out, &video, &audio).map_err(|e| match e {
                    WriteError::Read(e) => ScoreError::Mux(format!(
                        "cannot read the video {} again to copy it into scored.mp4 ({e}): \
                         was it changed or moved while it was scored? Score it again",
                        self.video.display()
                    )),
                    WriteError::Write(e) => {
                        ScoreError::Mux(format!("cannot write scored.mp4: {e}"))
                    }
                });
            }
        };
        match copied {
            Ok(()) => return Ok(()),
            Err(e) => tracing::info!("{e}; muxing again with the video re-encoded"),
        }
        // As a Transcode makes it: regular at its own rate on the file's timeline.
        let mut cmd = ffmpeg(&self.video);
        cmd.args([
            "-map",
            "0:v:0",
            "-map",
            "1:a:0",
            "-filter:v",
            TRANSCODE_FILTER,
        ]);
        x264(&mut cmd);
        keep_frame_times(&mut cmd);
        common_tail(&mut cmd, &self.out);
        feed(spawn(cmd, false)?, pcm)
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        let children = match self.job.take() {
            None | Some(Job::AfterTranscode { .. }) => return, // a Transcode kills itself
            Some(Job::Warped(c) | Job::Direct(c)) => vec![c],
            Some(Job::Copy { encoding, mux }) => {
                encoding.kill();
                vec![mux]
            }
            Some(Job::Own { encoding, .. }) => {
                encoding.kill();
                return;
            }
        };
        for mut c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Packets queued from a piped input beside the video. With ffmpeg's default (8), a
/// second input read from a pipe stalls the mux for seconds at no CPU (the trailer's
/// spliced AAC stream: 2.7 s against 0.1 s from a file).
const PIPE_QUEUE: &str = "4096";

/// The AAC encoder's priming ([`mp4out::AAC_PRIMING`]).
const AAC_PRIMING: usize = mp4out::AAC_PRIMING as usize;

/// Encodes `pcm` to AAC and has `mux` write the packets as one stream.
fn mux_encoded(encoding: Encoding, mut mux: Child, pcm: &[f32]) -> Result<(), ScoreError> {
    let mut mux_in = mux.stdin.take().expect("piped stdin");
    let (encoded, muxed) = std::thread::scope(|scope| {
        let muxed = scope.spawn(move || mux.wait_with_output());
        // whether the muxer took the music (if not, its exit says why)
        let encoded = encoding.run(pcm).map(|e| {
            let adts = match e {
                Encoded::Packets(packets, config) => packets.adts(config),
                Encoded::Adts(adts) => adts,
            };
            mux_in.write_all(&adts).is_ok()
        });
        drop(mux_in);
        (encoded, muxed.join().expect("mux waiter panicked"))
    });
    match (encoded, muxed) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(ScoreError::Mux(format!("ffmpeg did not finish: {e}"))),
        (Ok(_), Ok(o)) if !o.status.success() => Err(ScoreError::Mux(format!(
            "ffmpeg could not write scored.mp4: {}",
            last_line(&String::from_utf8_lossy(&o.stderr))
        ))),
        (Ok(false), Ok(_)) => Err(ScoreError::Mux(
            "ffmpeg stopped reading the music for scored.mp4".into(),
        )),
        (Ok(true), Ok(_)) => Ok(()),
    }
}

/// Encodes `pcm` to AAC with one ffmpeg process, or with two at once in [`Halves`], and
/// returns their packets as one ADTS stream.
fn encode(encoders: Vec<Child>, pcm: &[f32]) -> Result<Vec<u8>, ScoreError> {
    const CH: usize = CHANNELS as usize;
    let halves = (encoders.len() == 2)
        .then(|| Halves::of(pcm.len() / CH))
        .flatten();
    // (music each encoder gets, packets kept: first packet, how many)
    let (ranges, keep) = match halves {
        Some(h) => (
            [&pcm[..h.a_end * CH], &pcm[h.b_start * CH..]],
            [(0, h.a_packets), (h.b_first, usize::MAX)],
        ),
        None => ([pcm, &pcm[pcm.len()..]], [(0, usize::MAX), (0, 0)]),
    };
    std::thread::scope(|scope| {
        let mut outputs = Vec::new();
        let pairs = encoders.into_iter().zip(ranges).zip(keep).enumerate();
        for (i, ((mut enc, range), (first, count))) in pairs {
            let used = i == 0 || halves.is_some();
            let mut stdin = enc.stdin.take().expect("piped stdin");
            let mut stdout = enc.stdout.take().expect("piped stdout");
            scope.spawn(move || {
                if used {
                    let _ = write_pcm(&mut stdin, range);
                }
            });
            let packets = scope.spawn(move || -> std::io::Result<Vec<u8>> {
                let mut bytes = Vec::new();
                stdout.read_to_end(&mut bytes)?;
                Ok(adts_packets(&bytes, first, count))
            });
            outputs.push((used, enc, packets));
        }
        let mut adts = Vec::new();
        let mut failure = None;
        for (used, enc, packets) in outputs {
            let out = enc.wait_with_output();
            let packets = packets.join().expect("AAC reader panicked");
            if !used {
                continue;
            }
            let why = match (out, packets) {
                (Ok(o), Ok(p)) if o.status.success() => {
                    adts.extend_from_slice(&p);
                    None
                }
                (Ok(o), _) if !o.status.success() => {
                    Some(last_line(&String::from_utf8_lossy(&o.stderr)))
                }
                (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
                _ => None,
            };
            if let Some(why) = why {
                failure.get_or_insert(why);
            }
        }
        match failure {
            Some(why) => Err(ScoreError::Mux(format!(
                "ffmpeg could not encode the music for scored.mp4: {why}"
            ))),
            None => Ok(adts),
        }
    })
}

/// The `count` ADTS packets of `bytes` from packet `first` on (all that are there if fewer),
/// as they were.
fn adts_packets(bytes: &[u8], first: usize, count: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut at, mut k) = (0, 0);
    while at + 7 <= bytes.len() && k < first.saturating_add(count) {
        let h = &bytes[at..];
        if h[0] != 0xFF || h[1] & 0xF0 != 0xF0 {
            break; // not a packet start: ffmpeg wrote something else; the mux will say so
        }
        let len = ((h[3] as usize & 0x03) << 11) | ((h[4] as usize) << 3) | (h[5] as usize >> 5);
        if len < 7 || at + len > bytes.len() {
            break;
        }
        if k >= first {
            out.extend_from_slice(&bytes[at..at + len]);
        }
        at += len;
        k += 1;
    }
    out
}

/// The picture x264 gets (warped or re-encoded) cropped to even sides (its last column or
/// row, if odd): x264 codes 4:2:0 only at even sizes, and a 641x361 video failed to warp
/// ("Error while opening encoder"). Filtered, the picture reaches x264 with no conversion of
/// ffmpeg's own, which rounds the size down the same way when it does convert (a re-encoded
/// 161x121 FFV1 came out 160x120), but not when the input is 4:2:0 already.
const EVEN_SIZE: &str = even_size!();

/// Time base of the retimed spans of a warped video: ffmpeg's microseconds.
const WARP_TIME_BASE: &str = "AVTB";
/// How far (in frames) the frames are moved later while the video is cut into spans: a span
/// boundary is a frame's time on the analysis timeline (a cut's first frame), computed as
/// the frame's own timestamp is but rounded apart from it by a microsecond or so. Moved by
/// a little more than half a frame, each frame lies inside its span.
const WARP_LEAD_FRAMES: f64 = 0.6;

/// Retimes each warp's span of the input by its rate, then joins them at `fps`, cropped to
/// even sides ([`EVEN_SIZE`]).
///
/// The spans are cut from the frames the analysis saw, made the same way (`fps=R:start_time=0`,
/// as [`crate::source::FileSource`] decodes: frame k at k / fps from the file's time zero),
/// so a warp's times name frames exactly, at any input rate (a 60 frames/s input, whose cut
/// can fall between two analysis frames, came out with its cut two frames early and two
/// frames short when cut at its own frames' times). Each span keeps its frames' offsets from
/// its start. Frames are timed in microseconds ([`WARP_TIME_BASE`]): in the input's own time
/// base, one tick per frame in an AVI, the divided timestamps rounded back onto the frame
/// grid, frames collided or left gaps, and a 9 s AVI came out 3 frames short with its cuts
/// off the downbeats.
fn warp_graph(warps: &[Warp], fps: f64) -> String {
    let lead = WARP_LEAD_FRAMES / fps;
    let n = warps.len();
    let mut graph = format!(
        "[0:v:0]fps={fps:.6}:start_time=0,settb={WARP_TIME_BASE},setpts=PTS+{lead:.6}/TB,split={n}"
    );
    for k in 0..n {
        graph.push_str(&format!("[s{k}]"));
    }
    graph.push(';');
    for (k, w) in warps.iter().enumerate() {
        graph.push_str(&format!(
            "[s{k}]trim=start={:.6}:end={:.6},setpts=(PTS-{:.6}/TB)/{:.9}[v{k}];",
            w.input_start,
            w.input_end,
            w.input_start + lead,
            w.rate
        ));
    }
    for k in 0..n {
        graph.push_str(&format!("[v{k}]"));
    }
    graph.push_str(&format!("concat=n={n}:v=1:a=0,fps={fps:.6},{EVEN_SIZE}[v]"));
    graph
}

/// ffmpeg's name for MPEG-4 Part 2 video (DivX 4/5, Xvid).
const MPEG4: &str = "mpeg4";
/// The bitstream filter that turns "packed" B-frames (DivX's way of storing a B-frame and
/// the frame after it in one AVI chunk) into one frame per packet, as mp4 needs.
const MPEG4_UNPACK: &str = "mpeg4_unpack_bframes";

/// The video as the input whose stream is copied. An AVI stores no presentation times: an
/// MPEG-4 Part 2 stream with B-frames, copied as it is, got its decoding times as
/// presentation times, so its frames came out of scored.mp4 out of order (0, 83, 125, 42 ms,
/// …) and a frame early against the music. `-fflags +genpts` has ffmpeg work them out from
/// the stream, as its decoder does for the analysis (the first picture a frame in), and
/// [`MPEG4_UNPACK`] stores one frame per packet. A DivX 5 AVI with "packed" B-frames (one
/// chunk holding a P- and a B-frame) defeats the first, whose parser sees the pair as one
/// frame: its B-frames keep their stored times, as they did before (`Megamind.avi`: 88 of
/// 270 frames shown out of order either way).
fn copied_input(c: &mut Command, video: &Path, codec: Option<&str>) {
    if codec == Some(MPEG4) {
        c.args(["-fflags", "+genpts"]);
    }
    c.arg("-i").arg(ff_file(video));
}

/// ffmpeg with two inputs: the video, and the music as raw 16-bit little-endian stereo on
/// its stdin.
fn ffmpeg(video: &Path) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-v", "error", "-nostdin", "-y", "-i"])
        .arg(ff_file(video));
    pcm_input(&mut c);
    c
}

/// The music as an input: raw 16-bit little-endian stereo on stdin.
fn pcm_input(c: &mut Command) {
    c.args([
        "-thread_queue_size",
        PIPE_QUEUE,
        "-f",
        "s16le",
        "-ar",
        &SAMPLE_RATE.to_string(),
    ])
    .args(["-ac", &CHANNELS.to_string(), "-channel_layout", "stereo"])
    .args(["-i", "pipe:0"]);
}

fn aac_args(cmd: &mut Command) {
    cmd.args(["-c:a", "aac", "-aac_coder", aac::AAC_CODER, "-b:a"])
        .arg(aac::AAC_BITRATE.to_string());
    cmd.args(["-flags:a", "+bitexact"]);
}

/// The mp4 settings and the output (reproducible bytes: no metadata, bit-exact muxing).
fn container_tail(cmd: &mut Command, out: &Path) {
    cmd.args(["-movflags", "+faststart", "-map_metadata", "-1"]);
    cmd.args([
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
    ]);
    cmd.arg(ff_file(out));
}

fn common_tail(cmd: &mut Command, out: &Path) {
    aac_args(cmd);
    container_tail(cmd, out);
}

/// Nice value of the processes that encode and mux scored.mp4. They start while the note
/// model writes the piece, which takes both cores when it is written in two parts: at the
/// same priority, a long piece's three ffmpeg processes loading (~50 ms of CPU each) slowed
/// the compose stage by half (30 s of 480p: compose 0.181 → 0.124 s with them at nice 10,
/// `score` 1.062 → 1.031 s and, in another run, 1.080 → 1.056 s; the trailer 2.184 →
/// 2.181 s and bikes (one process) 0.448 → 0.452 s, both within the noise;
/// `tools/bench/ab.sh`, medians of 5 and 3). The same value as a [`Transcode`]'s, not the
/// lowest: ffmpeg keeps it while it encodes, and on a busy machine a nice 19 process could
/// wait long for a core.
const MUX_NICE: libc::c_int = 10;

/// Starts `cmd` with stdin and stderr piped, and stdout too when `piped_out`, at
/// [`MUX_NICE`].
fn spawn(mut cmd: Command, piped_out: bool) -> Result<Child, ScoreError> {
    // SAFETY: the closure runs in the forked child before exec and only makes the
    // setpriority syscall, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpriority(libc::PRIO_PROCESS, 0, MUX_NICE);
            Ok(())
        });
    }
    cmd.stdin(Stdio::piped())
        .stdout(if piped_out {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped());
    crate::children::spawn(&mut cmd).map_err(ffmpeg_missing)
}

/// The error for an ffmpeg that cannot be started.
fn ffmpeg_missing(e: std::io::Error) -> ScoreError {
    ScoreError::Mux(format!(
        "cannot run ffmpeg ({e}); install it (apt-get install ffmpeg)"
    ))
}

/// Frames of PCM converted and written per pipe write (64 kB).
const FEED_FRAMES: usize = 16 * 1024;

/// Writes the PCM to the child's stdin (from another thread, while this one collects its
/// stderr, so neither pipe can fill up and stall the other), closes it and waits.
fn feed(mut child: Child, pcm: &[f32]) -> Result<(), ScoreError> {
    let mut stdin = child.stdin.take().expect("piped stdin");
    let out = std::thread::scope(|scope| {
        // A write error means ffmpeg stopped reading: its exit status says why.
        scope.spawn(move || write_pcm(&mut stdin, pcm));
        child.wait_with_output()
    });
    let out = out.map_err(|e| ScoreError::Mux(format!("ffmpeg did not finish: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ScoreError::Mux(format!(
            "ffmpeg could not write scored.mp4: {}",
            last_line(&String::from_utf8_lossy(&out.stderr))
        )))
    }
}

/// Writes `pcm` as 16-bit little-endian samples, a block at a time.
fn write_pcm(w: &mut impl Write, pcm: &[f32]) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(FEED_FRAMES * CHANNELS as usize * 2);
    for chunk in pcm.chunks(FEED_FRAMES * CHANNELS as usize) {
        bytes.clear();
        bytes.extend(chunk.iter().flat_map(|&s| pcm_i16(s).to_le_bytes()));
        w.write_all(&bytes)?;
    }
    Ok(())
}

/// A float sample as the 16-bit sample music.wav and scored.mp4 carry.
pub fn pcm_i16(s: f32) -> i16 {
    (s.clamp(-1.0, 1.0) * i16::MAX as f32).round() as i16
}

/// Output options that keep a re-encoded input's frames at their own times
/// (`-fps_mode passthrough`). ffmpeg's default for mp4 makes the rate constant, and it
/// filled the gaps of an AVI that skips unchanged frames (OpenCV's `tree.avi`: 68 frames
/// over 29.6 s) with copies up to 449 frames, 0.33 s longer than the video and the music.
/// Without B-frames (`-bf 0`): with them, a frame after a gap is decoded long before it is
/// shown, and the track's sample durations (decode-time steps) add up to less than its
/// last frame's end (3 s of such frames made a 2.5 s track).
fn keep_frame_times(c: &mut Command) {
    c.args(["-fps_mode", "passthrough", "-bf", "0"]);
}

/// x264 at [`X264_PRESET`] and [`X264_CRF`].
fn x264(c: &mut Command) {
    c.args([
        "-c:v",
        "libx264",
        "-preset",
        X264_PRESET,
        "-crf",
        X264_CRF,
        "-pix_fmt",
        "yuv420p",
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples per AAC frame.
    const AAC_FRAME: usize = mp4out::AAC_FRAME as usize;
    use crate::testutil::lavfi_video;

    /// Half a minute of a melody over a soft noise bed, interleaved stereo.
    fn music(seconds: f64) -> Vec<f32> {
        let frames = (seconds * SAMPLE_RATE as f64) as usize;
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut out = Vec::with_capacity(frames * 2);
        for i in 0..frames {
            let t = i as f64 / SAMPLE_RATE as f64;
            let note = (t / 0.3) as i32 % 12;
            let f = 220.0 * 2f64.powf(note as f64 / 12.0);
            let tone = 0.3 * (2.0 * std::f64::consts::PI * f * t).sin();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = 0.02 * ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5);
            out.push((tone + noise) as f32);
            out.push((0.8 * tone - noise) as f32);
        }
        out
    }

    /// ffprobe's `entries` of the `sel` streams of `path`, as comma-separated values.
    fn probe(path: &Path, sel: &str, entries: &str) -> String {
        let o = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", sel])
            .args(["-show_entries", entries, "-of", "csv=p=0"])
            .arg(path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `video` (coded with `codec`) re-encoded by a [`Transcode`] and muxed with `seconds`
    /// of music into `dir`/scored.mp4, as `score` does for a codec mp4 cannot carry.
    fn re_encoded(dir: &Path, video: &Path, fps: f64, seconds: f64, codec: &str) -> PathBuf {
        let transcode = Transcode::start(video, &dir.join("v.mp4"), &dir.join("v.log")).unwrap();
        let out = dir.join("scored.mp4");
        let muxer = Muxer::start_with(
            video,
            &out,
            None,
            fps,
            seconds,
            Some(codec),
            Some(transcode),
        )
        .unwrap();
        muxer.finish(&music(seconds)).unwrap();
        out
    }

    /// A long piece is encoded in two halves spliced on an AAC frame: scored.mp4's audio is
    /// the music, sample-aligned and as long (plus at most the codec's last partial frame),
    /// and no worse at the splice than overall.
    #[test]
    fn a_long_piece_is_encoded_in_two_halves_without_a_seam() {
        let dir = tempfile::tempdir().unwrap();
        let video = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/clips/bikes.mp4");
        let mkv = dir.path().join("bikes.mkv");
        remux(&video, &mkv);
        // muxed in process, and by ffmpeg; encoded in process, and by ffmpeg processes
        for video in [video, mkv] {
            for in_process in [aac::COMPILED, false] {
                split_without_a_seam(dir.path(), &video, in_process);
            }
        }
    }

    fn split_without_a_seam(dir: &Path, video: &Path, in_process: bool) {
        let out = dir.join("scored.mp4");
        let seconds = SPLIT_MUXED_ENCODE_MIN_SECONDS + 5.0;
        let pcm = music(seconds);
        let muxer = start(video, &out, seconds, Some("h264"), in_process);
        assert_eq!(encoders(&muxer), 2);
        muxer.finish(&pcm).unwrap();
        let dec = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&out)
            .args(["-map", "0:a", "-f", "s16le", "-"])
            .output()
            .unwrap();
        assert!(dec.status.success());
        let heard: Vec<f64> = dec
            .stdout
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as f64)
            .collect();
        let want: Vec<f64> = pcm.iter().map(|&s| pcm_i16(s) as f64).collect();
        assert!(
            heard.len() >= want.len() && heard.len() <= want.len() + 2 * AAC_FRAME,
            "scored.mp4 has {} samples, the music {}",
            heard.len(),
            want.len()
        );
        let snr = |r: std::ops::Range<usize>| {
            let (mut sig, mut err) = (0.0, 0.0);
            for i in r {
                sig += want[i].powi(2);
                err += (heard[i] - want[i]).powi(2);
            }
            10.0 * (sig / err.max(1.0)).log10()
        };
        let whole = snr(0..want.len());
        // the splice, in interleaved samples (encode's frame boundary s)
        let mid = want.len() / 2 / 2 / AAC_FRAME * AAC_FRAME * 2;
        let splice = snr(mid - 8 * AAC_FRAME..mid + 8 * AAC_FRAME);
        println!("split encode vs the music: SNR {whole:.1} dB, at the splice {splice:.1} dB");
        assert!(whole > 20.0, "the audio is not the music ({whole:.1} dB)");
        assert!(
            splice > whole - 6.0,
            "the splice is audible ({splice:.1} dB vs {whole:.1} dB)"
        );
    }

    /// HEVC is copied into scored.mp4 with the `hvc1` sample entry Apple's players need
    /// (ffmpeg writes `hev1` unless told), whatever the input's container.
    #[test]
    fn copied_hevc_is_tagged_for_apple_players() {
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("obs.mkv");
        lavfi_video(
            &video,
            "testsrc2=s=320x180:r=25:d=1",
            &[
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "log-level=none",
            ],
        );
        let out = dir.path().join("scored.mp4");
        let muxer = Muxer::start(&video, &out, None, 25.0, 1.0, Some("hevc")).unwrap();
        muxer.finish(&music(1.0)).unwrap();
        assert_eq!(
            probe(&out, "v", "stream=codec_name,codec_tag_string"),
            "hevc,hvc1"
        );
    }

    /// A codec mp4 cannot carry (DivX 3 in an AVI that skips repeated frames, as OpenCV's
    /// sample videos do) is re-encoded to H.264 before the music is muxed, with its frames at
    /// their own times: scored.mp4's video is as long as the input's.
    #[test]
    fn a_codec_mp4_cannot_carry_is_re_encoded_with_its_frame_times() {
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("gaps.avi");
        // 3 s at 10 frames/s, of which 13 are in the file: 4 of every 10, and the last
        lavfi_video(
            &video,
            "testsrc2=s=160x120:r=10:d=3,select='lt(mod(n\\,10)\\,4)+eq(n\\,29)'",
            &["-fps_mode", "vfr", "-c:v", "msmpeg4", "-q:v", "5"],
        );
        assert!(mp4_carries(Some("h264")) && mp4_carries(None));
        assert!(!mp4_carries(Some("msmpeg4v3")) && !mp4_carries(Some("cinepak")));
        // the muxer takes these, but phones and browsers do not play them from an MP4
        for codec in ["mpeg2video", "mpeg1video", "mjpeg"] {
            assert!(!mp4_carries(Some(codec)), "{codec}");
        }
        let input_seconds: f64 = probe(&video, "v:0", "format=duration").parse().unwrap();
        let out = re_encoded(dir.path(), &video, 10.0, input_seconds, "msmpeg4v3");
        let v = probe(&out, "v:0", "stream=codec_name,duration");
        let (codec, seconds) = v.split_once(',').unwrap();
        assert_eq!(codec, "h264");
        let seconds: f64 = seconds.parse().unwrap();
        assert!(
            (seconds - input_seconds).abs() <= 0.1 + 1e-6,
            "video {seconds} s, input {input_seconds} s"
        );
    }

    /// A codec mp4 cannot carry at odd sides (a 274x269 Theora screencast, as GNOME's
    /// developer docs ship one) is re-encoded cropped to even sides, which x264 needs for
    /// 4:2:0: before, ffmpeg could not open the encoder and `score` failed.
    #[test]
    fn an_odd_sized_video_is_re_encoded_at_even_sides() {
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("odd.ogv");
        lavfi_video(
            &video,
            // 4:4:4, as that screencast is (lavfi's own sources round odd sides down)
            "testsrc2=s=320x240:r=15:d=2,scale=161:121,format=yuv444p",
            &["-c:v", "libtheora", "-q:v", "5"],
        );
        assert_eq!(probe(&video, "v:0", "stream=width,height"), "161,121");
        let out = re_encoded(dir.path(), &video, 15.0, 2.0, "theora");
        assert_eq!(
            probe(&out, "v:0", "stream=codec_name,width,height"),
            "h264,160,120"
        );
    }

    /// A WMV whose video starts 46 ms after its audio (as ffmpeg's ASF muxer writes one):
    /// re-encoded, its video stays on the file's timeline, as the analysis and the music
    /// have it: scored.mp4's video starts at 0 with the first picture and is as long as the
    /// music. Before, the video-only file started with the video and was muxed a frame
    /// early, and its last frame (ASF stores no frame lengths) was 0.7 ms long: the video
    /// was 2 frames shorter than the music.
    #[test]
    fn a_video_that_starts_after_its_audio_keeps_its_place_when_re_encoded() {
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("late.wmv");
        lavfi_video(
            &video,
            "testsrc2=s=160x120:r=24:d=3",
            &[
                "-f", "lavfi", "-i", "sine=d=3", "-c:v", "wmv2", "-c:a", "wmav2",
            ],
        );
        let start: f64 = probe(&video, "v:0", "stream=start_time").parse().unwrap();
        assert!(start > 0.02, "the WMV's video starts at {start} s");
        // the analysis' length: the video's end on the file's timeline
        let seconds: f64 = probe(&video, "v:0", "stream=duration").parse().unwrap();
        let out = re_encoded(dir.path(), &video, 24.0, seconds, "wmv2");
        let v = probe(&out, "v:0", "stream=start_time,duration");
        let (v_start, v_seconds) = v.split_once(',').unwrap();
        let (v_start, v_seconds): (f64, f64) =
            (v_start.parse().unwrap(), v_seconds.parse().unwrap());
        let a_seconds: f64 = probe(&out, "a:0", "stream=duration").parse().unwrap();
        let frame = 1.0 / 24.0;
        assert!(v_start.abs() < 1e-3, "video starts at {v_start} s");
        assert!(
            (v_start + v_seconds - a_seconds).abs() <= frame / 2.0,
            "video ends at {} s, music at {a_seconds} s",
            v_start + v_seconds
        );
        // the first picture is the input's first (testsrc2's frame 0), not a later one
        let first = |path: &Path, at: &str| {
            Command::new("ffmpeg")
                .args(["-v", "error", "-i"])
                .arg(path)
                .args([
                    "-map",
                    "0:v:0",
                    "-vf",
                    &format!("select=eq(n\\,{at}),scale=16:12"),
                    "-frames:v",
                    "1",
                ])
                .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
                .output()
                .unwrap()
                .stdout
        };
        let (a, b) = (first(&video, "0"), first(&out, "1"));
        assert_eq!(a.len(), 192);
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| x.abs_diff(*y) as u32)
            .sum::<u32>()
            / 192;
        assert!(
            diff <= 3,
            "scored.mp4's second frame is not the input's first ({diff})"
        );
    }

    /// A short piece is encoded and muxed by one process.
    /// An AVI's time base is one tick per frame and, with B-frames, its first decoded
    /// picture is stamped a frame late; at 24000/1001 frames/s the analysis rate, 23.976,
    /// puts a cut's frame a hair after its stamp. Warped, the cut still lands where the
    /// warps put it and the video is as long as the music, each within half a frame.
    #[test]
    fn a_warped_avi_keeps_its_cut_and_length() {
        for (rate, analysis_rate) in [("30", 30.0), ("24000/1001", 23.976)] {
            warped_avi_keeps_its_cut_and_length(rate, analysis_rate);
        }
    }

    /// Mean luma of each frame of a 64x48 video, as ffmpeg decodes it at a constant rate.
    fn frame_means(video: &Path) -> Vec<f64> {
        let gray = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(video)
            .args(["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
            .output()
            .unwrap();
        assert!(gray.status.success());
        gray.stdout
            .chunks(64 * 48)
            .map(|f| f.iter().map(|&p| f64::from(p)).sum::<f64>() / f.len() as f64)
            .collect()
    }

    fn warped_avi_keeps_its_cut_and_length(rate: &str, expected_fps: f64) {
        use crate::source::{AnalysisSize, FileSource, Source};
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("cut.avi");
        // 60 frames of red, then 60 of blue, MPEG-4 Part 2 with B-frames.
        lavfi_video(
            &video,
            &format!(
                "color=red:s=64x48:r={rate}[a];color=blue:s=64x48:r={rate}[b];\
                 [a]trim=end_frame=60[a2];[b]trim=end_frame=60[b2];[a2][b2]concat=n=2:v=1:a=0"
            ),
            &["-c:v", "mpeg4", "-bf", "2", "-q:v", "5"],
        );
        // The cut and the end on the analysis timeline, where the warps come from (the
        // B-frame delay stamps the first picture a frame in: the cut is at 61 frames).
        let mut source = FileSource::open(&video, AnalysisSize::default()).unwrap();
        let fps = source.info().fps;
        assert!(
            (fps - expected_fps).abs() < 1e-3,
            "{rate}: analysed at {fps}"
        );
        let mut input = Vec::new();
        while let Some(f) = source.next_frame().unwrap() {
            input.push(f.gray.iter().map(|&p| f64::from(p)).sum::<f64>() / f.gray.len() as f64);
        }
        let cut_frame = input.iter().position(|&m| m < 61.0).unwrap();
        assert_eq!(cut_frame, 61, "{rate}: the cut on the analysis timeline");
        let (cut_in, end_in) = (cut_frame as f64 / fps, input.len() as f64 / fps);
        let warp = |input_start: f64, input_end: f64, output_start: f64, rate: f64| Warp {
            input_start,
            input_end,
            output_start,
            output_end: output_start + (input_end - input_start) / rate,
            rate,
        };
        let first = warp(0.0, cut_in, 0.0, 1.0775);
        let second = warp(cut_in, end_in, first.output_end, 0.9225);
        let (cut, seconds) = (first.output_end, second.output_end);
        let out = dir.path().join("scored.mp4");
        let muxer = Muxer::start(
            &video,
            &out,
            Some(&[first, second]),
            fps,
            seconds,
            Some("mpeg4"),
        )
        .unwrap();
        muxer.finish(&music(seconds)).unwrap();
        let means = frame_means(&out);
        // Red is about 81 in luma, blue about 41.
        let first_blue = means.iter().position(|&m| m < 61.0).unwrap();
        let frame = 1.0 / fps;
        let shown = first_blue as f64 * frame;
        assert!(
            (shown - cut).abs() <= frame / 2.0,
            "{rate}: the cut is at {shown} s, warped to {cut} s"
        );
        let length = means.len() as f64 * frame;
        assert!(
            (length - seconds).abs() <= frame / 2.0,
            "{rate}: {} frames ({length} s) for {seconds} s of music",
            means.len()
        );
    }

    /// An MPEG-4 Part 2 AVI with B-frames, copied (by the one process of a short piece and
    /// by the muxer of a long one): its frames keep their order, and the first picture its
    /// place a frame in, as on the analysis timeline.
    #[test]
    fn a_copied_avi_with_b_frames_keeps_its_frame_order() {
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("bf.avi");
        lavfi_video(
            &video,
            "testsrc2=s=160x120:r=25:d=16",
            &["-c:v", "mpeg4", "-bf", "2", "-q:v", "5"],
        );
        for seconds in [8.0, 16.0] {
            let out = dir.path().join(format!("s{seconds}.mp4"));
            let muxer = Muxer::start(&video, &out, None, 25.0, seconds, Some("mpeg4")).unwrap();
            muxer.finish(&music(seconds)).unwrap();
            let times: Vec<f64> = probe(&out, "v:0", "frame=pts_time")
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            assert!(
                times.len() >= (seconds * 25.0) as usize - 1,
                "{seconds}: {times:?}"
            );
            assert!(
                times.windows(2).all(|w| w[1] > w[0]),
                "{seconds} s: frames out of order: {:?}",
                &times[..8]
            );
            assert!(
                (times[0] - 0.04).abs() < 0.005,
                "{seconds} s: first at {}",
                times[0]
            );
        }
    }

    /// A video with an odd side (here 4:4:4, as a screen recorder may write it) is warped:
    /// x264 codes 4:2:0 only at even sizes, so its last column and row are cropped.
    #[test]
    fn an_odd_sized_video_is_warped() {
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("odd.mp4");
        lavfi_video(
            &video,
            "testsrc=s=65x49:r=25:d=4",
            &[
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv444p",
            ],
        );
        let warps = [
            Warp {
                input_start: 0.0,
                input_end: 2.0,
                output_start: 0.0,
                output_end: 2.0 / 0.95,
                rate: 0.95,
            },
            Warp {
                input_start: 2.0,
                input_end: 4.0,
                output_start: 2.0 / 0.95,
                output_end: 2.0 / 0.95 + 2.0,
                rate: 1.0,
            },
        ];
        let seconds = warps[1].output_end;
        let out = dir.path().join("scored.mp4");
        let muxer = Muxer::start(&video, &out, Some(&warps), 25.0, seconds, Some("h264")).unwrap();
        muxer.finish(&music(seconds)).unwrap();
        assert_eq!(probe(&out, "v:0", "stream=width,height"), "64,48");
    }

    /// The video packets of `path` as ffprobe reads them: times, sizes, flags and an MD5 of
    /// each packet's data.
    fn video_packets(path: &Path) -> String {
        let o = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_data_hash",
                "md5",
            ])
            .args([
                "-show_entries",
                "packet=pts_time,dts_time,duration_time,size,flags,data_hash",
            ])
            .args(["-of", "csv=p=0"])
            .arg(path)
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A plain MP4/MOV whose codec mp4 carries is muxed in process ([`mp4out`]): scored.mp4
    /// holds the input's video packets as they were (times, sizes, flags, bytes), its
    /// rotation and its start, and the music exactly as a direct encode gives it, from the
    /// file's time zero; ffmpeg reads and decodes it without a complaint.
    #[test]
    fn a_plain_mp4_is_muxed_in_process_with_its_video_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let src = "testsrc2=s=320x180:r=25:d=3";
        // B-frames (an edit list and composition offsets), and an audio track of its own
        let bframes = d.join("bframes.mp4");
        lavfi_video(
            &bframes,
            src,
            &[
                "-f", "lavfi", "-i", "sine=d=3", "-c:v", "libx264", "-bf", "3", "-c:a", "aac",
            ],
        );
        // a phone's portrait MOV: rotated by its matrix, at 30000/1001 frames/s
        let rotated = d.join("rotated.mov");
        lavfi_video(
            &rotated,
            "testsrc2=s=320x180:r=30000/1001:d=2",
            &["-c:v", "libx264", "-metadata:s:v", "rotate=90"],
        );
        // the video starts 1 s after the file (its audio) does
        let late = d.join("late.mp4");
        let made = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "sine=d=3",
                "-itsoffset",
                "1",
            ])
            .args(["-f", "lavfi", "-i", "testsrc2=s=160x120:r=25:d=2"])
            .args([
                "-map", "0:a", "-map", "1:v", "-c:v", "libx264", "-c:a", "aac",
            ])
            .arg(&late)
            .status()
            .unwrap();
        assert!(made.success());
        // VP9 in MP4
        let vp9 = d.join("vp9.mp4");
        lavfi_video(
            &vp9,
            src,
            &[
                "-c:v",
                "libvpx-vp9",
                "-deadline",
                "realtime",
                "-b:v",
                "300k",
            ],
        );
        let seconds = 3.0;
        let cases = [&bframes, &rotated, &late, &vp9].map(|v| (v, aac::COMPILED));
        // and the ffmpeg processes that encode the music where libavcodec cannot be opened
        for (video, in_process) in cases.into_iter().chain([(&bframes, false)]) {
            let out = d.join("scored.mp4");
            let muxer = start(video, &out, seconds, None, in_process);
            assert!(
                matches!(muxer.job, Some(Job::Own { .. })),
                "{}",
                video.display()
            );
            let pcm = music(seconds);
            muxer.finish(&pcm).unwrap();
            let name = video.display();
            assert_eq!(video_packets(&out), video_packets(video), "{name}");
            for entries in [
                "stream=codec_name,codec_tag_string,width,height,start_time",
                "stream_side_data=rotation",
            ] {
                assert_eq!(
                    probe(&out, "v", entries),
                    probe(video, "v", entries),
                    "{name}: {entries}"
                );
            }
            assert_eq!(
                probe(
                    &out,
                    "a",
                    "stream=codec_name,sample_rate,channels,start_time,duration"
                ),
                "aac,48000,2,0.000000,3.000000",
                "{name}"
            );
            let check = Command::new("ffmpeg")
                .args(["-v", "error", "-i"])
                .arg(&out)
                .args(["-f", "null", "-"])
                .output()
                .unwrap();
            assert!(
                check.status.success() && check.stderr.is_empty(),
                "{name}: {}",
                String::from_utf8_lossy(&check.stderr)
            );
            // the music's packets are those of one direct encode of it
            let wav = d.join("music.wav");
            crate::score::write_wav(&wav, &pcm).unwrap();
            let adts = |args: &[&str], input: &Path| {
                let o = Command::new("ffmpeg")
                    .args(["-v", "error", "-i"])
                    .arg(input)
                    .args(args)
                    .args(["-f", "adts", "-"])
                    .output()
                    .unwrap();
                assert!(o.status.success());
                o.stdout
            };
            let direct = adts(
                &[
                    "-c:a",
                    "aac",
                    "-aac_coder",
                    aac::AAC_CODER,
                    "-b:a",
                    &aac::AAC_BITRATE.to_string(),
                    "-flags:a",
                    "+bitexact",
                ],
                &wav,
            );
            assert!(
                adts(&["-map", "0:a", "-c:a", "copy"], &out) == direct,
                "{name}: the music is not one encode's"
            );
            std::fs::remove_file(&out).unwrap();
        }
    }

    /// A video cut short after it was analysed (an upload overwritten, a disk unplugged) is
    /// named: its samples can no longer be copied.
    #[test]
    fn a_video_cut_short_before_the_mux_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("bikes.mp4");
        std::fs::copy(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/clips/bikes.mp4"),
            &video,
        )
        .unwrap();
        let out = dir.path().join("scored.mp4");
        let muxer = Muxer::start(&video, &out, None, 25.0, 3.0, Some("h264")).unwrap();
        assert!(matches!(muxer.job, Some(Job::Own { .. })));
        File::options()
            .write(true)
            .open(&video)
            .unwrap()
            .set_len(100_000)
            .unwrap();
        let e = muxer.finish(&music(3.0)).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("cannot read the video {} again", video.display()))
                && e.contains("Score it again"),
            "{e}"
        );
    }

    /// What the in-process muxer does not copy exactly goes to ffmpeg: another container,
    /// an MP4 in fragments, HEVC in an `hev1` entry (ffmpeg relabels it), MPEG-4 Part 2.
    #[test]
    fn other_inputs_are_muxed_by_ffmpeg() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let src = "testsrc2=s=160x120:r=25:d=1";
        let cases: [(&str, &[&str]); 4] = [
            ("mkv.mkv", &["-c:v", "libx264"]),
            (
                "frag.mp4",
                &["-c:v", "libx264", "-movflags", "frag_keyframe+empty_moov"],
            ),
            (
                "hev1.mp4",
                &[
                    "-c:v",
                    "libx265",
                    "-x265-params",
                    "log-level=none",
                    "-tag:v",
                    "hev1",
                ],
            ),
            ("mpeg4.mp4", &["-c:v", "mpeg4"]),
        ];
        for (name, codec) in cases {
            let video = d.join(name);
            lavfi_video(&video, src, codec);
            assert!(CopiedVideo::read(&video).is_none(), "{name}");
            let out = d.join("scored.mp4");
            for in_process in [aac::COMPILED, false] {
                let muxer = start(&video, &out, 1.0, None, in_process);
                match in_process {
                    true => assert!(matches!(muxer.job, Some(Job::Copy { .. })), "{name}"),
                    false => assert!(matches!(muxer.job, Some(Job::Direct(_))), "{name}"),
                }
                muxer.finish(&music(1.0)).unwrap();
                assert_eq!(probe(&out, "a", "stream=codec_name"), "aac", "{name}");
                std::fs::remove_file(&out).unwrap();
            }
        }
    }

    /// A [`Muxer`] for `seconds` of music, encoded in this process or by ffmpeg processes.
    fn start(
        video: &Path,
        out: &Path,
        seconds: f64,
        codec: Option<&str>,
        in_process: bool,
    ) -> Muxer {
        Muxer::start_encoding(video, out, None, 25.0, seconds, codec, None, in_process).unwrap()
    }

    /// How many encoders a muxer's music gets (a `Direct` ffmpeg: one; none for a warp).
    fn encoders(m: &Muxer) -> usize {
        let count = |e: &Encoding| match e {
            Encoding::InProcess { split, .. } => 1 + *split as usize,
            Encoding::Processes(children) => children.len(),
        };
        match &m.job {
            Some(Job::Own { encoding, .. } | Job::Copy { encoding, .. }) => count(encoding),
            Some(Job::Direct(_)) => 1,
            _ => 0,
        }
    }

    /// Where libavcodec cannot be loaded (another FFmpeg than the one the build saw), music
    /// meant for the in-process encoder is encoded by ffmpeg processes: the same packets.
    #[test]
    fn music_meant_for_the_library_is_encoded_by_processes_when_it_cannot_load() {
        let seconds = SPLIT_ENCODE_MIN_SECONDS + 1.0;
        let pcm = music(seconds);
        let adts =
            |e: Encoding, loaded: Result<(), &str>| match e.run_if_loaded(&pcm, loaded).unwrap() {
                Encoded::Adts(adts) => adts,
                Encoded::Packets(packets, config) => packets.adts(config),
            };
        let split = true;
        let fallback = adts(
            Encoding::InProcess {
                split,
                muxed: false,
            },
            Err("libavcodec.so.59: cannot open shared object file"),
        );
        assert!(fallback == adts(Encoding::processes(split).unwrap(), Ok(())));
        if aac::COMPILED {
            let in_process = Encoding::InProcess {
                split,
                muxed: false,
            };
            assert!(fallback == adts(in_process, aac::available()));
        }
    }

    #[test]
    fn a_short_piece_is_encoded_by_one_encoder() {
        let dir = tempfile::tempdir().unwrap();
        let video = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/clips/bikes.mp4");
        let out = dir.path().join("s.mp4");
        let mkv = dir.path().join("bikes.mkv");
        remux(&video, &mkv);
        // in process: a second encoder costs a thread
        if aac::COMPILED {
            let s = SPLIT_IN_PROCESS_MIN_SECONDS;
            for v in [&video, &mkv] {
                assert_eq!(encoders(&start(v, &out, s - 0.5, None, true)), 1);
                assert_eq!(encoders(&start(v, &out, s, None, true)), 2);
            }
            assert!(matches!(
                start(&mkv, &out, 1.0, None, true).job,
                Some(Job::Copy { .. })
            ));
        }
        // ffmpeg processes: a second costs a process; where ffmpeg muxes, one process
        // encodes and muxes a short piece
        let own = |s: f64| encoders(&start(&video, &out, s, None, false));
        assert_eq!(own(SPLIT_ENCODE_MIN_SECONDS - 0.5), 1);
        assert_eq!(own(SPLIT_ENCODE_MIN_SECONDS), 2);
        let muxed = |s: f64| start(&mkv, &out, s, None, false);
        assert!(matches!(muxed(10.0).job, Some(Job::Direct(_))));
        assert!(matches!(muxed(16.0).job, Some(Job::Copy { .. })));
    }

    /// `video`'s streams copied into `out` (another container).
    fn remux(video: &Path, out: &Path) {
        let made = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(video)
            .args(["-c", "copy"])
            .arg(out)
            .status()
            .unwrap();
        assert!(made.success());
    }

    #[test]
    fn a_warp_that_retimes_nothing_copies_the_video() {
        let dir = tempfile::tempdir().unwrap();
        let video = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/clips/bikes.mp4");
        let identity = [
            Warp {
                input_start: 0.0,
                input_end: 4.0,
                output_start: 0.0,
                output_end: 4.0,
                rate: 1.0,
            },
            Warp {
                input_start: 4.0,
                input_end: 10.0,
                output_start: 4.0,
                output_end: 10.0,
                rate: 1.0,
            },
        ];
        let start = |warps: &[Warp]| {
            Muxer::start(
                &video,
                &dir.path().join("s.mp4"),
                Some(warps),
                25.0,
                10.0,
                Some("h264"),
            )
            .unwrap()
        };
        assert!(matches!(start(&identity).job, Some(Job::Own { .. })));
        let mut retimed = identity;
        retimed[0].rate = 0.95;
        retimed[0].output_end = 4.0 / 0.95;
        assert!(matches!(start(&retimed).job, Some(Job::Warped(_))));
    }
}

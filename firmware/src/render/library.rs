//! The template library: `templates/index.json`, the Ogg Vorbis loops it names and the
//! MIDI patterns they were rendered from. [`Library::load`] checks everything when the
//! library is loaded (index fields, file presence, checksum, sample rate, channels,
//! length, decodability), so a bad library is a clear error before the first bar, never a
//! failure mid-render: what the live engine, which plays for days, needs.
//! [`Library::open`] checks the same index, files and patterns but leaves each audio
//! file's checksum and format to the first time a piece plays it: `score` and `refine`
//! play a handful of the 75 loops, and reading and hashing all of them was a third of
//! their start-up work beside the decode. A bad file is then an error of that piece, with
//! the same message, before anything is written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::RenderError;
use crate::midi::{MidiTrack, TimedNote, DRUM_CHANNEL};
use crate::music::{
    Chord, Genre, Key, Mood, CHANNELS, PROGRESSIONS, PROGRESSION_BARS, SAMPLE_RATE, TICKS_PER_BEAT,
};

/// File name of the index inside a library folder.
pub const INDEX_FILE: &str = "index.json";

/// Version of the index format this build reads (`format` in the index).
pub const INDEX_FORMAT: u32 = 1;

/// Lowest number of intensity layers each style must have (sparse → full).
pub const MIN_LAYERS: u8 = 3;

/// The index as `tools/templates/build.py` writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub format: u32,
    pub sample_rate: u32,
    pub channels: u16,
    pub beats_per_bar: u32,
    pub ticks_per_beat: u32,
    pub templates: Vec<TemplateInfo>,
}

/// One template: a loop of one progression in one style and intensity layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateInfo {
    pub id: String,
    pub style: Genre,
    pub mood: Mood,
    /// Arrangement energy 0..=1 the template carries.
    pub energy: f32,
    /// Native tempo of the audio, BPM.
    pub tempo_bpm: f64,
    pub key: Key,
    /// Id of the `music::PROGRESSIONS` entry it plays.
    pub progression: String,
    /// Chord of each bar of the loop.
    pub chords: Vec<Chord>,
    /// Bars in the loop.
    pub bars: u32,
    /// Intensity layer, 0 = sparse.
    pub layer: u8,
    /// Parts as `name:program` (or `name:drums`).
    pub instruments: Vec<String>,
    /// Audio file, relative to the library folder.
    pub audio: String,
    /// MIDI pattern the audio was rendered from, relative to the library folder.
    pub midi: String,
    /// Frames (per channel) in the audio loop.
    pub frames: u64,
    /// Frames of the first bar rendered from silence that precede the loop in the file.
    pub intro_frames: u64,
    /// SHA-256 of the audio file, hex.
    pub sha256: String,
}

impl TemplateInfo {
    /// Frames in one bar at the native tempo.
    pub fn bar_frames(&self) -> usize {
        (self.frames / self.bars.max(1) as u64) as usize
    }
}

/// A problem found in a library: which file and what is wrong.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// Template id, or `index` for the index itself.
    pub template: String,
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.template,
            self.path.display(),
            self.message
        )
    }
}

/// A loaded template: its index entry and its backing parts (from the MIDI pattern).
#[derive(Debug, Clone)]
pub struct Template {
    pub info: TemplateInfo,
    /// Parts of the loop, ticks from the loop start at [`TICKS_PER_BEAT`].
    pub parts: Vec<MidiTrack>,
    /// The library folder `info.audio` and `info.midi` are relative to.
    pub dir: PathBuf,
    /// Uploaded by the user (merged from the data folder), not shipped.
    pub user: bool,
    /// Whether the audio file's checksum is the index's: set for every template by
    /// [`Library::load`], at its first play for one [`Library::open`] read.
    checksum_checked: OnceLock<Result<(), String>>,
}

/// The template library. Audio is decoded on demand (one loop at a time is in memory),
/// so the library itself stays small.
#[derive(Debug, Clone)]
pub struct Library {
    dir: PathBuf,
    templates: Vec<Template>,
}

impl Library {
    /// Loads and validates the library in `dir`: every problem [`Library::check`] would
    /// report is an error here, naming the file and what to do.
    pub fn load(dir: &Path) -> Result<Self, RenderError> {
        Self::load_checked(dir, check_dir(dir), false, true)
    }

    /// Loads the library in `dir` as [`Library::load`] does, except that each template's
    /// audio file is only checked to be there: its checksum and format are checked the
    /// first time it is played, with the same message naming the file (see the module
    /// documentation).
    pub fn open(dir: &Path) -> Result<Self, RenderError> {
        Self::load_checked(dir, check_dir_audio(dir, true, false), false, false)
    }

    /// Loads a user library (the web page's uploads, `<data>/templates`): each template is
    /// checked as in [`Library::load`], but the folder need not cover every progression,
    /// since it only adds to the shipped library ([`Library::merge_user`]).
    pub fn load_user(dir: &Path) -> Result<Self, RenderError> {
        Self::load_checked(dir, check_dir_with(dir, false), true, true)
    }

    /// Adds the templates of the user library in `dir`, if it has an index; returns how many
    /// were added. An id the shipped library already has keeps the shipped template (logged).
    /// On error nothing is added.
    pub fn merge_user(&mut self, dir: &Path) -> Result<usize, RenderError> {
        if !dir.join(INDEX_FILE).exists() {
            return Ok(0);
        }
        let user = Library::load_user(dir)?;
        let mut added = 0;
        for t in user.templates {
            if self.get(&t.info.id).is_some() {
                tracing::warn!(id = %t.info.id, dir = %dir.display(), "uploaded template has the id of a shipped one; keeping the shipped one");
                continue;
            }
            self.templates.push(t);
            added += 1;
        }
        tracing::info!(dir = %dir.display(), added, "user templates merged");
        Ok(added)
    }

    /// The library in `dir`, once `problems` (what the checks found) are none; `audio_checked`:
    /// those checks included every audio file's checksum and format.
    fn load_checked(
        dir: &Path,
        problems: Vec<Problem>,
        user: bool,
        audio_checked: bool,
    ) -> Result<Self, RenderError> {
        if let Some(first) = problems.first() {
            return Err(RenderError::Library {
                dir: dir.to_path_buf(),
                count: problems.len(),
                first: first.to_string(),
            });
        }
        let index = read_index(dir).map_err(|p| RenderError::Library {
            dir: dir.to_path_buf(),
            count: 1,
            first: p.to_string(),
        })?;
        let mut templates = Vec::with_capacity(index.templates.len());
        for info in index.templates {
            let path = dir.join(&info.midi);
            let parts = read_pattern(&path).map_err(|message| RenderError::Template {
                path: path.clone(),
                message,
            })?;
            let checked = OnceLock::new();
            if audio_checked {
                let _ = checked.set(Ok(()));
            }
            templates.push(Template {
                info,
                parts,
                dir: dir.to_path_buf(),
                user,
                checksum_checked: checked,
            });
        }
        tracing::info!(dir = %dir.display(), templates = templates.len(), "template library loaded");
        Ok(Library {
            dir: dir.to_path_buf(),
            templates,
        })
    }

    /// Re-validates the library folder (files can change after load); empty when sound.
    pub fn check(&self) -> Vec<Problem> {
        check_dir(&self.dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    pub fn get(&self, id: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.info.id == id)
    }

    /// Intensity layers available for a style, ascending.
    pub fn layers(&self, style: Genre) -> Vec<u8> {
        let mut l: Vec<u8> = self
            .templates
            .iter()
            .filter(|t| t.info.style == style)
            .map(|t| t.info.layer)
            .collect();
        l.sort_unstable();
        l.dedup();
        l
    }

    /// The template of `style` recorded with `progression`, at the layer nearest `layer`;
    /// between two equally near, the user's upload (that is what the user asked to hear).
    pub fn select(&self, style: Genre, progression: &str, layer: u8) -> Option<&Template> {
        self.templates
            .iter()
            .filter(|t| t.info.style == style && t.info.progression == progression)
            .min_by_key(|t| ((t.info.layer as i32 - layer as i32).abs(), !t.user))
    }

    /// Decodes a template's audio: `[intro][loop]`, interleaved stereo f32 at
    /// [`SAMPLE_RATE`] (the intro is `template.intro_frames` long).
    pub fn decode(&self, template: &Template) -> Result<Vec<f32>, RenderError> {
        let (bytes, path) = Self::audio_bytes(template)?;
        let template = &template.info;
        let want = template.frames + template.intro_frames;
        let pcm =
            decode_ogg_bytes(bytes, want as usize).map_err(|message| RenderError::Template {
                path: path.clone(),
                message,
            })?;
        let frames = pcm.len() / CHANNELS as usize;
        if frames as u64 != want {
            return Err(RenderError::Template {
                path,
                message: format!("decodes to {frames} frames, the index says {want}; rebuild with tools/templates/build.sh"),
            });
        }
        Ok(pcm)
    }

    /// A template's audio, decoded on demand as a player reads it ([`TemplateAudio`]), into
    /// a recycled buffer (its contents are replaced): the renderer hands back the previous
    /// template's buffer, so a piece does not fault in fresh pages for every template.
    pub fn stream_into(
        &self,
        template: &Template,
        buf: Vec<f32>,
    ) -> Result<TemplateAudio, RenderError> {
        let (bytes, path) = Self::audio_bytes(template)?;
        let stream = OggStream::open(bytes).map_err(|message| RenderError::Template {
            path: path.clone(),
            message,
        })?;
        let mut pcm = buf;
        pcm.clear();
        let frames = (template.info.frames + template.info.intro_frames) as usize;
        pcm.reserve(frames * CHANNELS as usize);
        Ok(TemplateAudio {
            stream: Some(stream),
            pcm,
            frames,
            path,
        })
    }

    /// A template's audio file, read whole, and its path; its checksum is checked against
    /// the index the first time (unless the library was loaded checked).
    fn audio_bytes(template: &Template) -> Result<(Vec<u8>, PathBuf), RenderError> {
        let path = template.dir.join(&template.info.audio);
        let bytes = std::fs::read(&path).map_err(|e| RenderError::Template {
            path: path.clone(),
            message: format!(
                "cannot read the template's audio ({e}); rebuild with tools/templates/build.sh"
            ),
        })?;
        // the format is checked by every OggStream::open
        let checked = template
            .checksum_checked
            .get_or_init(|| check_checksum(&template.info, &bytes));
        match checked {
            Ok(()) => Ok((bytes, path)),
            Err(message) => Err(RenderError::Template {
                path,
                message: message.clone(),
            }),
        }
    }
}

/// Whether a template's audio file, given its bytes, has the checksum the index records.
fn check_checksum(t: &TemplateInfo, bytes: &[u8]) -> Result<(), String> {
    if hex::encode(Sha256::digest(bytes)) == t.sha256 {
        Ok(())
    } else {
        Err("checksum differs from the index (file corrupt or replaced); rebuild with tools/templates/build.sh".into())
    }
}

/// What is wrong with the format of a template's audio file, given its bytes.
fn check_format(bytes: Vec<u8>) -> Result<(), String> {
    let (rate, ch) = probe_ogg(bytes)?;
    if rate != SAMPLE_RATE || ch != CHANNELS as usize {
        return Err(format!(
            "audio is {rate} Hz x {ch} channels; templates must be {SAMPLE_RATE} Hz x {CHANNELS}"
        ));
    }
    Ok(())
}

fn problem(template: &str, path: &Path, message: impl Into<String>) -> Problem {
    Problem {
        template: template.to_string(),
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read_index(dir: &Path) -> Result<Index, Problem> {
    let path = dir.join(INDEX_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        problem(
            "index",
            &path,
            format!("cannot read the template index ({e}); build it with tools/templates/build.sh"),
        )
    })?;
    let index: Index = serde_json::from_str(&text)
        .map_err(|e| problem("index", &path, format!("not a valid template index: {e}")))?;
    Ok(index)
}

/// Validates a library folder without loading it; returns every problem found.
pub fn check_dir(dir: &Path) -> Vec<Problem> {
    check_dir_with(dir, true)
}

/// [`check_dir`]; `coverage` also asks every style to have every progression at
/// [`MIN_LAYERS`] layers (the shipped library must; a user library adds to it).
pub fn check_dir_with(dir: &Path, coverage: bool) -> Vec<Problem> {
    check_dir_audio(dir, coverage, true)
}

/// [`check_dir_with`]; `audio`: with each audio file's checksum and format, else only that
/// it is there.
fn check_dir_audio(dir: &Path, coverage: bool, audio: bool) -> Vec<Problem> {
    let index = match read_index(dir) {
        Ok(i) => i,
        Err(p) => return vec![p],
    };
    let ipath = dir.join(INDEX_FILE);
    let mut out = Vec::new();
    if index.format != INDEX_FORMAT {
        out.push(problem(
            "index",
            &ipath,
            format!(
                "index format {} but this build reads {INDEX_FORMAT}",
                index.format
            ),
        ));
    }
    if index.sample_rate != SAMPLE_RATE || index.channels != CHANNELS {
        out.push(problem(
            "index",
            &ipath,
            format!(
                "library is {} Hz x {} channels; the engine needs {SAMPLE_RATE} Hz x {CHANNELS}",
                index.sample_rate, index.channels
            ),
        ));
    }
    if index.ticks_per_beat != TICKS_PER_BEAT || index.beats_per_bar != crate::music::BEATS_PER_BAR
    {
        out.push(problem(
            "index",
            &ipath,
            "library grid is not 4/4 at 480 ticks per beat",
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for t in &index.templates {
        *seen.entry(t.id.as_str()).or_default() += 1;
        out.extend(check_template(dir, t, audio));
    }
    for (id, n) in seen {
        if n > 1 {
            out.push(problem(
                id,
                &ipath,
                format!("id appears {n} times in the index"),
            ));
        }
    }
    // Coverage: every style the index names has every progression at >= MIN_LAYERS layers.
    let mut styles: Vec<Genre> = index.templates.iter().map(|t| t.style).collect();
    styles.sort_by_key(|g| *g as u8);
    styles.dedup();
    if styles.is_empty() && coverage {
        out.push(problem("index", &ipath, "the index lists no templates"));
    }
    if !coverage {
        return out;
    }
    for style in styles {
        for p in PROGRESSIONS.iter() {
            let layers: std::collections::BTreeSet<u8> = index
                .templates
                .iter()
                .filter(|t| t.style == style && t.progression == p.id)
                .map(|t| t.layer)
                .collect();
            if layers.len() < MIN_LAYERS as usize {
                out.push(problem(
                    "index",
                    &ipath,
                    format!(
                        "style {style:?} has {} layer(s) for progression {}; it needs {MIN_LAYERS}",
                        layers.len(),
                        p.id
                    ),
                ));
            }
        }
    }
    out
}

fn check_template(dir: &Path, t: &TemplateInfo, audio: bool) -> Vec<Problem> {
    let mut out = Vec::new();
    let apath = dir.join(&t.audio);
    let Some(prog) = PROGRESSIONS.iter().find(|p| p.id == t.progression) else {
        return vec![problem(
            &t.id,
            &apath,
            format!("unknown progression {:?}", t.progression),
        )];
    };
    if t.bars as usize != PROGRESSION_BARS || t.chords.as_slice() != prog.chords.as_slice() {
        out.push(problem(
            &t.id,
            &apath,
            format!("chords/bars do not match progression {}", prog.id),
        ));
    }
    if t.key != prog.key {
        out.push(problem(
            &t.id,
            &apath,
            format!("key does not match progression {}", prog.id),
        ));
    }
    if !(20.0..=300.0).contains(&t.tempo_bpm) {
        out.push(problem(
            &t.id,
            &apath,
            format!("tempo {} BPM is out of range", t.tempo_bpm),
        ));
    }
    let expect = t.bars as f64 * crate::music::BEATS_PER_BAR as f64 * 60.0 / t.tempo_bpm
        * SAMPLE_RATE as f64;
    if (expect - t.frames as f64).abs() > 1.0 {
        out.push(problem(
            &t.id,
            &apath,
            format!(
                "{} frames but {} bars at {} BPM are {expect:.0}",
                t.frames, t.bars, t.tempo_bpm
            ),
        ));
    }
    if t.intro_frames != 0 && t.intro_frames != t.bar_frames() as u64 {
        out.push(problem(
            &t.id,
            &apath,
            format!(
                "intro of {} frames is not one bar ({})",
                t.intro_frames,
                t.bar_frames()
            ),
        ));
    }
    let missing = |e: std::io::Error| {
        problem(
            &t.id,
            &apath,
            format!("index entry points to a missing/unreadable file ({e})"),
        )
    };
    if audio {
        match std::fs::read(&apath) {
            Err(e) => out.push(missing(e)),
            Ok(bytes) => {
                if let Err(m) = check_checksum(t, &bytes).and_then(|()| check_format(bytes)) {
                    out.push(problem(&t.id, &apath, m));
                }
            }
        }
    } else {
        match std::fs::metadata(&apath) {
            Err(e) => out.push(missing(e)),
            Ok(m) if !m.is_file() => out.push(missing(std::io::Error::other("not a file"))),
            Ok(_) => {}
        }
    }
    let mpath = dir.join(&t.midi);
    if let Err(m) = read_pattern(&mpath) {
        out.push(problem(&t.id, &mpath, m));
    }
    out
}

/// A reader of the Ogg file whose bytes are `bytes`.
fn open_format(bytes: Vec<u8>) -> Result<Box<dyn symphonia::core::formats::FormatReader>, String> {
    use symphonia::core::formats::probe::Hint;
    use symphonia::core::io::MediaSourceStream;
    let mss = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("ogg");
    symphonia::default::get_probe()
        .probe(&hint, mss, Default::default(), Default::default())
        .map_err(|e| {
            format!("not a readable Ogg Vorbis file ({e}); rebuild with tools/templates/build.sh")
        })
}

/// The id and codec parameters of the file's audio track.
fn audio_track(
    format: &dyn symphonia::core::formats::FormatReader,
) -> Result<(u32, symphonia::core::codecs::audio::AudioCodecParameters), String> {
    use symphonia::core::formats::TrackType;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or("has no audio track")?;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or("has no audio codec parameters")?;
    Ok((track.id, params.clone()))
}

/// Sample rate and channel count from the stream header of the file `bytes`.
fn probe_ogg(bytes: Vec<u8>) -> Result<(u32, usize), String> {
    let (_, params) = audio_track(&*open_format(bytes)?)?;
    let rate = params.sample_rate.ok_or("does not state its sample rate")?;
    let ch = params
        .channels
        .as_ref()
        .map(|c| c.count())
        .ok_or("does not state its channel count")?;
    Ok((rate, ch))
}

/// Decodes a whole Ogg Vorbis file to interleaved f32 (`frames_hint`: expected length,
/// reserved up front so the buffer is allocated once).
pub fn decode_ogg(path: &Path, frames_hint: usize) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot open ({e})"))?;
    decode_ogg_bytes(bytes, frames_hint)
}

/// [`decode_ogg`] of the file whose bytes are `bytes`.
fn decode_ogg_bytes(bytes: Vec<u8>, frames_hint: usize) -> Result<Vec<f32>, String> {
    let mut stream = OggStream::open(bytes)?;
    let mut out = Vec::with_capacity(frames_hint * CHANNELS as usize);
    while stream.decode_packet(&mut out)? {}
    if out.is_empty() {
        return Err("decodes to no audio".into());
    }
    Ok(out)
}

/// An Ogg Vorbis file decoded a packet at a time, in order (what a full decode gives, sample
/// for sample, however far it goes).
struct OggStream {
    format: Box<dyn symphonia::core::formats::FormatReader>,
    decoder: Box<dyn symphonia::core::codecs::audio::AudioDecoder>,
    track_id: u32,
    /// One packet's samples, interleaved.
    packet: Vec<f32>,
}

impl OggStream {
    /// Opens the file whose bytes are `bytes` and checks that it is stereo at [`SAMPLE_RATE`].
    fn open(bytes: Vec<u8>) -> Result<Self, String> {
        use symphonia::core::codecs::audio::AudioDecoderOptions;
        let format = open_format(bytes)?;
        let (track_id, params) = audio_track(&*format)?;
        let rate = params.sample_rate.unwrap_or(0);
        let ch = params.channels.as_ref().map(|c| c.count()).unwrap_or(0);
        if rate != SAMPLE_RATE || ch != CHANNELS as usize {
            return Err(format!(
                "audio is {rate} Hz x {ch} channels; templates must be {SAMPLE_RATE} Hz x {CHANNELS}"
            ));
        }
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(&params, &AudioDecoderOptions::default())
            .map_err(|e| format!("cannot decode ({e})"))?;
        Ok(OggStream {
            format,
            decoder,
            track_id,
            packet: Vec::new(),
        })
    }

    /// Decodes the next packet of the stream onto the end of `out`; false at the end.
    fn decode_packet(&mut self, out: &mut Vec<f32>) -> Result<bool, String> {
        loop {
            let packet = match self.format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(false),
                Err(e) => {
                    return Err(format!(
                        "corrupt stream ({e}); rebuild with tools/templates/build.sh"
                    ))
                }
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let decoded = self.decoder.decode(&packet).map_err(|e| {
                format!("corrupt audio packet ({e}); rebuild with tools/templates/build.sh")
            })?;
            self.packet.resize(decoded.samples_interleaved(), 0.0);
            decoded.copy_to_slice_interleaved(&mut self.packet);
            out.extend_from_slice(&self.packet);
            return Ok(true);
        }
    }
}

/// A template's audio decoded on demand: a segment that plays one bar of a template decodes
/// that bar (and the packet it ends in), not the whole file. The samples are those of
/// [`Library::decode`], as far as they go.
pub struct TemplateAudio {
    stream: Option<OggStream>,
    /// Decoded so far: `[intro][loop]`, interleaved stereo.
    pcm: Vec<f32>,
    /// Frames of the whole file (the index's intro and loop).
    frames: usize,
    path: PathBuf,
}

impl TemplateAudio {
    /// Audio already decoded whole (`pcm` is `[intro][loop]`).
    pub fn decoded(pcm: Vec<f32>) -> Self {
        TemplateAudio {
            stream: None,
            frames: pcm.len() / CHANNELS as usize,
            pcm,
            path: PathBuf::new(),
        }
    }

    /// Frames of the whole template, decoded or not.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Frames decoded so far.
    pub fn decoded_frames(&self) -> usize {
        self.pcm.len() / CHANNELS as usize
    }

    /// Interleaved samples of frames `[from, to)`, decoding as far as `to` first.
    pub fn frames_range(&mut self, from: usize, to: usize) -> Result<&[f32], RenderError> {
        const CH: usize = CHANNELS as usize;
        let to = to.min(self.frames);
        while self.pcm.len() < to * CH {
            let more = match self.stream.as_mut() {
                Some(s) => s.decode_packet(&mut self.pcm),
                None => Ok(false),
            };
            let err = |message: String| RenderError::Template {
                path: self.path.clone(),
                message,
            };
            match more {
                Err(m) => return Err(err(m)),
                Ok(true) => {}
                Ok(false) => {
                    return Err(err(format!(
                        "decodes to {} frames, the index says {}; rebuild with tools/templates/build.sh",
                        self.pcm.len() / CH,
                        self.frames
                    )))
                }
            }
            if self.pcm.len() > self.frames * CH {
                return Err(err(format!(
                    "decodes to more than the {} frames the index says; rebuild with tools/templates/build.sh",
                    self.frames
                )));
            }
        }
        Ok(&self.pcm[from.min(to) * CH..to * CH])
    }

    /// The buffer back, for the next template (its contents are dropped).
    pub fn into_buffer(self) -> Vec<f32> {
        self.pcm
    }
}

/// Reads a template's MIDI pattern into parts (ticks rescaled to [`TICKS_PER_BEAT`]).
pub fn read_pattern(path: &Path) -> Result<Vec<MidiTrack>, String> {
    use midly::{MetaMessage, MidiMessage, Smf, Timing, TrackEventKind};
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the template's MIDI pattern ({e})"))?;
    let smf = Smf::parse(&bytes)
        .map_err(|e| format!("not a MIDI file ({e}); rebuild with tools/templates/build.sh"))?;
    let tpb = match smf.header.timing {
        Timing::Metrical(t) => t.as_int() as u64,
        Timing::Timecode(..) => return Err("uses SMPTE timing; patterns must be metrical".into()),
    };
    let scale = |t: u64| t * TICKS_PER_BEAT as u64 / tpb.max(1);
    let mut parts = Vec::new();
    for track in &smf.tracks {
        let mut name = String::new();
        let mut program = 0u8;
        let mut channel = None;
        let mut open: HashMap<u8, (u64, u8)> = HashMap::new();
        let mut notes = Vec::new();
        let mut t = 0u64;
        for ev in track {
            t += ev.delta.as_int() as u64;
            match ev.kind {
                TrackEventKind::Meta(MetaMessage::TrackName(n)) => {
                    name = String::from_utf8_lossy(n).into_owned()
                }
                TrackEventKind::Midi {
                    channel: ch,
                    message,
                } => {
                    channel = Some(ch.as_int());
                    match message {
                        MidiMessage::ProgramChange { program: p } => program = p.as_int(),
                        MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                            open.insert(key.as_int(), (t, vel.as_int()));
                        }
                        MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                            if let Some((start, vel)) = open.remove(&key.as_int()) {
                                notes.push(TimedNote {
                                    tick: scale(start),
                                    duration: scale(t - start).max(1),
                                    pitch: key.as_int(),
                                    velocity: vel,
                                });
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if let Some(channel) = channel {
            notes.sort_by_key(|n| (n.tick, n.pitch));
            parts.push(MidiTrack {
                name,
                channel,
                program: if channel == DRUM_CHANNEL { 0 } else { program },
                notes,
            });
        }
    }
    if parts.is_empty() {
        return Err("has no note tracks".into());
    }
    Ok(parts)
}

//! Templates on the page: the built-in library (read-only) and the user's uploads, kept in
//! `<data>/templates/` in the library's own layout (`index.json` in the same format,
//! `audio/<id>.ogg`, `midi/<id>.mid`), so the engine reads them with the same code.
//!
//! An upload is checked the way the library loader checks its own files (Ogg Vorbis,
//! 48 kHz stereo, exactly four bars at the stated tempo, optionally one intro bar, a
//! metrical MIDI pattern, a known progression) and only then stored. File names come from
//! the validated id alone; nothing a request names is joined to a path unchecked.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::music::{Genre, Mood, BEATS_PER_BAR, CHANNELS, PROGRESSIONS, SAMPLE_RATE};
use crate::render::library::{
    decode_ogg, read_pattern, Index, TemplateInfo, INDEX_FILE, INDEX_FORMAT,
};

/// Folder of the user's templates inside the data folder.
pub const USER_TEMPLATES_DIR: &str = "templates";
/// Longest template id (it becomes a file name).
pub const MAX_ID_LEN: usize = 64;
/// Tempo range of a template, BPM (what the library loader accepts).
pub const TEMPO_RANGE: (f64, f64) = (20.0, 300.0);
/// Highest intensity layer a template may claim.
pub const MAX_LAYER: u8 = 9;
/// Most parts a template may list.
pub const MAX_INSTRUMENTS: usize = 16;

/// Why an upload or a delete was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("id {0:?}: give 1 to {MAX_ID_LEN} letters, digits, '-' or '_', starting with a letter or digit")]
    BadId(String),
    #[error("a template {0:?} already exists; delete it first or pick another id")]
    Exists(String),
    #[error("no template {0:?}")]
    NotFound(String),
    #[error("template {0:?} is built in; only uploaded templates can be deleted")]
    BuiltIn(String),
    #[error("metadata: {0}")]
    Meta(String),
    #[error("format: {0}")]
    Format(String),
    #[error("sample rate: {0}")]
    SampleRate(String),
    #[error("length: {0}")]
    Length(String),
    #[error("MIDI pattern: {0}")]
    Midi(String),
    #[error("{path}: {detail}")]
    Storage { path: PathBuf, detail: String },
}

/// What the uploader states about the loop (the rest comes from the progression and the
/// audio itself).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UploadMeta {
    pub id: String,
    pub style: Genre,
    pub mood: Mood,
    /// 0..=1.
    pub energy: f32,
    pub tempo_bpm: f64,
    /// One of `music::PROGRESSIONS` (e.g. `I-V-vi-IV`).
    pub progression: String,
    /// Intensity layer, 0 = sparse.
    pub layer: u8,
    /// Parts as `name:program` or `name:drums`.
    pub instruments: Vec<String>,
}

/// A template as the page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub info: TemplateInfo,
    /// `builtin` or `user`.
    pub source: &'static str,
}

pub fn check_id(id: &str) -> Result<(), TemplateError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(TemplateError::BadId(id.chars().take(80).collect()))
    }
}

/// `rel` joined to `dir`, if it is a plain relative path that stays inside `dir`.
pub fn inside(dir: &Path, rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    let plain = !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    plain.then(|| dir.join(p))
}

fn read_index(dir: &Path) -> Result<Option<Index>, TemplateError> {
    let path = dir.join(INDEX_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| TemplateError::Storage {
                path,
                detail: format!("not a template index ({e})"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TemplateError::Storage {
            path,
            detail: format!("cannot read ({e})"),
        }),
    }
}

fn empty_index() -> Index {
    Index {
        format: INDEX_FORMAT,
        sample_rate: SAMPLE_RATE,
        channels: CHANNELS,
        beats_per_bar: BEATS_PER_BAR,
        ticks_per_beat: crate::music::TICKS_PER_BEAT,
        templates: vec![],
    }
}

/// The two libraries the page manages.
#[derive(Debug, Clone)]
pub struct Templates {
    /// The shipped library (read-only).
    pub builtin: PathBuf,
    /// `<data>/templates`.
    pub user: PathBuf,
}

impl Templates {
    pub fn new(builtin: PathBuf, data_dir: &Path) -> Self {
        Templates {
            builtin,
            user: data_dir.join(USER_TEMPLATES_DIR),
        }
    }

    /// Every template, built-in first.
    pub fn list(&self) -> Result<Vec<Listed>, TemplateError> {
        let mut out = Vec::new();
        for (dir, source) in [(&self.builtin, "builtin"), (&self.user, "user")] {
            if let Some(i) = read_index(dir)? {
                out.extend(i.templates.into_iter().map(|info| Listed { info, source }));
            }
        }
        Ok(out)
    }

    /// The audio file of a template, found through its index entry.
    pub fn audio_path(&self, id: &str) -> Result<PathBuf, TemplateError> {
        check_id(id)?;
        for dir in [&self.builtin, &self.user] {
            if let Some(i) = read_index(dir)? {
                if let Some(t) = i.templates.iter().find(|t| t.id == id) {
                    return inside(dir, &t.audio).ok_or_else(|| TemplateError::Storage {
                        path: dir.join(INDEX_FILE),
                        detail: format!("entry {id} names a path outside the library"),
                    });
                }
            }
        }
        Err(TemplateError::NotFound(id.into()))
    }

    fn storage(path: &Path, e: std::io::Error) -> TemplateError {
        TemplateError::Storage {
            path: path.to_path_buf(),
            detail: format!("cannot write ({e}); is the data folder writable and not full?"),
        }
    }

    /// Validates and stores an upload; returns its index entry.
    pub fn add(
        &self,
        meta: &UploadMeta,
        audio: &[u8],
        midi: &[u8],
    ) -> Result<TemplateInfo, TemplateError> {
        check_id(&meta.id)?;
        if self.list()?.iter().any(|t| t.info.id == meta.id) {
            return Err(TemplateError::Exists(meta.id.clone()));
        }
        let prog = PROGRESSIONS
            .iter()
            .find(|p| p.id == meta.progression)
            .ok_or_else(|| {
                TemplateError::Meta(format!(
                    "progression {:?} is not one of {}",
                    meta.progression,
                    PROGRESSIONS
                        .iter()
                        .map(|p| p.id)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        if !(meta.energy.is_finite() && (0.0..=1.0).contains(&meta.energy)) {
            return Err(TemplateError::Meta(format!(
                "energy {} is out of range; give 0.0 to 1.0",
                meta.energy
            )));
        }
        let (lo, hi) = TEMPO_RANGE;
        if !(meta.tempo_bpm.is_finite() && (lo..=hi).contains(&meta.tempo_bpm)) {
            return Err(TemplateError::Meta(format!(
                "tempo {} BPM is out of range; give {lo} to {hi}",
                meta.tempo_bpm
            )));
        }
        if meta.layer > MAX_LAYER {
            return Err(TemplateError::Meta(format!(
                "layer {} is out of range; give 0 (sparse) to {MAX_LAYER}",
                meta.layer
            )));
        }
        if meta.instruments.is_empty() || meta.instruments.len() > MAX_INSTRUMENTS {
            return Err(TemplateError::Meta(format!(
                "give 1 to {MAX_INSTRUMENTS} instruments as name:program (0-127) or name:drums"
            )));
        }
        for i in &meta.instruments {
            let ok = i.split_once(':').is_some_and(|(n, p)| {
                !n.is_empty()
                    && n.len() <= 32
                    && n.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                    && (p == "drums" || p.parse::<u8>().is_ok_and(|v| v < 128))
            });
            if !ok {
                return Err(TemplateError::Meta(format!(
                    "instrument {:?}: give name:program (0-127) or name:drums, e.g. keys:4",
                    i.chars().take(40).collect::<String>()
                )));
            }
        }
        if !audio.starts_with(b"OggS") {
            let what = if audio.starts_with(b"RIFF") {
                "a WAV file"
            } else if audio.starts_with(b"ID3") || audio.starts_with(&[0xff, 0xfb]) {
                "an MP3 file"
            } else if audio.starts_with(b"fLaC") {
                "a FLAC file"
            } else {
                "not an Ogg file"
            };
            return Err(TemplateError::Format(format!(
                "the audio is {what}; templates are Ogg Vorbis (e.g. `oggenc -q 6 loop.wav`)"
            )));
        }
        if !midi.starts_with(b"MThd") {
            return Err(TemplateError::Midi(
                "not a Standard MIDI File (no MThd header)".into(),
            ));
        }

        std::fs::create_dir_all(self.user.join("audio"))
            .map_err(|e| Self::storage(&self.user, e))?;
        std::fs::create_dir_all(self.user.join("midi"))
            .map_err(|e| Self::storage(&self.user, e))?;
        let audio_rel = format!("audio/{}.ogg", meta.id);
        let midi_rel = format!("midi/{}.mid", meta.id);
        let audio_path = self.user.join(&audio_rel);
        let midi_path = self.user.join(&midi_rel);
        // Checked under temporary names (the decoder reads files); renamed only when sound.
        let a_tmp = crate::fsutil::temp_path(&audio_path);
        let m_tmp = crate::fsutil::temp_path(&midi_path);
        let cleanup = || {
            let _ = std::fs::remove_file(&a_tmp);
            let _ = std::fs::remove_file(&m_tmp);
        };
        let checked = (|| {
            std::fs::write(&a_tmp, audio).map_err(|e| Self::storage(&a_tmp, e))?;
            std::fs::write(&m_tmp, midi).map_err(|e| Self::storage(&m_tmp, e))?;
            read_pattern(&m_tmp).map_err(TemplateError::Midi)?;
            let pcm = decode_ogg(&a_tmp, 0).map_err(|m| {
                if m.contains("Hz") {
                    TemplateError::SampleRate(m)
                } else {
                    TemplateError::Format(m)
                }
            })?;
            let n = (pcm.len() / CHANNELS as usize) as u64;
            let bars = crate::music::PROGRESSION_BARS as u64;
            let expect =
                bars as f64 * BEATS_PER_BAR as f64 * 60.0 / meta.tempo_bpm * SAMPLE_RATE as f64;
            let frames = expect.round() as u64;
            let bar = frames / bars;
            let intro = if n.abs_diff(frames) <= 1 {
                0
            } else if n == frames + bar {
                bar
            } else {
                return Err(TemplateError::Length(format!(
                    "the audio is {:.3} s ({n} frames); {bars} bars at {} BPM are {frames} frames ({:.3} s), or {} with a one-bar intro",
                    n as f64 / SAMPLE_RATE as f64,
                    meta.tempo_bpm,
                    frames as f64 / SAMPLE_RATE as f64,
                    frames + bar
                )));
            };
            Ok((if intro == 0 { n } else { frames }, intro))
        })();
        let (frames, intro_frames) = match checked {
            Ok(v) => v,
            Err(e) => {
                cleanup();
                return Err(e);
            }
        };
        let info = TemplateInfo {
            id: meta.id.clone(),
            style: meta.style,
            mood: meta.mood,
            energy: meta.energy,
            tempo_bpm: meta.tempo_bpm,
            key: prog.key,
            progression: prog.id.to_string(),
            chords: prog.chords.to_vec(),
            bars: crate::music::PROGRESSION_BARS as u32,
            layer: meta.layer,
            instruments: meta.instruments.clone(),
            audio: audio_rel,
            midi: midi_rel,
            frames,
            intro_frames,
            sha256: hex::encode(Sha256::digest(audio)),
        };
        let stored = (|| {
            crate::fsutil::commit(&a_tmp, &audio_path)
                .map_err(|e| Self::storage(&audio_path, e))?;
            crate::fsutil::commit(&m_tmp, &midi_path).map_err(|e| Self::storage(&midi_path, e))?;
            let mut index = read_index(&self.user)?.unwrap_or_else(empty_index);
            index.templates.push(info.clone());
            self.write_index(&index)
        })();
        if let Err(e) = stored {
            cleanup();
            return Err(e);
        }
        tracing::info!(id = %info.id, "web: template uploaded");
        Ok(info)
    }

    fn write_index(&self, index: &Index) -> Result<(), TemplateError> {
        let path = self.user.join(INDEX_FILE);
        let text = serde_json::to_vec_pretty(index).map_err(|e| TemplateError::Storage {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        crate::fsutil::write_atomic(&path, &text).map_err(|e| Self::storage(&path, e))
    }

    /// Deletes an uploaded template (the index first, so a crash leaves at most an orphan
    /// file, never an entry without its file).
    pub fn delete(&self, id: &str) -> Result<(), TemplateError> {
        check_id(id)?;
        if read_index(&self.builtin)?.is_some_and(|i| i.templates.iter().any(|t| t.id == id)) {
            return Err(TemplateError::BuiltIn(id.into()));
        }
        let mut index =
            read_index(&self.user)?.ok_or_else(|| TemplateError::NotFound(id.into()))?;
        let Some(pos) = index.templates.iter().position(|t| t.id == id) else {
            return Err(TemplateError::NotFound(id.into()));
        };
        let t = index.templates.remove(pos);
        self.write_index(&index)?;
        for rel in [&t.audio, &t.midi] {
            if let Some(p) = inside(&self.user, rel) {
                let _ = std::fs::remove_file(p);
            }
        }
        tracing::info!(id, "web: template deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_relative_paths_cannot_escape() {
        for bad in [
            "",
            "../etc",
            "a/b",
            "_x",
            "-x",
            "x y",
            "..",
            "x\0",
            &"a".repeat(65),
        ] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        check_id("my_loop-2").unwrap();
        check_id("lofi_I-V-vi-IV_l0").unwrap();
        let d = Path::new("/data/templates");
        assert_eq!(inside(d, "audio/x.ogg").unwrap(), d.join("audio/x.ogg"));
        for bad in ["../x", "/etc/passwd", "audio/../../x", "", "./x"] {
            assert!(inside(d, bad).is_none(), "{bad:?}");
        }
    }
}

//! Audio sinks: where the engine's PCM goes (f32 interleaved stereo at
//! [`SAMPLE_RATE`](crate::music::SAMPLE_RATE)).
//!
//! One [`Sink`] trait, one module per backend (the librespot layout); adding a backend
//! touches one file and the table in [`open`].
//!
//! | file | backend |
//! |---|---|
//! | `alsa.rs` | [`AlsaSink`]: a real-time playback thread fed by a lock-free ring; its sample position is the live engine's master clock |
//! | `wav.rs` | [`WavSink`]: a 16-bit WAV file, committed atomically when stopped |

use std::path::PathBuf;

pub mod alsa;
pub mod wav;

pub use self::alsa::{AlsaSink, PlaybackStats, PlaybackStatus};
pub use self::wav::WavSink;

/// A place PCM goes. `write` takes interleaved stereo f32 samples at 48 kHz.
pub trait Sink: Send {
    /// Queues `samples` (interleaved stereo, whole frames). May block while the sink is
    /// full (the ALSA ring), never indefinitely.
    fn write(&mut self, samples: &[f32]) -> Result<(), SinkError>;
    /// Frames the listener has been given so far: for ALSA the sample clock (frames
    /// written to the device minus those still queued in it), for a file the frames written.
    fn position(&self) -> u64;
    /// Plays (or writes) everything queued, then closes. Idempotent.
    fn stop(&mut self) -> Result<(), SinkError>;
}

/// Why a sink failed. Each message names the device or file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: cannot write the WAV file: {detail} (check the folder exists and is writable, and the disk has room)")]
    Wav { path: PathBuf, detail: String },
    #[error("ALSA device {device:?}: {detail}")]
    Alsa { device: String, detail: String },
    #[error("ALSA device {device:?}: the playback thread is not consuming audio (no progress for {seconds} s); check the device and the log")]
    Stalled { device: String, seconds: u64 },
    #[error("the sink was already stopped; make a new one")]
    Stopped,
    #[error("{samples} samples is not a whole number of stereo frames")]
    PartialFrame { samples: usize },
    #[error(
        "unknown sink {spec:?}: use alsa:PCM (e.g. alsa:default, alsa:plughw:0,0) or wav:FILE"
    )]
    UnknownSpec { spec: String },
}

/// A sink named by a string, as the config and the CLI give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// An ALSA PCM name (`default`, `plughw:0,0`, `pulsenull`, `file:FILE=x.wav,FORMAT=wav`).
    Alsa(String),
    /// A WAV file.
    Wav(PathBuf),
}

impl std::str::FromStr for SinkSpec {
    type Err = SinkError;
    /// `alsa:PCM` or `wav:FILE`; a bare name is an ALSA PCM.
    fn from_str(s: &str) -> Result<Self, SinkError> {
        if let Some(p) = s.strip_prefix("wav:") {
            if p.is_empty() {
                return Err(SinkError::UnknownSpec { spec: s.into() });
            }
            Ok(SinkSpec::Wav(PathBuf::from(p)))
        } else if let Some(p) = s.strip_prefix("alsa:") {
            if p.is_empty() {
                return Err(SinkError::UnknownSpec { spec: s.into() });
            }
            Ok(SinkSpec::Alsa(p.into()))
        } else if s.is_empty() {
            Err(SinkError::UnknownSpec { spec: s.into() })
        } else {
            Ok(SinkSpec::Alsa(s.into()))
        }
    }
}

/// Opens the sink a spec names (the backend table).
pub fn open(spec: &SinkSpec) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match spec {
        SinkSpec::Alsa(name) => Box::new(AlsaSink::start(name, alsa::AlsaOptions::default())?),
        SinkSpec::Wav(path) => Box::new(WavSink::create(path)?),
    })
}

/// f32 → i16 with clipping; the rounding matches what `hound` and ALSA's plug do.
#[inline]
pub(crate) fn to_i16(x: f32) -> i16 {
    (x.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            "alsa:plughw:0,0".parse::<SinkSpec>().unwrap(),
            SinkSpec::Alsa("plughw:0,0".into())
        );
        assert_eq!(
            "default".parse::<SinkSpec>().unwrap(),
            SinkSpec::Alsa("default".into())
        );
        assert_eq!(
            "wav:/tmp/a.wav".parse::<SinkSpec>().unwrap(),
            SinkSpec::Wav("/tmp/a.wav".into())
        );
        assert!("wav:".parse::<SinkSpec>().is_err());
        assert!("".parse::<SinkSpec>().is_err());
    }

    #[test]
    fn conversion_clips_and_rounds() {
        assert_eq!(to_i16(0.0), 0);
        assert_eq!(to_i16(1.5), 32767);
        assert_eq!(to_i16(-1.5), -32767);
        assert_eq!(to_i16(100.0 / 32767.0), 100);
    }
}

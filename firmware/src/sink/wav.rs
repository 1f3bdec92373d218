//! The WAV file sink: 16-bit stereo at 48 kHz, written under a temporary name and renamed
//! into place when stopped, so a crash never leaves a torn file under the final name.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::{to_i16, Sink, SinkError};
use crate::music::{CHANNELS, SAMPLE_RATE};

/// Writes the PCM to a WAV file.
pub struct WavSink {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    frames: u64,
}

impl WavSink {
    /// Starts `path` (written as a hidden temporary next to it until [`Sink::stop`]).
    pub fn create(path: &Path) -> Result<WavSink, SinkError> {
        let tmp = crate::fsutil::temp_path(path);
        let spec = hound::WavSpec {
            channels: CHANNELS,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(&tmp, spec).map_err(|e| SinkError::Wav {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Ok(WavSink {
            path: path.to_path_buf(),
            tmp,
            writer: Some(writer),
            frames: 0,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError::Wav {
            path: self.path.clone(),
            detail: e.to_string(),
        }
    }
}

impl Sink for WavSink {
    fn write(&mut self, samples: &[f32]) -> Result<(), SinkError> {
        if !samples.len().is_multiple_of(CHANNELS as usize) {
            return Err(SinkError::PartialFrame {
                samples: samples.len(),
            });
        }
        let Some(w) = self.writer.as_mut() else {
            return Err(SinkError::Stopped);
        };
        let mut res = Ok(());
        for &s in samples {
            if let Err(e) = w.write_sample(to_i16(s)) {
                res = Err(e);
                break;
            }
        }
        res.map_err(|e| self.err(e))?;
        self.frames += (samples.len() / CHANNELS as usize) as u64;
        Ok(())
    }

    fn position(&self) -> u64 {
        self.frames
    }

    fn stop(&mut self) -> Result<(), SinkError> {
        let Some(w) = self.writer.take() else {
            return Ok(());
        };
        w.finalize().map_err(|e| self.err(e))?;
        crate::fsutil::commit(&self.tmp, &self.path).map_err(|e| self.err(e))
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "WAV sink not finished cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_exactly_the_samples_and_commits_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.wav");
        let mut sink = WavSink::create(&path).unwrap();
        // A 440 Hz sine, 0.25 s, left and right in antiphase.
        let samples: Vec<f32> = (0..12_000)
            .flat_map(|i| {
                let v = (i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin() * 0.5;
                [v, -v]
            })
            .collect();
        sink.write(&samples).unwrap();
        assert!(!path.exists(), "the final name appears only on stop");
        assert_eq!(sink.position(), 12_000);
        sink.stop().unwrap();
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec().sample_rate, 48_000);
        assert_eq!(r.spec().channels, 2);
        let got: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
        let want: Vec<i16> = samples.iter().map(|&s| to_i16(s)).collect();
        assert_eq!(got, want);
        assert!(sink.write(&[0.0, 0.0]).is_err());
        assert!(matches!(
            sink.write(&[0.0]),
            Err(SinkError::PartialFrame { .. })
        ));
    }
}

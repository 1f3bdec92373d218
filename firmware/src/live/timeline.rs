//! Frame timestamps onto the audio master clock.
//!
//! In live mode the ALSA sample position is the one clock everything is scheduled in
//! (`sink::PlaybackStatus::position`). A camera stamps frames with its own clock (V4L2
//! timestamps, or a file's pts when replayed), which runs at a slightly different rate
//! (tens of ppm) and reaches us with jitter (USB transfers, scheduling). [`FrameClock`]
//! fits `audio_sample = offset + rate × pts` over a sliding window of frames, using the
//! audio position sampled when each frame arrived, and maps any pts (a cut's time) onto
//! the audio timeline. Least squares over a window averages the arrival jitter out and
//! follows the drift; a discontinuity (camera reopened, pts reset) restarts the fit.

use std::collections::VecDeque;

use crate::music::SAMPLE_RATE;

/// Frames in the fit: 4 s at 30 fps. Long enough to average arrival jitter of several ms
/// down to well under a millisecond, short enough to follow a drifting camera clock.
pub const FIT_FRAMES: usize = 120;
/// A pts jump (backwards, or forward by more than this) means a new stream: restart.
pub const MAX_PTS_GAP: f64 = 2.0;

/// Maps frame timestamps (seconds) onto audio sample positions.
#[derive(Debug, Clone)]
pub struct FrameClock {
    /// (pts, audio position at arrival) of recent frames.
    points: VecDeque<(f64, f64)>,
    /// Fitted `offset + rate × (pts − pts_ref)`; `pts_ref` keeps the numbers small.
    fit: Option<(f64, f64, f64)>,
}

impl Default for FrameClock {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameClock {
    pub fn new() -> Self {
        FrameClock {
            points: VecDeque::with_capacity(FIT_FRAMES + 1),
            fit: None,
        }
    }

    /// Records a frame with timestamp `pts` that arrived when the audio clock read `position`.
    pub fn observe(&mut self, pts: f64, position: u64) {
        if let Some(&(last, _)) = self.points.back() {
            if pts <= last - 1e-9 || pts - last > MAX_PTS_GAP {
                tracing::debug!(last, pts, "frame clock: timestamp discontinuity; refitting");
                self.points.clear();
            }
        }
        self.points.push_back((pts, position as f64));
        if self.points.len() > FIT_FRAMES {
            self.points.pop_front();
        }
        self.refit();
    }

    fn refit(&mut self) {
        let n = self.points.len() as f64;
        let (p0, _) = self.points[0];
        let (mut sx, mut sy) = (0.0, 0.0);
        for &(x, y) in &self.points {
            sx += x - p0;
            sy += y;
        }
        let (mx, my) = (sx / n, sy / n);
        let (mut sxx, mut sxy) = (0.0, 0.0);
        for &(x, y) in &self.points {
            let dx = x - p0 - mx;
            sxx += dx * dx;
            sxy += dx * (y - my);
        }
        // Too little spread in pts for a slope (one frame, or a burst): assume the nominal rate.
        let rate = if self.points.len() >= 8 && sxx > 1e-6 {
            sxy / sxx
        } else {
            SAMPLE_RATE as f64
        };
        self.fit = Some((my - rate * mx, rate, p0));
    }

    /// The audio sample position a frame timestamp corresponds to; `None` before any frame.
    pub fn to_audio(&self, pts: f64) -> Option<f64> {
        self.fit
            .map(|(offset, rate, p0)| offset + rate * (pts - p0))
    }

    /// The fitted audio samples per second of video time (≈ 48,000 × (1 + drift)).
    pub fn rate(&self) -> Option<f64> {
        self.fit.map(|(_, r, _)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A camera whose clock runs `ppm` fast against the DAC, frames arriving with up to
    /// `jitter_ms` of delay (uniform), and a fixed capture latency: the mapping error of
    /// the fit stays far below the reaction budget's 100 ms (here: under 5 ms, measured at
    /// the newest frame, where a fit is least certain).
    fn simulate(ppm: f64, jitter_ms: f64, seed: u64) -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut fc = FrameClock::new();
        let fps = 30.0;
        let latency = 0.040; // s from exposure to arrival, constant part
        let start_pos = 123_456.0;
        let mut worst: f64 = 0.0;
        for i in 0..900 {
            let pts = 17.0 + i as f64 / fps; // camera timestamps (arbitrary origin)
            let true_audio_secs = (i as f64 / fps) * (1.0 + ppm * 1e-6);
            let arrival = true_audio_secs + latency + rng.random::<f64>() * jitter_ms / 1000.0;
            fc.observe(pts, (start_pos + arrival * 48_000.0) as u64);
            if i >= 60 {
                // Expected: the true time plus the mean delay (constant latency + half the jitter).
                let want = start_pos + (true_audio_secs + latency + jitter_ms / 2000.0) * 48_000.0;
                let got = fc.to_audio(pts).unwrap();
                worst = worst.max((got - want).abs() / 48.0);
            }
        }
        worst
    }

    #[test]
    fn fit_averages_jitter_and_follows_drift() {
        for (ppm, jitter, seed) in [(0.0, 0.0, 1), (50.0, 8.0, 2), (-200.0, 15.0, 3)] {
            let err_ms = simulate(ppm, jitter, seed);
            assert!(
                err_ms < 5.0,
                "ppm {ppm} jitter {jitter} ms: error {err_ms:.3} ms"
            );
        }
    }

    #[test]
    fn first_frames_use_the_nominal_rate_and_a_reset_refits() {
        let mut fc = FrameClock::new();
        assert_eq!(fc.to_audio(1.0), None);
        fc.observe(10.0, 48_000);
        assert_eq!(fc.to_audio(10.5), Some(48_000.0 + 24_000.0));
        for i in 1..60 {
            fc.observe(10.0 + i as f64 / 30.0, 48_000 + i * 1_600);
        }
        assert!((fc.rate().unwrap() - 48_000.0).abs() < 1.0);
        // The camera was reopened: its pts start again at 0, arriving at audio 1,000,000.
        fc.observe(0.0, 1_000_000);
        assert_eq!(fc.to_audio(0.0), Some(1_000_000.0));
        assert_eq!(fc.to_audio(1.0), Some(1_048_000.0));
    }
}

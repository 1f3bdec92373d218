//! Live loudness: the streaming counterpart of the offline mastering (`render::master`).
//!
//! Offline, the whole piece is measured and normalised to −16 LUFS, then a look-ahead
//! true-peak limiter runs over it. Live there is no whole piece: each bar, as it leaves the
//! renderer, is measured (EBU R 128 short-term loudness, 3 s window, `ebur128`), the gain
//! moves toward the one that puts the recent music at the target — by at most
//! [`MAX_GAIN_STEP_DB`] per bar, ramped across the bar so it never steps — and a peak
//! limiter with a look-ahead inside the bar (the whole bar is known before it is queued)
//! keeps samples under the ceiling. State carries from bar to bar.

use ebur128::{EbuR128, Mode};

use crate::music::SAMPLE_RATE;
use crate::render::master::{CEILING_DBTP, TARGET_LUFS};

/// Largest gain change from one bar to the next: 1.5 dB per bar is inaudible as a
/// movement but follows a quiet intro into a full section within a few bars.
pub const MAX_GAIN_STEP_DB: f32 = 1.5;
/// Gain range: the templates sit at −23…−20 LUFS per layer (render/), so the normal gain
/// is +4…+7 dB; near-silence (a fade, a break) must not be pumped up without bound.
pub const GAIN_RANGE_DB: (f32, f32) = (-12.0, 12.0);
/// Loudness below which a bar counts as a pause (the gain holds).
const SILENCE_LUFS: f64 = -50.0;
/// Look-ahead of the limiter: 2 ms, as the offline limiter.
const LOOKAHEAD_FRAMES: usize = SAMPLE_RATE as usize / 500;
/// Release time constant, as the offline limiter.
const RELEASE_SECONDS: f64 = 0.08;

/// Streaming loudness normaliser and peak limiter.
pub struct Leveler {
    meter: EbuR128,
    gain_db: f32,
    /// Limiter gain at the end of the last bar (released from there).
    env: f32,
    release: f32,
    ceiling: f32,
    /// Per-frame required gain of the current bar (reused buffer).
    need: Vec<f32>,
    /// Look-ahead minimum of `need` (reused buffer).
    ahead: Vec<f32>,
}

impl Default for Leveler {
    fn default() -> Self {
        Self::new()
    }
}

impl Leveler {
    pub fn new() -> Self {
        Leveler {
            meter: EbuR128::new(2, SAMPLE_RATE, Mode::S).expect("valid ebur128 parameters"),
            // Start where the templates normally need to be (see GAIN_RANGE_DB).
            gain_db: 5.0,
            env: 1.0,
            release: (-1.0 / (RELEASE_SECONDS * SAMPLE_RATE as f64)).exp() as f32,
            ceiling: 10f32.powf(CEILING_DBTP as f32 / 20.0),
            need: Vec::new(),
            ahead: Vec::new(),
        }
    }

    /// The gain now applied before the limiter, dB.
    pub fn gain_db(&self) -> f32 {
        self.gain_db
    }

    /// Levels one bar of interleaved stereo in place.
    pub fn process(&mut self, pcm: &mut [f32]) {
        let frames = pcm.len() / 2;
        if frames == 0 {
            return;
        }
        let _ = self.meter.add_frames_f32(pcm);
        let st = self.meter.loudness_shortterm().unwrap_or(f64::NEG_INFINITY);
        let from = self.gain_db;
        if st.is_finite() && st > SILENCE_LUFS {
            // The meter hears the renderer's output before any gain: the gain that puts
            // it at the target is simply the difference.
            let want = ((TARGET_LUFS - st) as f32).clamp(GAIN_RANGE_DB.0, GAIN_RANGE_DB.1);
            self.gain_db = from + (want - from).clamp(-MAX_GAIN_STEP_DB, MAX_GAIN_STEP_DB);
        }
        let (g0, g1) = (db(from), db(self.gain_db));
        // Gain ramp across the bar, and each frame's required limiter gain.
        self.need.clear();
        self.need.reserve(frames);
        for i in 0..frames {
            let g = g0 + (g1 - g0) * i as f32 / frames as f32;
            let (l, r) = (pcm[2 * i] * g, pcm[2 * i + 1] * g);
            pcm[2 * i] = l;
            pcm[2 * i + 1] = r;
            let p = l.abs().max(r.abs());
            self.need.push(if p > self.ceiling {
                self.ceiling / p
            } else {
                1.0
            });
        }
        // Look-ahead: a frame's gain is the lowest required within the next
        // LOOKAHEAD_FRAMES (sliding-window minimum with a monotonic deque).
        self.ahead.clear();
        self.ahead.resize(frames, 1.0);
        let mut dq: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
        for i in (0..frames).rev() {
            while dq.back().is_some_and(|&k| self.need[k] >= self.need[i]) {
                dq.pop_back();
            }
            dq.push_back(i);
            while dq.front().is_some_and(|&k| k > i + LOOKAHEAD_FRAMES) {
                dq.pop_front();
            }
            self.ahead[i] = self.need[*dq.front().expect("window holds i")];
        }
        // Attack at once, release exponentially; never above what a frame needs.
        let mut env = self.env;
        for i in 0..frames {
            let target = self.ahead[i];
            env = if target < env {
                target
            } else {
                target - (target - env) * self.release
            };
            let g = env.min(self.need[i]);
            pcm[2 * i] = (pcm[2 * i] * g).clamp(-self.ceiling, self.ceiling);
            pcm[2 * i + 1] = (pcm[2 * i + 1] * g).clamp(-self.ceiling, self.ceiling);
        }
        self.env = env;
    }
}

fn db(x: f32) -> f32 {
    10f32.powf(x / 20.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frames: usize, amp: f32, f: f32) -> Vec<f32> {
        (0..frames)
            .flat_map(|i| {
                let v = (i as f32 / SAMPLE_RATE as f32 * f * std::f32::consts::TAU).sin() * amp;
                [v, v]
            })
            .collect()
    }

    #[test]
    fn the_gain_follows_the_music_to_the_target_and_never_passes_the_ceiling() {
        let mut l = Leveler::new();
        let bar = 115_200; // 2.4 s
        let ceiling = 10f32.powf(CEILING_DBTP as f32 / 20.0);
        let mut at = Vec::new();
        for k in 0..24 {
            // A quiet part (about -27 LUFS as rendered), then a louder one (about -15):
            // the gain rises, then falls, 1.5 dB per bar at most.
            let amp = if k < 10 { 0.05 } else { 0.2 };
            let mut b = tone(bar, amp, 220.0);
            let before = l.gain_db();
            l.process(&mut b);
            assert!((l.gain_db() - before).abs() <= MAX_GAIN_STEP_DB + 1e-6);
            if k == 9 || k == 23 {
                at.push(crate::render::master::loudness(&b));
            }
            assert!(b.iter().all(|s| s.abs() <= ceiling + 1e-6));
        }
        for lufs in &at {
            assert!((lufs - TARGET_LUFS).abs() < 1.0, "{at:?}");
        }
        // A peak above the ceiling is limited, not clipped.
        let mut b = tone(bar, 0.2, 220.0);
        b[1000] = 4.0;
        l.process(&mut b);
        assert!(b.iter().all(|s| s.abs() <= ceiling + 1e-6));
    }
}

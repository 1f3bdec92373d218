//! Mastering of the joined piece: loudness normalisation to the streaming target
//! (EBU R 128 integrated loudness, `ebur128`) and a look-ahead true-peak limiter.

use ebur128::{EbuR128, Mode};

use crate::music::SAMPLE_RATE;

/// Integrated loudness target: −16 LUFS is the common target for streamed music
/// (between Spotify's −14 and broadcast's −23) and the product's spec.
pub const TARGET_LUFS: f64 = -16.0;

/// True-peak ceiling the limiter aims at. The spec is −1 dBTP; the limiter's 4-point
/// interpolated peak detector can miss up to a few tenths of a dB of inter-sample
/// peak, so it aims 0.5 dB lower.
pub const CEILING_DBTP: f64 = -1.5;

/// Look-ahead of the limiter: 2 ms lets the gain ramp down before a transient without
/// audible pumping on drums.
const LOOKAHEAD_FRAMES: usize = (SAMPLE_RATE as usize) / 500;

/// Release time constant: 80 ms recovers between beats without distorting bass notes.
const RELEASE_SECONDS: f64 = 0.08;

/// How far the limited piece may sit below the target before the gain is raised once
/// more and the limiter re-run (the spec allows ±1 LU; aim well inside it).
const LOUDNESS_SLACK_LU: f64 = 0.2;

/// Normalise-and-limit passes at most (each costs one loudness measurement).
const MAX_PASSES: usize = 3;

/// What mastering did.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MasterReport {
    /// Integrated loudness before and after, LUFS.
    pub lufs_in: f64,
    pub lufs_out: f64,
    /// Gain applied before limiting, dB.
    pub gain_db: f64,
    /// Largest gain reduction of the limiter, dB (0 = it never acted).
    pub max_reduction_db: f64,
}

/// Integrated loudness of interleaved stereo (LUFS); `-inf` for silence.
pub fn loudness(pcm: &[f32]) -> f64 {
    let mut m = EbuR128::new(2, SAMPLE_RATE, Mode::I).expect("valid ebur128 parameters");
    let _ = m.add_frames_f32(pcm);
    m.loudness_global().unwrap_or(f64::NEG_INFINITY)
}

/// True peak of interleaved stereo in dBTP, measured by `ebur128` (BS.1770 oversampling).
pub fn true_peak_dbtp(pcm: &[f32]) -> f64 {
    let mut m = EbuR128::new(2, SAMPLE_RATE, Mode::TRUE_PEAK).expect("valid ebur128 parameters");
    let _ = m.add_frames_f32(pcm);
    let p = (0..2)
        .map(|c| m.true_peak(c).unwrap_or(0.0))
        .fold(0.0f64, f64::max);
    20.0 * p.max(1e-12).log10()
}

/// Catmull-Rom weights of (p0, p1, p2, p3) at t = 1/4, 1/2, 3/4: the three points
/// between two samples where the limiter looks for inter-sample peaks.
const INTERP: [[f32; 4]; 3] = [
    [-0.0703125, 0.8671875, 0.2265625, -0.0234375],
    [-0.0625, 0.5625, 0.5625, -0.0625],
    [-0.0234375, 0.2265625, 0.8671875, -0.0703125],
];

/// Estimated true peak of frame `i` (and the points up to frame `i + 1`), both channels.
#[inline]
fn frame_peak(pcm: &[f32], frames: usize, i: usize) -> f32 {
    let at = |k: isize, c: usize| pcm[(k.clamp(0, frames as isize - 1) as usize) * 2 + c];
    let i = i as isize;
    let mut m = 0.0f32;
    for c in 0..2 {
        let (p0, p1, p2, p3) = (at(i - 1, c), at(i, c), at(i + 1, c), at(i + 2, c));
        m = m.max(p1.abs());
        for w in &INTERP {
            m = m.max((w[0] * p0 + w[1] * p1 + w[2] * p2 + w[3] * p3).abs());
        }
    }
    m
}

/// One pass of the look-ahead true-peak limiter over `pcm * gain`, calling `f(i, g_i)`
/// with the limiter gain of every frame in order (1 where nothing exceeds the ceiling).
/// Look-ahead minimum of the required gain, exponential release, then a trailing moving
/// average over the look-ahead so the gain never steps (a step would click): at a peak
/// every averaged value is already <= the gain the peak needs, so the average is too.
/// Frame `i`'s gain depends only on frames <= `i + LOOKAHEAD + 2`, so `f` may rewrite
/// frame `i` in place. No buffer the size of the piece. Returns the smallest gain.
fn limiter_pass(pcm: &mut [f32], gain: f32, mut f: impl FnMut(&mut [f32], f32)) -> f32 {
    let ceiling = 10f32.powf(CEILING_DBTP as f32 / 20.0);
    let frames = pcm.len() / 2;
    let rel = (-1.0 / (RELEASE_SECONDS * SAMPLE_RATE as f64)).exp() as f32;
    let w = LOOKAHEAD_FRAMES + 1;
    let mut ring = vec![1.0f32; w];
    let mut sum = w as f64;
    let mut dq: std::collections::VecDeque<(usize, f32)> = std::collections::VecDeque::new();
    let mut next = 0usize;
    let mut s = 1.0f32;
    let mut min_gain = 1.0f32;
    for i in 0..frames {
        let hi = (i + LOOKAHEAD_FRAMES).min(frames - 1);
        while next <= hi {
            let p = frame_peak(pcm, frames, next) * gain;
            let v = if p > ceiling { ceiling / p } else { 1.0 };
            while dq.back().is_some_and(|&(_, b)| b >= v) {
                dq.pop_back();
            }
            dq.push_back((next, v));
            next += 1;
        }
        while dq.front().is_some_and(|&(k, _)| k < i) {
            dq.pop_front();
        }
        let m = dq.front().expect("window is never empty").1;
        s = if m < s { m } else { m - (m - s) * rel };
        let slot = i % w;
        sum += s as f64 - ring[slot] as f64;
        ring[slot] = s;
        let g = (sum / w as f64) as f32;
        min_gain = min_gain.min(g);
        f(&mut pcm[i * 2..i * 2 + 2], g);
    }
    min_gain
}

/// Loudness of `pcm * gain * limiter` without changing `pcm` (one limiter pass).
fn limited_loudness(pcm: &mut [f32], gain: f32) -> (f64, f32) {
    let mut m = EbuR128::new(2, SAMPLE_RATE, Mode::I).expect("valid ebur128 parameters");
    const BLOCK: usize = 4800;
    let mut buf = Vec::with_capacity(BLOCK * 2);
    let min_gain = limiter_pass(pcm, gain, |frame, g| {
        buf.push(frame[0] * gain * g);
        buf.push(frame[1] * gain * g);
        if buf.len() == BLOCK * 2 {
            let _ = m.add_frames_f32(&buf);
            buf.clear();
        }
    });
    let _ = m.add_frames_f32(&buf);
    (m.loudness_global().unwrap_or(f64::NEG_INFINITY), min_gain)
}

/// Normalises `pcm` (interleaved stereo) to [`TARGET_LUFS`] and limits it to
/// [`CEILING_DBTP`], in place.
pub fn master(pcm: &mut [f32]) -> MasterReport {
    let lufs_in = loudness(pcm);
    if !lufs_in.is_finite() {
        return MasterReport {
            lufs_in,
            lufs_out: lufs_in,
            gain_db: 0.0,
            max_reduction_db: 0.0,
        };
    }
    let mut gain_db = TARGET_LUFS - lufs_in;
    let mut lufs_out = TARGET_LUFS;
    for pass in 0..MAX_PASSES {
        let g = 10f32.powf(gain_db as f32 / 20.0);
        let (l, min_gain) = limited_loudness(pcm, g);
        lufs_out = l;
        if min_gain >= 1.0 || l >= TARGET_LUFS - LOUDNESS_SLACK_LU || pass + 1 == MAX_PASSES {
            break;
        }
        gain_db += TARGET_LUFS - l;
    }
    // Same gain, same (deterministic) limiter pass: lufs_out is the loudness of what is
    // written here. Frame i is rewritten only after every frame its gain depends on was read.
    let g = 10f32.powf(gain_db as f32 / 20.0);
    let min_gain = limiter_pass(pcm, g, |frame, lg| {
        frame[0] *= g * lg;
        frame[1] *= g * lg;
    });
    MasterReport {
        lufs_in,
        lufs_out,
        gain_db,
        max_reduction_db: -20.0 * (min_gain as f64).log10(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decaying 220 Hz tone with hard transients every 0.25 s (synthetic on purpose: a
    /// crest factor that forces the limiter to act).
    fn spiky(seconds: f64) -> Vec<f32> {
        let n = (seconds * SAMPLE_RATE as f64) as usize;
        let mut v = Vec::with_capacity(n * 2);
        for i in 0..n {
            let t = i as f64 / SAMPLE_RATE as f64;
            let env = (-((t % 0.25) * 30.0)).exp();
            let s = (0.05 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()
                + 0.9 * env * (2.0 * std::f64::consts::PI * 3000.0 * t).sin())
                as f32;
            v.push(s);
            v.push(s * 0.8);
        }
        v
    }

    #[test]
    fn reaches_target_loudness_under_the_true_peak_ceiling() {
        let mut pcm = spiky(8.0);
        let rep = master(&mut pcm);
        assert!((rep.lufs_out - TARGET_LUFS).abs() <= 0.5, "{rep:?}");
        let tp = true_peak_dbtp(&pcm);
        assert!(tp <= -1.0, "true peak {tp} dBTP");
        assert!(pcm.iter().all(|x| x.abs() < 1.0));
    }
}

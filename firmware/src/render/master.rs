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
    loudness_with(pcm, 1.0, None)
}

fn loudness_with(pcm: &[f32], gain: f32, curve: Option<&[f32]>) -> f64 {
    let mut m = EbuR128::new(2, SAMPLE_RATE, Mode::I).expect("valid ebur128 parameters");
    const BLOCK: usize = 4800;
    let mut buf = vec![0.0f32; BLOCK * 2];
    for (bi, chunk) in pcm.chunks(BLOCK * 2).enumerate() {
        let b = &mut buf[..chunk.len()];
        for (i, (o, x)) in b.iter_mut().zip(chunk).enumerate() {
            let g = curve.map(|c| c[bi * BLOCK + i / 2]).unwrap_or(1.0);
            *o = x * gain * g;
        }
        let _ = m.add_frames_f32(b);
    }
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

/// Peak of a frame and the three points between it and the next (Catmull-Rom
/// interpolation), over both channels: an estimate of the true (inter-sample) peak.
fn frame_peaks(pcm: &[f32], gain: f32, out: &mut Vec<f32>) {
    let frames = pcm.len() / 2;
    out.clear();
    out.resize(frames, 0.0);
    for c in 0..2 {
        let x =
            |i: isize| -> f32 { pcm[(i.clamp(0, frames as isize - 1) as usize) * 2 + c] * gain };
        for i in 0..frames {
            let i = i as isize;
            let (p0, p1, p2, p3) = (x(i - 1), x(i), x(i + 1), x(i + 2));
            let mut m = p1.abs();
            for t in [0.25f32, 0.5, 0.75] {
                let v = 0.5
                    * (2.0 * p1
                        + (-p0 + p2) * t
                        + (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3) * t * t
                        + (-p0 + 3.0 * p1 - 3.0 * p2 + p3) * t * t * t);
                m = m.max(v.abs());
            }
            let o = &mut out[i as usize];
            *o = o.max(m);
        }
    }
}

/// Limiter gain per frame for the signal `pcm * gain` (all ones when nothing exceeds the
/// ceiling). Look-ahead minimum, exponential release, then a moving average over the
/// look-ahead so the gain never steps (a step would click).
fn limiter_curve(pcm: &[f32], gain: f32, curve: &mut Vec<f32>) -> f32 {
    let ceiling = 10f32.powf(CEILING_DBTP as f32 / 20.0);
    frame_peaks(pcm, gain, curve);
    let n = curve.len();
    // Required gain per frame, in place.
    for v in curve.iter_mut() {
        *v = if *v > ceiling { ceiling / *v } else { 1.0 };
    }
    // Forward-looking minimum over [i, i + LOOKAHEAD] with a monotone deque.
    let mut dq: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    let req = curve.clone();
    for i in 0..n {
        let hi = (i + LOOKAHEAD_FRAMES).min(n - 1);
        if i == 0 {
            for j in 0..=hi {
                while dq.back().is_some_and(|&b| req[b] >= req[j]) {
                    dq.pop_back();
                }
                dq.push_back(j);
            }
        } else if i + LOOKAHEAD_FRAMES < n {
            let j = hi;
            while dq.back().is_some_and(|&b| req[b] >= req[j]) {
                dq.pop_back();
            }
            dq.push_back(j);
        }
        while dq.front().is_some_and(|&f| f < i) {
            dq.pop_front();
        }
        curve[i] = req[*dq.front().expect("window is never empty")];
    }
    // Release.
    let rel = (-1.0 / (RELEASE_SECONDS * SAMPLE_RATE as f64)).exp() as f32;
    let mut s = 1.0f32;
    for v in curve.iter_mut() {
        s = if *v < s { *v } else { *v - (*v - s) * rel };
        *v = s;
    }
    // Trailing moving average over LOOKAHEAD + 1 frames: at a peak every averaged value
    // is already <= the gain the peak needs, so the average is too.
    let w = LOOKAHEAD_FRAMES + 1;
    let src = curve.clone();
    let mut sum = 0.0f64;
    let mut min_gain = 1.0f32;
    for i in 0..n {
        sum += src[i] as f64;
        if i >= w {
            sum -= src[i - w] as f64;
        }
        let cnt = (i + 1).min(w) as f64;
        // Before the window fills, pad with ones (the gain is 1 before the piece).
        let avg = (sum + (w as f64 - cnt)) / w as f64;
        curve[i] = avg as f32;
        min_gain = min_gain.min(curve[i]);
    }
    min_gain
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
    let mut curve = Vec::new();
    let mut min_gain = 1.0;
    for _ in 0..3 {
        let g = 10f32.powf(gain_db as f32 / 20.0);
        min_gain = limiter_curve(pcm, g, &mut curve);
        let l = loudness_with(pcm, g, Some(&curve));
        if l >= TARGET_LUFS - LOUDNESS_SLACK_LU || min_gain >= 1.0 {
            break;
        }
        gain_db += TARGET_LUFS - l;
    }
    let g = 10f32.powf(gain_db as f32 / 20.0);
    for (i, x) in pcm.iter_mut().enumerate() {
        *x *= g * curve[i / 2];
    }
    let lufs_out = loudness(pcm);
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

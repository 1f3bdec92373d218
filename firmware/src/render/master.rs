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

/// No interpolated point exceeds the largest of its four samples times this (the largest
/// sum of absolute weights in [`INTERP`]): frames whose neighbourhood stays under the
/// ceiling by this factor skip the interpolation.
const INTERP_BOUND: f32 = 1.25;

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
    // Below this sample magnitude no interpolated point can reach the ceiling.
    let safe = ceiling / (gain * INTERP_BOUND);
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
            let near = (next.saturating_sub(1)..(next + 3).min(frames))
                .all(|k| pcm[2 * k].abs() < safe && pcm[2 * k + 1].abs() < safe);
            let v = if near {
                1.0
            } else {
                let p = frame_peak(pcm, frames, next) * gain;
                if p > ceiling {
                    ceiling / p
                } else {
                    1.0
                }
            };
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

/// Frames per loudness sub-block: BS.1770 gating blocks are 400 ms with 75 % overlap,
/// i.e. sums of four 100 ms sub-blocks.
const SUB: usize = SAMPLE_RATE as usize / 10;

/// After the last sub-block with a peak that needs limiting, the limiter keeps running
/// this many sub-blocks (its 80 ms release has decayed to < 0.01 dB by then); elsewhere
/// it is known to be 1 and is not run. Limited runs start one sub-block before a peak
/// (the look-ahead reaches back across a sub-block boundary).
const RELEASE_SUBS: usize = 5;

/// BS.1770 K-weighting at 48 kHz (the standard's coefficients): a high shelf, then the
/// RLB high-pass. Transposed direct form II, one state pair per stage and channel.
const K_STAGES: [([f64; 3], [f64; 2]); 2] = [
    (
        [1.53512485958697, -2.69169618940638, 1.19839281085285],
        [-1.69065929318241, 0.73248077421585],
    ),
    ([1.0, -2.0, 1.0], [-1.99004745483398, 0.99007225036621]),
];

/// K-weighting filter state of both channels.
#[derive(Debug, Clone, Copy, Default)]
struct KFilter {
    z: [[f64; 2]; 4],
}

impl KFilter {
    /// Filters one frame; returns the sum over channels of the squared K-weighted samples.
    #[inline]
    fn push(&mut self, l: f32, r: f32) -> f64 {
        let mut e = 0.0;
        for (c, x) in [l as f64, r as f64].into_iter().enumerate() {
            let mut y = x;
            for (st, (b, a)) in K_STAGES.iter().enumerate() {
                let z = &mut self.z[c * 2 + st];
                let out = b[0] * y + z[0];
                z[0] = b[1] * y - a[0] * out + z[1];
                z[1] = b[2] * y - a[1] * out;
                y = out;
            }
            e += y * y;
        }
        e
    }

    /// The state the filter would have had on the input scaled by `g` (it is linear).
    fn scaled(&self, g: f64) -> KFilter {
        let mut k = *self;
        k.z.iter_mut().flatten().for_each(|v| *v *= g);
        k
    }
}

/// One K-weighting pass over the piece: per 100 ms sub-block its energy (sum over frames
/// and channels of the K-weighted squares; complete sub-blocks only), the filter state at
/// its start and its largest sample magnitude (all sub-blocks).
struct Analysis {
    energy: Vec<f64>,
    state: Vec<KFilter>,
    peak: Vec<f32>,
}

fn analyse(pcm: &[f32]) -> Analysis {
    let mut k = KFilter::default();
    let mut a = Analysis {
        energy: Vec::new(),
        state: Vec::new(),
        peak: Vec::new(),
    };
    for block in pcm.chunks(SUB * 2) {
        a.state.push(k);
        let mut e = 0.0;
        let mut p = 0.0f32;
        for fr in block.chunks_exact(2) {
            e += k.push(fr[0], fr[1]);
            p = p.max(fr[0].abs()).max(fr[1].abs());
        }
        a.peak.push(p);
        if block.len() == SUB * 2 {
            a.energy.push(e);
        }
    }
    a
}

/// BS.1770-4 integrated loudness from sub-block energies: 400 ms blocks every 100 ms,
/// absolute gate at −70 LUFS, relative gate 10 LU under the absolute-gated loudness.
fn integrated(energy: &[f64]) -> f64 {
    let lufs = |z: f64| -0.691 + 10.0 * z.log10();
    let blocks: Vec<f64> = energy
        .windows(4)
        .map(|w| w.iter().sum::<f64>() / (4 * SUB) as f64)
        .collect();
    let mean = |v: &mut dyn Iterator<Item = f64>| {
        let (s, n) = v.fold((0.0, 0usize), |(s, n), z| (s + z, n + 1));
        (n > 0).then(|| s / n as f64)
    };
    let Some(abs) = mean(&mut blocks.iter().copied().filter(|&z| lufs(z) > -70.0)) else {
        return f64::NEG_INFINITY;
    };
    let rel = lufs(abs) - 10.0;
    mean(
        &mut blocks
            .iter()
            .copied()
            .filter(|&z| lufs(z) > -70.0 && lufs(z) > rel),
    )
    .map(lufs)
    .unwrap_or(f64::NEG_INFINITY)
}

/// Sub-block runs `[from, to)` where the limiter may act on `pcm * gain` (a sample over
/// the ceiling's safe bound, one sub-block before, [`RELEASE_SUBS`] after).
fn limited_runs(a: &Analysis, gain: f32) -> Vec<(usize, usize)> {
    let ceiling = 10f32.powf(CEILING_DBTP as f32 / 20.0);
    let safe = ceiling / (gain * INTERP_BOUND);
    let n = a.peak.len();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (j, &p) in a.peak.iter().enumerate() {
        if p >= safe {
            let (from, to) = (j.saturating_sub(1), (j + 1 + RELEASE_SUBS).min(n));
            match runs.last_mut() {
                Some(last) if last.1 >= from => last.1 = to,
                _ => runs.push((from, to)),
            }
        }
    }
    runs
}

/// Loudness of `pcm * gain * limiter` without changing `pcm`: sub-blocks outside limited
/// runs scale exactly by `gain²`; inside them the limited signal is K-weighted again from
/// the filter state stored at the run's start. Returns the loudness and the smallest
/// limiter gain.
fn limited_loudness(pcm: &mut [f32], a: &Analysis, gain: f32) -> (f64, f32) {
    let g2 = (gain as f64).powi(2);
    let mut energy: Vec<f64> = a.energy.iter().map(|e| e * g2).collect();
    let mut min_gain = 1.0f32;
    for (from, to) in limited_runs(a, gain) {
        let end = (to * SUB).min(pcm.len() / 2);
        let mut k = a.state[from].scaled(gain as f64);
        let mut i = from * SUB;
        let mut e = 0.0;
        let m = limiter_pass(&mut pcm[from * SUB * 2..end * 2], gain, |fr, lg| {
            e += k.push(fr[0] * gain * lg, fr[1] * gain * lg);
            i += 1;
            if i % SUB == 0 {
                if let Some(slot) = energy.get_mut(i / SUB - 1) {
                    *slot = e;
                }
                e = 0.0;
            }
        });
        min_gain = min_gain.min(m);
    }
    (integrated(&energy), min_gain)
}

/// Normalises `pcm` (interleaved stereo) to [`TARGET_LUFS`] and limits it to
/// [`CEILING_DBTP`], in place.
pub fn master(pcm: &mut [f32]) -> MasterReport {
    let a = analyse(pcm);
    let lufs_in = integrated(&a.energy);
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
        let (l, min_gain) = limited_loudness(pcm, &a, g);
        lufs_out = l;
        if min_gain >= 1.0 || l >= TARGET_LUFS - LOUDNESS_SLACK_LU || pass + 1 == MAX_PASSES {
            break;
        }
        gain_db += TARGET_LUFS - l;
    }
    // Same gain, same (deterministic) limiter runs: lufs_out is the loudness of what is
    // written here. Frame i is rewritten only after every frame its gain depends on was read.
    let g = 10f32.powf(gain_db as f32 / 20.0);
    let runs = limited_runs(&a, g);
    let mut min_gain = 1.0f32;
    let mut at = 0usize;
    let frames = pcm.len() / 2;
    for (from, to) in runs.into_iter().chain(std::iter::once((usize::MAX, 0))) {
        let (from_f, to_f) = (
            (from.saturating_mul(SUB)).min(frames),
            (to * SUB).min(frames),
        );
        pcm[at * 2..from_f * 2].iter_mut().for_each(|x| *x *= g);
        if from_f >= frames {
            break;
        }
        let m = limiter_pass(&mut pcm[from_f * 2..to_f * 2], g, |frame, lg| {
            frame[0] *= g * lg;
            frame[1] *= g * lg;
        });
        min_gain = min_gain.min(m);
        at = to_f;
    }
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

    /// The one-pass K-weighting and gating agree with the `ebur128` crate, also on the
    /// gain-scaled and limited signal that mastering measures without writing it.
    #[test]
    fn integrated_loudness_matches_ebur128() {
        let mut pcm = spiky(8.0);
        for (i, x) in pcm.iter_mut().enumerate() {
            // A quiet second half, so the relative gate has blocks to drop.
            if i > pcm_len_half() {
                *x *= 0.05;
            }
        }
        let a = analyse(&pcm);
        let ours = integrated(&a.energy);
        let theirs = loudness(&pcm);
        assert!((ours - theirs).abs() < 0.02, "{ours} vs ebur128 {theirs}");
        let g = 4.0f32;
        let mut limited = pcm.clone();
        let (estimate, min_gain) = limited_loudness(&mut limited, &a, g);
        assert_eq!(limited, pcm, "measuring must not change the piece");
        assert!(min_gain < 0.5, "the limiter acts: {min_gain}");
        let mut written = pcm.clone();
        limiter_pass(&mut written, g, |fr, lg| {
            fr[0] *= g * lg;
            fr[1] *= g * lg;
        });
        let truth = loudness(&written);
        assert!((estimate - truth).abs() < 0.05, "{estimate} vs {truth}");
    }

    fn pcm_len_half() -> usize {
        (4.0 * SAMPLE_RATE as f64) as usize * 2
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

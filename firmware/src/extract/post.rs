//! Post-processing in Rust: cut probability with a short look-ahead (adaptive ratio), gradual
//! transitions, the visual impact envelope, visual beats (peak picking) and visual tempo.

use super::{Transition, TransitionKind};

/// Frames on each side the adaptive cut ratio compares against (PySceneDetect's adaptive
/// detector uses the same ±2 window). It is also the extractor's output latency in frames.
pub const CUT_WINDOW: usize = 2;
/// A cut changes the frame at least this much more than its neighbours do (PySceneDetect's
/// default adaptive threshold is 3): fast continuous motion changes every frame a lot, so its
/// ratio stays low.
const CUT_RATIO: f32 = 3.0;
/// Smallest mean luma change (0..1) of a cut: 10 grey levels. Below it, flicker or noise.
const CUT_MIN_MAD: f32 = 0.04;
/// Smallest coarse-structure change (1 - NCC at 1/8 size) of a cut: a flash or an exposure
/// jump changes brightness but keeps structure (0.00-0.01 on the clips), a new shot does not.
/// Two shots of one street (a car's interior, then a fence with the street behind it) differ
/// by only 0.27-0.28 at that size, and were missed at 0.3; a hand waving close to the camera
/// in footage with repeated frames (`tree.avi`), a lone big change that is no cut, reaches
/// 0.19.
const CUT_MIN_STRUCTURE: f32 = 0.25;
/// Floor of the neighbours' mean change in the ratio (1 grey level), so a cut out of a still
/// shot does not divide by ~0.
const RATIO_FLOOR: f32 = 0.004;
/// Two cuts are at least this far apart (seconds); within it, the stronger one wins.
pub const MIN_CUT_GAP_S: f64 = 0.3;

/// Logistic squash.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Probability that frame `i` starts a new shot by a hard cut, from the per-frame mean
/// absolute difference `mad` and structure change `structure` (index `i` and up to
/// [`CUT_WINDOW`] neighbours each side that exist).
pub fn cut_probability(mad: &[f32], structure: &[f32], i: usize) -> f32 {
    let lo = i.saturating_sub(CUT_WINDOW);
    let hi = (i + CUT_WINDOW + 1).min(mad.len());
    let neigh: Vec<f32> = (lo..hi).filter(|&j| j != i).map(|j| mad[j]).collect();
    let base = if neigh.is_empty() {
        0.0
    } else {
        neigh.iter().sum::<f32>() / neigh.len() as f32
    };
    let ratio = mad[i] / (base + RATIO_FLOOR);
    // Each factor is 0.5 at its threshold; the fuzzy AND (minimum) is >= 0.5 only past all three.
    let r = sigmoid(4.0 * (ratio.max(1e-6).ln() - CUT_RATIO.ln()));
    let m = sigmoid(150.0 * (mad[i] - CUT_MIN_MAD));
    let s = sigmoid(20.0 * (structure[i] - CUT_MIN_STRUCTURE));
    r.min(m).min(s)
}

/// Is a cut at `i`: probability >= 0.5 and the local maximum within the minimum gap
/// (looking at most [`CUT_WINDOW`] frames ahead, so a live stream decides with that latency).
pub fn is_cut(p: &[f32], t: &[f64], i: usize) -> bool {
    if p[i] < 0.5 {
        return false;
    }
    let mut j = i;
    while j > 0 && t[i] - t[j - 1] < MIN_CUT_GAP_S {
        j -= 1;
        if p[j] >= p[i] {
            return false;
        }
    }
    let mut j = i + 1;
    while j < p.len() && j <= i + CUT_WINDOW && t[j] - t[i] < MIN_CUT_GAP_S {
        if p[j] > p[i] {
            return false;
        }
        j += 1;
    }
    true
}

/// Deceleration flux of the directogram (Davis & Agrawala 2018): the summed drop of motion
/// in each direction from one frame to the next, in diagonals per second. Sudden stops and
/// turns (a foot landing, a head turning back) are the visual beats.
pub fn impact(prev: &[f32], cur: &[f32]) -> f32 {
    prev.iter().zip(cur).map(|(p, c)| (p - c).max(0.0)).sum()
}

/// Per-frame record the offline passes need.
#[derive(Debug, Clone)]
pub struct History {
    pub t: f64,
    pub speed: f32,
    pub mad: f32,
    pub luma_sd: f32,
    pub thumb: Vec<f32>,
}

/// Half-window of the gradual-transition detector (seconds): dissolves and fades in edited
/// footage last 0.3–2 s; frame t is compared with the frames this far before and after.
const GRADUAL_HALF_WINDOW_S: f64 = 0.5;
/// The frames at both ends of the window look this different (1 - NCC of the 1/8-size frames).
const GRADUAL_MIN_CHANGE: f32 = 0.5;
/// In a dissolve the middle frame is a blend of the two ends: the best blend leaves at most this
/// share of the ends' difference unexplained (a moving picture is no blend of its past and future).
const GRADUAL_MAX_BLEND_ERR: f32 = 0.2;
/// Motion over the window (frame diagonals) above which the change is movement, not a transition.
const GRADUAL_MAX_TRAVEL: f32 = 0.25;
/// A frame this flat (luma standard deviation) is black/blank: a fade passes through it.
pub(crate) const FLAT_SD: f32 = 0.02;
/// Something changes every frame of a transition (mean |diff| >= 1/4 grey level).
const GRADUAL_MIN_MAD: f32 = 0.001;
/// Shortest gradual transition reported (seconds).
const GRADUAL_MIN_LEN_S: f64 = 0.2;

fn ncc_change(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let ma = a[..n].iter().sum::<f32>() / n as f32;
    let mb = b[..n].iter().sum::<f32>() / n as f32;
    let (mut c, mut va, mut vb) = (0f32, 0f32, 0f32);
    for i in 0..n {
        let (x, y) = (a[i] - ma, b[i] - mb);
        c += x * y;
        va += x * x;
        vb += y * y;
    }
    if va * vb < 1e-9 * (n * n) as f32 {
        // One side blank: a change only if the other is not.
        return if (va - vb).abs() > 1e-6 * n as f32 {
            1.0
        } else {
            0.0
        };
    }
    1.0 - c / (va * vb).sqrt()
}

/// How far `mid` is from the best blend `(1-α)·a + α·b`, as a share of `|b - a|²`.
fn blend_error(a: &[f32], mid: &[f32], b: &[f32]) -> f32 {
    let (mut dd, mut xd) = (0f32, 0f32);
    for ((&p, &m), &q) in a.iter().zip(mid).zip(b) {
        dd += (q - p) * (q - p);
        xd += (m - p) * (q - p);
    }
    if dd <= 1e-9 {
        return 1.0;
    }
    let alpha = (xd / dd).clamp(0.0, 1.0);
    let err: f32 = a
        .iter()
        .zip(mid)
        .zip(b)
        .map(|((&p, &m), &q)| {
            let e = m - (p + alpha * (q - p));
            e * e
        })
        .sum();
    err / dd
}

/// Gradual transitions (dissolves, fades, wipes) over a whole history, avoiding the given
/// hard cuts. Frame t is inside one when the pictures half a second before and after differ
/// strongly, t itself is a blend of the two (the dissolve test), the change is not explained by
/// accumulated motion, no hard cut lies in between, and the picture changes on every frame;
/// runs of such frames (or a run of blank frames between two shots), less than
/// [`MIN_CUT_GAP_S`] apart, become one transition from its first to its last frame.
pub fn gradual_transitions(h: &[History], cuts: &[f64], fps: f64) -> Vec<Transition> {
    let n = h.len();
    let k = ((GRADUAL_HALF_WINDOW_S * fps).round() as usize).max(2);
    let mut inside = vec![false; n];
    for i in k..n.saturating_sub(k) {
        let (a, b) = (i - k, i + k);
        if cuts.iter().any(|&c| c > h[a].t && c <= h[b].t + 1e-9) {
            continue;
        }
        let travel: f32 = h[a + 1..=b].iter().map(|f| f.speed).sum::<f32>() / fps as f32;
        let changing = h[a + 1..=b].iter().all(|f| f.mad >= GRADUAL_MIN_MAD);
        if changing
            && travel < GRADUAL_MAX_TRAVEL
            && ncc_change(&h[a].thumb, &h[b].thumb) >= GRADUAL_MIN_CHANGE
            && blend_error(&h[a].thumb, &h[i].thumb, &h[b].thumb) <= GRADUAL_MAX_BLEND_ERR
        {
            inside[i] = true;
        }
    }
    // Blank frames between two non-blank shots: a fade out/in. A blank run that reaches the
    // first or the last frame is a fade-in from nothing or out to nothing (or a blank video),
    // not a change of shot.
    let mut i = 0;
    while i < n {
        if h[i].luma_sd >= FLAT_SD {
            i += 1;
            continue;
        }
        let s = i;
        while i < n && h[i].luma_sd < FLAT_SD {
            i += 1;
        }
        if s > 0 && i < n {
            inside[s..i].iter_mut().for_each(|x| *x = true);
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        if !inside[i] {
            i += 1;
            continue;
        }
        let s = i;
        let mut e = i;
        // A dissolve's middle frames can miss the blend test for a frame or two; runs closer
        // than MIN_CUT_GAP_S with no hard cut between are one transition (else one dissolve
        // reads as three, and the music would start three sections for it).
        while i < n {
            if inside[i] {
                e = i;
            } else if h[i].t - h[e].t >= MIN_CUT_GAP_S
                || cuts.iter().any(|&c| c > h[e].t && c <= h[i].t + 1e-9)
            {
                break;
            }
            i += 1;
        }
        let (t0, t1) = (h[s].t, h[e].t);
        // Blank runs at the very start or end are a fade-in from / out to nothing, not a transition.
        let blank_edge = (s == 0 || e + 1 == n) && h[s..=e].iter().any(|f| f.luma_sd < FLAT_SD);
        if t1 - t0 + 1.0 / fps >= GRADUAL_MIN_LEN_S
            && !blank_edge
            && !cuts.iter().any(|&c| c >= t0 && c <= t1)
        {
            let change = ncc_change(&h[s.saturating_sub(1)].thumb, &h[(e + 1).min(n - 1)].thumb);
            out.push(Transition {
                t: t0,
                end: t1,
                kind: TransitionKind::Gradual,
                confidence: change.clamp(0.0, 1.0),
            });
        }
    }
    out
}

/// Shortest spacing of visual beats (seconds): faster than 300 per minute is texture, not beat.
const BEAT_MIN_GAP_S: f64 = 0.2;
/// Local window for the adaptive beat threshold (seconds each side).
const BEAT_WINDOW_S: f64 = 1.0;
/// A beat's impact exceeds the local mean by this many local standard deviations.
const BEAT_SIGMAS: f32 = 1.0;
/// Smallest impact counted as a beat (frame diagonals per second of deceleration).
const BEAT_MIN_IMPACT: f32 = 0.02;

/// Visual beats: peaks of the impact envelope above an adaptive threshold.
pub fn visual_beats(t: &[f64], impact: &[f32]) -> Vec<f64> {
    let n = t.len();
    let mut beats: Vec<(f64, f32)> = Vec::new();
    for i in 1..n.saturating_sub(1) {
        let v = impact[i];
        if v < BEAT_MIN_IMPACT || v < impact[i - 1] || v < impact[i + 1] {
            continue;
        }
        let w: Vec<f32> = (0..n)
            .filter(|&j| (t[j] - t[i]).abs() <= BEAT_WINDOW_S)
            .map(|j| impact[j])
            .collect();
        let mean = w.iter().sum::<f32>() / w.len() as f32;
        let sd = (w.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / w.len() as f32).sqrt();
        if v < mean + BEAT_SIGMAS * sd {
            continue;
        }
        match beats.last_mut() {
            Some(last) if t[i] - last.0 < BEAT_MIN_GAP_S => {
                if v > last.1 {
                    *last = (t[i], v);
                }
            }
            _ => beats.push((t[i], v)),
        }
    }
    beats.into_iter().map(|b| b.0).collect()
}

/// Tempo range searched (BPM) and the prior's centre: like audio tempo trackers, prefer
/// tempi near 120 when several multiples fit.
const TEMPO_MIN_BPM: f64 = 60.0;
const TEMPO_MAX_BPM: f64 = 180.0;
const TEMPO_PRIOR_BPM: f64 = 120.0;
/// Width of the log-normal tempo prior (octaves).
const TEMPO_PRIOR_OCTAVES: f64 = 1.0;
/// The impact envelope's autocorrelation at the chosen lag must reach this (0..1) for the
/// motion to count as rhythmic.
const TEMPO_MIN_AC: f64 = 0.15;
/// At least this many visual beats before a tempo is claimed.
const TEMPO_MIN_BEATS: usize = 4;

/// Visual tempo from the autocorrelation of the impact envelope; `None` when the motion has
/// no regular rhythm.
pub fn visual_tempo(impact: &[f32], fps: f64, beats: usize) -> Option<f64> {
    let n = impact.len();
    if n < 8 || beats < TEMPO_MIN_BEATS || fps <= 0.0 {
        return None;
    }
    let mean = impact.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let x: Vec<f64> = impact.iter().map(|&v| v as f64 - mean).collect();
    let var: f64 = x.iter().map(|v| v * v).sum::<f64>();
    if var <= 1e-12 {
        return None;
    }
    let lag_min = ((60.0 / TEMPO_MAX_BPM) * fps).floor().max(1.0) as usize;
    let lag_max = (((60.0 / TEMPO_MIN_BPM) * fps).ceil() as usize).min(n - 1);
    let mut best: Option<(f64, f64, f64)> = None; // (score, bpm, ac)
    for lag in lag_min..=lag_max {
        let ac: f64 = (0..n - lag).map(|i| x[i] * x[i + lag]).sum::<f64>() / var * n as f64
            / (n - lag) as f64;
        let bpm = 60.0 * fps / lag as f64;
        let z = (bpm / TEMPO_PRIOR_BPM).log2() / TEMPO_PRIOR_OCTAVES;
        let score = ac * (-0.5 * z * z).exp();
        if best.is_none_or(|b| score > b.0) {
            best = Some((score, bpm, ac));
        }
    }
    best.filter(|b| b.2 >= TEMPO_MIN_AC).map(|b| b.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_spike_is_a_cut_sustained_change_is_not() {
        let mut mad = vec![0.01f32; 20];
        let mut st = vec![0.05f32; 20];
        mad[10] = 0.25;
        st[10] = 0.9;
        let p: Vec<f32> = (0..20).map(|i| cut_probability(&mad, &st, i)).collect();
        let t: Vec<f64> = (0..20).map(|i| i as f64 / 25.0).collect();
        assert!(is_cut(&p, &t, 10) && p[10] > 0.9, "{p:?}");
        assert!((0..20).filter(|&i| i != 10).all(|i| !is_cut(&p, &t, i)));
        // Fast continuous motion: every frame changes as much as the "cut" did.
        let mad = vec![0.25f32; 20];
        let st = vec![0.6f32; 20];
        assert!((0..20).all(|i| cut_probability(&mad, &st, i) < 0.5));
    }

    #[test]
    fn a_dissolve_with_a_glitch_in_its_middle_is_one_transition() {
        let fps = 25.0;
        let a: Vec<f32> = (0..64)
            .map(|j| 0.5 + 0.3 * (j as f32 * 0.7).sin())
            .collect();
        let b: Vec<f32> = (0..64)
            .map(|j| 0.5 + 0.3 * (j as f32 * 2.3).cos())
            .collect();
        let (d0, d1) = (40usize, 65usize); // a 1 s dissolve from shot a to shot b
        let frame = |i: usize, thumb: Vec<f32>| History {
            t: i as f64 / fps,
            speed: 0.0,
            mad: 0.01,
            luma_sd: 0.2,
            thumb,
        };
        let mut h: Vec<History> = (0..110)
            .map(|i| {
                let w = ((i as f32 - d0 as f32) / (d1 - d0) as f32).clamp(0.0, 1.0);
                frame(i, a.iter().zip(&b).map(|(p, q)| p + w * (q - p)).collect())
            })
            .collect();
        let clean = gradual_transitions(&h, &[], fps);
        assert_eq!(clean.len(), 1, "{clean:?}");
        // Two frames in the middle that are no blend of the shots (a flash, a coding glitch)
        // break the detector's run; it is still one transition.
        for i in [52, 53] {
            h[i].thumb = (0..64).map(|j| ((j * 7919) % 13) as f32 / 13.0).collect();
        }
        let glitched = gradual_transitions(&h, &[], fps);
        assert_eq!(glitched.len(), 1, "{glitched:?}");
        // (the glitched frames also end some comparison windows, so the edges move a little)
        let (g, c) = (&glitched[0], &clean[0]);
        assert!(g.t <= 52.0 / fps && g.end >= 53.0 / fps, "{g:?}");
        assert!(g.t < c.end && g.end > c.t, "{g:?} vs {c:?}");
        assert!(glitched[0].confidence > 0.5, "{glitched:?}");
        // A hard cut inside the gap keeps the two runs apart.
        let cut = 52.5 / fps;
        assert!(gradual_transitions(&h, &[cut], fps)
            .iter()
            .all(|g| g.end < cut || g.t > cut));
    }

    /// Black frames between two shots are a fade (one transition); black frames that reach
    /// the first or last frame (a fade-in from black, a fade-out to black, a black video)
    /// are no change of shot.
    #[test]
    fn black_between_shots_is_a_transition_black_at_the_edges_is_not() {
        let fps = 25.0;
        let shot =
            |k: f32| -> Vec<f32> { (0..64).map(|j| 0.5 + 0.3 * (j as f32 * k).sin()).collect() };
        let frames = |black: &dyn Fn(usize) -> bool, n: usize| -> Vec<History> {
            (0..n)
                .map(|i| History {
                    t: i as f64 / fps,
                    speed: 0.0,
                    mad: 0.0,
                    luma_sd: if black(i) { 0.0 } else { 0.2 },
                    thumb: if black(i) {
                        vec![0.0; 64]
                    } else if i < n / 2 {
                        shot(0.7)
                    } else {
                        shot(2.3)
                    },
                })
                .collect()
        };
        let n = 150;
        let dip = gradual_transitions(&frames(&|i| (70..80).contains(&i), n), &[], fps);
        assert_eq!(dip.len(), 1, "{dip:?}");
        assert!((dip[0].t - 70.0 / fps).abs() < 1e-9 && (dip[0].end - 79.0 / fps).abs() < 1e-9);
        let edges = frames(&|i| i < 12 || i >= n - 12, n);
        assert_eq!(gradual_transitions(&edges, &[], fps), vec![]);
        assert_eq!(gradual_transitions(&frames(&|_| true, n), &[], fps), vec![]);
    }

    #[test]
    fn periodic_impacts_give_their_tempo() {
        let fps = 30.0;
        // One impact every 15 frames = 120 BPM, with a little jitter-free texture.
        let imp: Vec<f32> = (0..300)
            .map(|i| {
                if i % 15 == 0 {
                    1.0
                } else {
                    0.05 * ((i % 7) as f32 / 7.0)
                }
            })
            .collect();
        let t: Vec<f64> = (0..300).map(|i| i as f64 / fps).collect();
        let beats = visual_beats(&t, &imp);
        assert!(beats.len() >= 18, "{beats:?}");
        let bpm = visual_tempo(&imp, fps, beats.len()).unwrap();
        assert!((bpm - 120.0).abs() < 3.0, "{bpm}");
        assert_eq!(visual_tempo(&vec![0.1; 300], fps, 10), None);
    }
}

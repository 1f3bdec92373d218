//! Per-frame motion features from the model's block flow map: speed and motion saliency.
//!
//! **Speed** is the mean flow magnitude over the frame, in frame diagonals per second:
//! `mean_b |f_b| / diagonal / dt` — the same quantity as CMT's mean Farneback magnitude,
//! made independent of resolution and frame rate. Block Lucas-Kanade cannot measure a block with
//! little texture (the aperture problem): its solve is dominated by the regulariser and by noise,
//! and on fast motion or a dissolve a flat block's coarse-level estimate is often several pixels
//! of motion that is not there. A dense method like Farneback instead gives such a region the
//! motion around it. So each block's flow is blended toward the fitted camera motion (below) by
//! how little texture it has, `f_b' = w_b f_b + (1 - w_b) c_b` with `w_b = conf_b / (conf_b +
//! CONF_HALF)`: measured flow where the block can measure it, the scene's motion model where it
//! cannot (the measured effect on the agreement with Farneback: docs/design/extraction.md).
//!
//! **Motion saliency** is how conspicuous the motion is against the rest of the frame. The
//! camera's own motion is modelled as an affine flow field (pan, tilt, zoom, roll), fitted
//! robustly over the textured blocks; what it does not explain is object motion. With `R_top`
//! the mean residual of the most-moving 5 % of blocks (inner, textured blocks; residuals weighted
//! by texture confidence), `R_med` the median residual and `G` the
//! mean camera-motion magnitude (all pixels per frame):
//!
//! `saliency = clamp((R_top - R_med) / (R_top + 2·G + NOISE_PX), 0, 1)`
//!
//! (the flow map is first 3x3-median filtered; `2·G` because flow error grows with motion).
//!
//! A lone mover on a still background: `R_top` = its speed, `G` ≈ `R_med` ≈ 0 → near 1.
//! A pan or zoom over a still scene: the affine fit absorbs it, `R_top` is small and `G`
//! large → near 0. Everything moving in different directions (water, a crowd): `R_med` is
//! large → low. A still frame: `R_top` below the noise floor → near 0.

/// Flow residual (pixels/frame at the analysis size) below which motion is indistinguishable
/// from estimation noise; it keeps a still frame's saliency near zero.
pub const NOISE_PX: f32 = 0.5;
/// Flow error grows with the motion itself (about a third of it for block Lucas-Kanade on a
/// pyramid without warping): object motion must stand out from that much error of the camera's
/// motion, so the camera term of the denominator is weighted by this.
pub const CAMERA_NOISE: f32 = 2.0;
/// Share of blocks whose residual counts as "the mover" (5 %, at least MIN_TOP blocks).
const TOP_SHARE: f32 = 0.05;
const MIN_TOP: usize = 3;
/// Texture confidence at which a block gets half weight in the camera-motion fit.
const CONF_HALF: f32 = 2e-4;
/// Robust (Cauchy) reweighting rounds for the camera-motion fit.
const IRLS_ROUNDS: usize = 4;
/// Smallest residual scale in the Cauchy weights (pixels/frame).
const MIN_SCALE_PX: f32 = 0.25;

/// 3x3 median filter of a block map (edges use the neighbours that exist; an even count takes
/// the upper median).
fn median3x3(v: &[f32], bw: usize, bh: usize) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    let mut win = [0f32; 9];
    for y in 0..bh {
        let (y0, y1) = (y.saturating_sub(1), (y + 2).min(bh));
        for x in 0..bw {
            let (x0, x1) = (x.saturating_sub(1), (x + 2).min(bw));
            let mut n = 0;
            for yy in y0..y1 {
                win[n..n + x1 - x0].copy_from_slice(&v[yy * bw + x0..yy * bw + x1]);
                n += x1 - x0;
            }
            out[y * bw + x] = if n == 9 {
                median9(win)
            } else {
                win[..n].sort_unstable_by(f32::total_cmp);
                win[n / 2]
            };
        }
    }
    out
}

/// Median of 9 values by a fixed exchange network (19 min/max pairs; Paeth's, as used in
/// image filters): branch-free, for the interior of the block map. Flow values are finite.
fn median9(mut p: [f32; 9]) -> f32 {
    let mut s = |a: usize, b: usize| {
        let (lo, hi) = (p[a].min(p[b]), p[a].max(p[b]));
        p[a] = lo;
        p[b] = hi;
    };
    for (a, b) in [
        (1, 2),
        (4, 5),
        (7, 8),
        (0, 1),
        (3, 4),
        (6, 7),
        (1, 2),
        (4, 5),
        (7, 8),
        (0, 3),
        (5, 8),
        (4, 7),
        (3, 6),
        (1, 4),
        (2, 5),
        (4, 7),
        (4, 2),
        (6, 4),
        (4, 2),
    ] {
        s(a, b);
    }
    p[4]
}

/// Solves the 3x3 symmetric system `m x = r` (Cramer's rule); `None` if singular.
fn solve3(m: [[f64; 3]; 3], r: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(m);
    if d.abs() < 1e-12 {
        return None;
    }
    let mut x = [0.0; 3];
    for (k, xk) in x.iter_mut().enumerate() {
        let mut mk = m;
        for i in 0..3 {
            mk[i][k] = r[i];
        }
        *xk = det(mk) / d;
    }
    Some(x)
}

/// Camera motion and saliency of one block flow map (`bw * bh` blocks, row-major).
pub struct Saliency {
    pub saliency: f32,
    /// Mean magnitude of the fitted camera motion, pixels/frame.
    pub camera: f32,
    /// Mean flow magnitude with untextured blocks filled by the camera motion (see the module
    /// docs), pixels/frame: the frame's speed.
    pub speed: f32,
    /// Per-block residual (object motion) magnitude, pixels/frame.
    pub residual: Vec<f32>,
}

/// Fits the affine camera motion and scores saliency (see the module docs).
pub fn saliency(dx: &[f32], dy: &[f32], conf: &[f32], bw: usize, bh: usize) -> Saliency {
    // Isolated wrong blocks (a coarse level overshooting on repetitive texture) would read as
    // lone movers: a 3x3 median keeps coherent movers of 2x2 blocks or more and drops them.
    let (raw_dx, raw_dy) = (dx, dy);
    let (mdx, mdy) = (median3x3(dx, bw, bh), median3x3(dy, bw, bh));
    let (dx, dy) = (&mdx[..], &mdy[..]);
    let n = bw * bh;
    if n == 0 {
        return Saliency {
            saliency: 0.0,
            camera: 0.0,
            speed: 0.0,
            residual: Vec::new(),
        };
    }
    // Block centres, normalised to about -1..1 on the long side.
    let scale = bw.max(bh) as f64 / 2.0;
    let pos: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            (
                ((i % bw) as f64 + 0.5 - bw as f64 / 2.0) / scale,
                ((i / bw) as f64 + 0.5 - bh as f64 / 2.0) / scale,
            )
        })
        .collect();
    let base: Vec<f64> = conf
        .iter()
        .map(|&c| (c.max(0.0) / (c.max(0.0) + CONF_HALF)) as f64 + 1e-3)
        .collect();
    let mut w = base.clone();
    let mut a = [0.0f64; 3];
    let mut b = [0.0f64; 3];
    let mut residual = vec![0f32; n];
    let mut scratch = Vec::with_capacity(n);
    for round in 0..=IRLS_ROUNDS {
        let mut m = [[0.0f64; 3]; 3];
        let (mut rx, mut ry) = ([0.0f64; 3], [0.0f64; 3]);
        for i in 0..n {
            let phi = [1.0, pos[i].0, pos[i].1];
            for r in 0..3 {
                for c in 0..3 {
                    m[r][c] += w[i] * phi[r] * phi[c];
                }
                rx[r] += w[i] * phi[r] * dx[i] as f64;
                ry[r] += w[i] * phi[r] * dy[i] as f64;
            }
        }
        // Tiny ridge on the slope terms keeps a degenerate (one-row) grid solvable.
        m[1][1] += 1e-6;
        m[2][2] += 1e-6;
        if let (Some(sa), Some(sb)) = (solve3(m, rx), solve3(m, ry)) {
            a = sa;
            b = sb;
        }
        for i in 0..n {
            let (x, y) = pos[i];
            let ex = dx[i] as f64 - (a[0] + a[1] * x + a[2] * y);
            let ey = dy[i] as f64 - (b[0] + b[1] * x + b[2] * y);
            residual[i] = (ex * ex + ey * ey).sqrt() as f32;
        }
        if round == IRLS_ROUNDS {
            break;
        }
        scratch.clear();
        scratch.extend_from_slice(&residual);
        let median = *scratch.select_nth_unstable_by(n / 2, f32::total_cmp).1;
        let sigma = (1.4826 * median).max(MIN_SCALE_PX) as f64;
        for i in 0..n {
            let r = residual[i] as f64 / sigma;
            w[i] = base[i] / (1.0 + r * r);
        }
    }
    let (mut camera, mut speed) = (0f32, 0f32);
    for (i, &(x, y)) in pos.iter().enumerate() {
        let (cu, cv) = (
            (a[0] + a[1] * x + a[2] * y) as f32,
            (b[0] + b[1] * x + b[2] * y) as f32,
        );
        camera += (cu * cu + cv * cv).sqrt();
        // Measured flow where the block has texture, the camera's motion where it has none.
        let w = (base[i] as f32).min(1.0);
        let (u, v) = (
            w * raw_dx[i] + (1.0 - w) * cu,
            w * raw_dy[i] + (1.0 - w) * cv,
        );
        speed += (u * u + v * v).sqrt();
    }
    let (camera, speed) = (camera / n as f32, speed / n as f32);
    // Object motion is scored where it can be measured: textured blocks (a flat block's flow
    // is shrunk to zero, which would read as motion against a moving camera), away from the
    // border ring (content entering or leaving the frame has no match).
    let interior = |i: usize| {
        bw < 5 || bh < 5 || (i % bw > 0 && i % bw < bw - 1 && i / bw > 0 && i / bw < bh - 1)
    };
    let mut sorted: Vec<f32> = (0..n)
        .filter(|&i| interior(i))
        .map(|i| residual[i] * (base[i] as f32).min(1.0))
        .collect();
    let m = sorted.len();
    let k = ((m as f32 * TOP_SHARE).round() as usize)
        .max(MIN_TOP)
        .min(m);
    // Descending order: the median, then the k largest (summed in descending order).
    let desc = |p: &f32, q: &f32| q.total_cmp(p);
    let med = *sorted.select_nth_unstable_by(m / 2, desc).1;
    let (top_k, _, _) = sorted.select_nth_unstable_by(k - 1, desc);
    top_k.sort_unstable_by(desc);
    let top = (top_k.iter().sum::<f32>() + sorted[k - 1]) / k as f32;
    let s = ((top - med) / (top + CAMERA_NOISE * camera + NOISE_PX)).clamp(0.0, 1.0);
    Saliency {
        saliency: s,
        camera,
        speed,
        residual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(bw: usize, bh: usize, f: impl Fn(usize, usize) -> (f32, f32)) -> (Vec<f32>, Vec<f32>) {
        let mut dx = Vec::new();
        let mut dy = Vec::new();
        for y in 0..bh {
            for x in 0..bw {
                let (u, v) = f(x, y);
                dx.push(u);
                dy.push(v);
            }
        }
        (dx, dy)
    }

    // Flow fields written out on purpose to isolate the definition (the real-footage checks
    // are in tests/extract_saliency.rs).
    #[test]
    fn median9_network_is_the_median() {
        // Every arrangement of a few value patterns, against sorting.
        let mut seed = 12345u64;
        for _ in 0..2000 {
            let mut v = [0f32; 9];
            for x in &mut v {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *x = ((seed >> 33) % 7) as f32 - 3.0;
            }
            let mut s = v;
            s.sort_by(f32::total_cmp);
            assert_eq!(median9(v), s[4], "{v:?}");
        }
    }

    #[test]
    fn untextured_blocks_take_the_camera_motion_in_the_speed() {
        // A pan of 2 px/frame over a textured scene, with a flat band (no texture) whose block
        // estimates are spurious: the speed is the pan's, whatever the flat blocks said.
        let (bw, bh) = (20, 11);
        let conf: Vec<f32> = (0..bw * bh)
            .map(|i| if i / bw < 4 { 0.0 } else { 1e-2 })
            .collect();
        let (dx, dy) = grid(bw, bh, |x, y| {
            if y < 4 {
                (((x * 7 + y * 3) % 11) as f32 - 2.0, 6.0)
            } else {
                (2.0, 0.0)
            }
        });
        let s = saliency(&dx, &dy, &conf, bw, bh);
        assert!((s.speed - 2.0).abs() < 0.1, "speed {}", s.speed);
        // Fully textured: the speed is the plain mean magnitude of the measured flow.
        let conf = vec![1.0; bw * bh];
        let (dx, dy) = grid(bw, bh, |x, _| (if x < 10 { 1.0 } else { 3.0 }, 0.0));
        let s = saliency(&dx, &dy, &conf, bw, bh);
        assert!((s.speed - 2.0).abs() < 0.01, "speed {}", s.speed);
    }

    #[test]
    fn lone_mover_scores_high_pan_and_zoom_low() {
        let (bw, bh) = (20, 11);
        let conf = vec![1e-3; bw * bh];
        let (dx, dy) = grid(bw, bh, |x, y| {
            if (8..11).contains(&x) && (4..7).contains(&y) {
                (4.0, 0.5)
            } else {
                (0.0, 0.0)
            }
        });
        let lone = saliency(&dx, &dy, &conf, bw, bh).saliency;
        let (dx, dy) = grid(bw, bh, |_, _| (5.0, -1.0));
        let pan = saliency(&dx, &dy, &conf, bw, bh).saliency;
        let (dx, dy) = grid(bw, bh, |x, y| {
            ((x as f32 - 9.5) * 0.3, (y as f32 - 5.0) * 0.3)
        });
        let zoom = saliency(&dx, &dy, &conf, bw, bh).saliency;
        let still = saliency(&vec![0.0; bw * bh], &vec![0.0; bw * bh], &conf, bw, bh).saliency;
        assert!(lone > 0.7, "lone mover {lone}");
        assert!(
            pan < 0.1 && zoom < 0.1 && still < 0.05,
            "pan {pan} zoom {zoom} still {still}"
        );
    }
}

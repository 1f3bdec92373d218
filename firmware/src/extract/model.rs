//! The extraction ONNX model (`models/extract/extract_v1.onnx`, built by
//! `tools/train/extract/build_model.py`) run by tract: one frame pair in, dense motion maps
//! and per-frame transition evidence out. Shapes are concrete per frame size: the graph is
//! optimised for the first size it sees and again only if the size changes.

use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;

use super::ExtractError;

/// Input side granularity: the model's pyramid halves the frame three times, so both sides
/// must be multiples of 8 (the extractor crops to that).
pub const MODEL_MULTIPLE: u32 = 8;
/// Number of directogram bins in the evidence vector.
pub const DIRECTIONS: usize = 8;
/// Length of the model's evidence output.
const EVIDENCE_LEN: usize = 7;
/// Pyramid levels of the structure tensors (1 = half size, 2 = quarter, 3 = eighth).
const LEVELS: usize = 3;

// ---- per-block Lucas-Kanade (values as documented in tools/train/extract/build_model.py) ----
/// Tikhonov term on the structure tensor's diagonal: keeps flat blocks at zero flow instead of
/// amplifying noise ((intensity/pixel)^2 on frames normalised to a 0.2 standard deviation; about a
/// gradient of 1.1 grey levels per pixel).
const REG: f32 = 2e-5;
/// A level's estimate is trusted while the motion, in that level's pixels, stays below this:
/// beyond about one pixel Lucas-Kanade's linearisation saturates, so a coarser level wins.
const TRUST_PX: f32 = 0.8;
/// Temporal-difference energy of sensor/compression noise ((2 grey levels)^2 on 0..1 luma),
/// added before taking the unexplained share, so still, noisy blocks read as explained.
const NOISE_TT: f32 = (2.0 / 255.0) * (2.0 / 255.0);
/// A block whose change is more than UNEXPL_LO unexplained by its flow starts losing trust in
/// that flow (a cut or occlusion, not motion); at UNEXPL_HI its flow is zeroed.
const UNEXPL_LO: f32 = 0.5;
const UNEXPL_HI: f32 = 0.9;
/// Largest motion the pyramid can measure (input pixels per frame, 1.5 px at level 3); beyond
/// it the estimate is noise (it happens at cuts), so magnitudes are clipped here.
const MAX_FLOW_PX: f32 = 12.0;
/// Flow is not measurable on a near-flat frame (black between shots, the bottom of a fade):
/// below FLAT_SD of luma standard deviation (either frame) it is gated to zero, fully open
/// FLAT_RAMP above.
const FLAT_SD: f32 = 0.015;
const FLAT_RAMP: f32 = 0.03;

/// Per-frame scalars the model computes from a frame pair.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Evidence {
    /// Mean absolute luma difference at half size, 0..1.
    pub mad: f32,
    /// Half the L1 distance of the two 16-bin luma histograms, 0..1.
    pub hist: f32,
    /// 1 - normalised cross-correlation of the two frames at 1/8 size, 0..2.
    pub structure: f32,
    /// Share of the temporal change the flow does not explain, 0..1.
    pub unexplained: f32,
    /// Mean flow projected on 8 directions (0, 45, ... degrees, image y down), rectified, px/frame.
    pub directogram: [f32; DIRECTIONS],
    /// Mean and standard deviation of the current frame's luma, 0..1.
    pub luma_mean: f32,
    pub luma_sd: f32,
    /// Standard deviation of the previous frame's luma, 0..1.
    pub prev_luma_sd: f32,
}

/// Everything the model returns for one frame pair.
#[derive(Debug, Clone, Default)]
pub struct PairMaps {
    /// Block grid size (one block per 8x8 input pixels).
    pub bw: usize,
    pub bh: usize,
    /// Flow per block, input pixels per frame, row-major `bh * bw`.
    pub dx: Vec<f32>,
    pub dy: Vec<f32>,
    /// Texture confidence per block (>= 0).
    pub conf: Vec<f32>,
    /// Unexplained share of the change per block, 0..1.
    pub unexplained: Vec<f32>,
    /// The current frame at 1/8 size, 0..1 (for gradual transitions).
    pub thumb: Vec<f32>,
    pub evidence: Evidence,
}

/// The loaded model with a plan for the current frame size.
pub struct ExtractModel {
    path: PathBuf,
    model: InferenceModel,
    plan: Option<((u32, u32), TypedSimpleState)>,
}

impl ExtractModel {
    /// Loads the ONNX file (the plan is built on the first frame).
    pub fn load(path: &Path) -> Result<Self, ExtractError> {
        if !path.exists() {
            return Err(ExtractError::ModelMissing {
                path: path.to_path_buf(),
            });
        }
        let invalid = |e: TractError| ExtractError::ModelInvalid {
            path: path.to_path_buf(),
            detail: format!("{e:#}"),
        };
        let model = tract_onnx::onnx().model_for_path(path).map_err(invalid)?;
        let mut m = ExtractModel {
            path: path.to_path_buf(),
            model,
            plan: None,
        };
        // Build once at the default size so a broken model fails at load, not at the first frame.
        m.plan_for(160, 88)?;
        Ok(m)
    }

    fn plan_for(&mut self, w: u32, h: u32) -> Result<&mut TypedSimpleState, ExtractError> {
        if self.plan.as_ref().map(|p| p.0) != Some((w, h)) {
            let invalid = |e: TractError| ExtractError::ModelInvalid {
                path: self.path.clone(),
                detail: format!("{e:#}"),
            };
            let mut m = self.model.clone();
            m.set_input_fact(
                0,
                InferenceFact::dt_shape(u8::datum_type(), tvec![2, 1, h as usize, w as usize]),
            )
            .map_err(invalid)?;
            // The file names its output dims symbolically; let tract infer them from the input.
            for i in 0..m.outputs.len() {
                m.set_output_fact(i, InferenceFact::default())
                    .map_err(invalid)?;
            }
            let plan = m
                .into_optimized()
                .map_err(invalid)?
                .into_runnable()
                .map_err(invalid)?;
            let state = plan.spawn().map_err(invalid)?;
            self.plan = Some(((w, h), state));
        }
        Ok(&mut self.plan.as_mut().expect("plan just built").1)
    }

    /// Runs the model on `prev` and `cur` (both `w * h` luma, sides multiples of 8).
    pub fn run(
        &mut self,
        prev: &[u8],
        cur: &[u8],
        w: u32,
        h: u32,
    ) -> Result<PairMaps, ExtractError> {
        let n = (w * h) as usize;
        debug_assert!(prev.len() == n && cur.len() == n);
        let path = self.path.clone();
        let fail = move |e: TractError| ExtractError::Inference {
            path: path.clone(),
            detail: format!("{e:#}"),
        };
        let plan = self.plan_for(w, h)?;
        let mut data = Vec::with_capacity(2 * n);
        data.extend_from_slice(prev);
        data.extend_from_slice(cur);
        let input = Tensor::from_shape(&[2, 1, h as usize, w as usize], &data).map_err(&fail)?;
        let out = plan.run(tvec![input.into_tvalue()]).map_err(&fail)?;
        let vec = |i: usize| -> Result<Vec<f32>, ExtractError> {
            Ok(out[i]
                .to_plain_array_view::<f32>()
                .map_err(&fail)?
                .iter()
                .copied()
                .collect())
        };
        let (bw, bh) = ((w / MODEL_MULTIPLE) as usize, (h / MODEL_MULTIPLE) as usize);
        let tensors = vec(0)?;
        let ev = vec(1)?;
        let nb = bw * bh;
        if tensors.len() != 6 * LEVELS * nb || ev.len() != EVIDENCE_LEN {
            return Err(ExtractError::Inference {
                path: self.path.clone(),
                detail: format!(
                    "unexpected output sizes (tensors {}, evidence {})",
                    tensors.len(),
                    ev.len()
                ),
            });
        }
        let mut maps = solve_blocks(&tensors, bw, bh, ev[5].min(ev[6]));
        maps.thumb = vec(2)?;
        maps.evidence.mad = ev[0];
        maps.evidence.hist = ev[1];
        maps.evidence.structure = ev[2];
        maps.evidence.luma_mean = ev[4];
        maps.evidence.prev_luma_sd = ev[5];
        maps.evidence.luma_sd = ev[6];
        Ok(maps)
    }
}

/// Per-block Lucas-Kanade from the model's block structure tensors: a 3x3-block window, a
/// regularised 2x2 solve per level,
/// coarse to fine (start at 1/8 size; step to a finer level while the motion there is within
/// [`TRUST_PX`]), then trust gating (unexplained change, clipping, flat frames). `sd_min` is the
/// smaller luma standard deviation of the two frames.
fn solve_blocks(blocks: &[f32], bw: usize, bh: usize, sd_min: f32) -> PairMaps {
    let nb = bw * bh;
    // Lucas-Kanade window: the mean over the 3x3 blocks around each block (24x24 input
    // pixels); at the edges, over the blocks that exist.
    let mut t = vec![0f32; blocks.len()];
    for (plane, out) in blocks.chunks_exact(nb).zip(t.chunks_exact_mut(nb)) {
        for y in 0..bh {
            let (y0, y1) = (y.saturating_sub(1), (y + 2).min(bh));
            for x in 0..bw {
                let (x0, x1) = (x.saturating_sub(1), (x + 2).min(bw));
                let mut s = 0f32;
                for yy in y0..y1 {
                    s += plane[yy * bw + x0..yy * bw + x1].iter().sum::<f32>();
                }
                out[y * bw + x] = s / ((y1 - y0) * (x1 - x0)) as f32;
            }
        }
    }
    let ch = |lv: usize, c: usize, i: usize| t[((lv - 1) * 6 + c) * nb + i];
    let gate = ((sd_min - FLAT_SD) / FLAT_RAMP).clamp(0.0, 1.0);
    let mut m = PairMaps {
        bw,
        bh,
        ..Default::default()
    };
    m.dx.reserve(nb);
    m.dy.reserve(nb);
    let (mut res_sum, mut tt_sum) = (0f32, 0f32);
    let mut dgram = [0f32; DIRECTIONS];
    let dirs: Vec<(f32, f32)> = (0..DIRECTIONS)
        .map(|k| {
            let a = k as f32 * std::f32::consts::TAU / DIRECTIONS as f32;
            (a.cos(), a.sin())
        })
        .collect();
    for i in 0..nb {
        let level = |lv: usize| {
            let (sxx, sxy, syy, sxt, syt, stt) = (
                ch(lv, 0, i),
                ch(lv, 1, i),
                ch(lv, 2, i),
                ch(lv, 3, i),
                ch(lv, 4, i),
                ch(lv, 5, i),
            );
            let (a, c) = (sxx + REG, syy + REG);
            let det = a * c - sxy * sxy;
            let u = (sxy * syt - c * sxt) / det;
            let v = (sxy * sxt - a * syt) / det;
            let res = (stt + u * sxt + v * syt).max(0.0);
            let s = (1u32 << lv) as f32;
            (u * s, v * s, res, stt)
        };
        let (mut u, mut v, mut res, mut tt) = level(3);
        for lv in [2usize, 1] {
            if (u * u + v * v).sqrt() < TRUST_PX * (1u32 << lv) as f32 {
                (u, v, res, tt) = level(lv);
            }
        }
        res_sum += res;
        tt_sum += tt;
        let unexpl = (res / (tt + NOISE_TT)).min(1.0);
        let trust = ((UNEXPL_HI - unexpl) / (UNEXPL_HI - UNEXPL_LO)).clamp(0.0, 1.0);
        let mag = (u * u + v * v + 1e-6).sqrt();
        let k = trust * (MAX_FLOW_PX / mag).min(1.0) * gate;
        let (u, v) = (u * k, v * k);
        for (d, (cx, sy)) in dgram.iter_mut().zip(&dirs) {
            *d += (u * cx + v * sy).max(0.0);
        }
        m.dx.push(u);
        m.dy.push(v);
        m.unexplained.push(unexpl);
        // Texture confidence at 1/4 size: det / trace of the structure tensor ~ smaller eigenvalue.
        let (sxx, sxy, syy) = (ch(2, 0, i), ch(2, 1, i), ch(2, 2, i));
        m.conf
            .push((sxx * syy - sxy * sxy).max(0.0) / (sxx + syy + 1e-6));
    }
    dgram.iter_mut().for_each(|d| *d /= nb.max(1) as f32);
    m.evidence.directogram = dgram;
    m.evidence.unexplained = res_sum / (tt_sum + 1e-6);
    m
}

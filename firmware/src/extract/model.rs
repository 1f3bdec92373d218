//! The extraction ONNX model (`models/extract/extract_v2.onnx`, built by
//! `tools/train/extract/build_model.py`) run by tract: one frame in, with the state the model
//! returned for the previous frame; dense motion maps and per-frame transition evidence of the
//! pair out, with the state for the next frame. Each frame's pyramid and gradients are computed
//! once, not once as "current" and again as "previous". Shapes are concrete per frame size: the
//! graph is optimised for the first size it sees and again only if the size changes.

use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;

use super::ExtractError;

/// Frame size the model is optimised for when the frames' own is not known yet (16:9 at the
/// analysis width, cropped to multiples of [`MODEL_MULTIPLE`]).
const DEFAULT_PLAN_SIZE: (u32, u32) = (160, 88);
/// Input side granularity: the model's pyramid halves the frame three times, so both sides
/// must be multiples of 8 (the extractor crops to that).
pub const MODEL_MULTIPLE: u32 = 8;
/// Number of directogram bins in the evidence vector.
pub const DIRECTIONS: usize = 8;
/// Length of the model's evidence output (mad, hist, structure, luma mean, luma sd).
const EVIDENCE_LEN: usize = 5;
/// Pyramid levels of the structure tensors (1 = half size, 2 = quarter, 3 = eighth).
const LEVELS: usize = 3;
/// Structure-tensor products per level, in the model's channel order.
const PRODUCTS: usize = 6;
/// Channels of one level in `tensors`: Ix*Ix, Ix*Iy, Ix*It, Iy*Iy, Iy*It, It*It.
const XX: usize = 0;
const XY: usize = 1;
const XT: usize = 2;
const YY: usize = 3;
const YT: usize = 4;
const TT: usize = 5;
/// Soft luma-histogram bins the model carries from frame to frame.
const HIST_BINS: usize = 16;
/// Output slots of the model (see build_model.py); the state outputs feed the next call.
const OUT_TENSORS: usize = 0;
const OUT_EVIDENCE: usize = 1;
const OUT_THUMB: usize = 2;
/// The next call's state inputs (`prev_l1, prev_f1, prev_f2, prev_f3, prev_hist, prev_thumb`,
/// inputs 1..=6) are these outputs (`l1, f1, f2, f3, hist, thumb`).
const STATE_FROM_OUTPUTS: [usize; 6] = [3, 4, 5, 6, 7, OUT_THUMB];

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

/// The previous frame's part of the model's work, fed back on the next call.
struct Carry {
    /// State inputs 1..=6 of the next call.
    inputs: [TValue; 6],
    luma_sd: f32,
}

/// The optimised plan for one frame size and the stream's state.
struct Plan {
    size: (u32, u32),
    state: TypedSimpleState,
    carry: Option<Carry>,
    /// Reused buffer of the 3x3-block window sums.
    windows: Vec<f32>,
}

/// The loaded model with a plan for the current frame size.
pub struct ExtractModel {
    path: PathBuf,
    model: InferenceModel,
    plan: Option<Plan>,
}

/// Shapes of the model's inputs for a `w x h` frame: the frame (uint8), then the state (f32).
fn input_shapes(w: u32, h: u32) -> [TVec<usize>; 7] {
    let (w, h) = (w as usize, h as usize);
    [
        tvec![1, 1, h, w],
        tvec![1, 1, h / 2, w / 2],
        tvec![1, 3, h / 2, w / 2],
        tvec![1, 3, h / 4, w / 4],
        tvec![1, 3, h / 8, w / 8],
        tvec![1, HIST_BINS],
        tvec![1, 1, h / 8, w / 8],
    ]
}

/// `model` typed and optimised by tract, with its convolutions on [`super::conv`]'s direct
/// loops when `direct` (the same outputs, bit for bit; see there).
fn optimise(model: InferenceModel, direct: bool) -> TractResult<TypedModel> {
    let mut typed = model.into_typed()?.into_decluttered()?;
    if direct {
        let replaced = super::conv::substitute(&mut typed)?;
        tracing::debug!(replaced, "extraction convolutions on direct loops");
    }
    typed.into_optimized()
}

impl ExtractModel {
    /// Loads the ONNX file (the plan is built for the default analysis size right away).
    pub fn load(path: &Path) -> Result<Self, ExtractError> {
        Self::load_sized(path, DEFAULT_PLAN_SIZE.0, DEFAULT_PLAN_SIZE.1)
    }

    /// [`ExtractModel::load`], with the graph optimised for `w` x `h` frames (the size the
    /// frames will have, when it is known: each new size costs another optimisation, about as
    /// much as 50 frames of extraction).
    pub fn load_sized(path: &Path, w: u32, h: u32) -> Result<Self, ExtractError> {
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
        // Build now so a broken model fails at load, not at the first frame.
        m.plan_for(w, h)?;
        Ok(m)
    }

    fn plan_for(&mut self, w: u32, h: u32) -> Result<&mut Plan, ExtractError> {
        if self.plan.as_ref().map(|p| p.size) != Some((w, h)) {
            let invalid = |e: TractError| ExtractError::ModelInvalid {
                path: self.path.clone(),
                detail: format!("{e:#}"),
            };
            let mut m = self.model.clone();
            if m.inputs.len() != 7 || m.outputs.len() != 8 {
                return Err(ExtractError::ModelInvalid {
                    path: self.path.clone(),
                    detail: format!(
                        "{} inputs and {} outputs, expected 7 and 8 (extract_v2)",
                        m.inputs.len(),
                        m.outputs.len()
                    ),
                });
            }
            for (i, shape) in input_shapes(w, h).into_iter().enumerate() {
                let dt = if i == 0 {
                    u8::datum_type()
                } else {
                    f32::datum_type()
                };
                m.set_input_fact(i, InferenceFact::dt_shape(dt, shape))
                    .map_err(invalid)?;
            }
            // The file names its output dims symbolically; let tract infer them from the inputs.
            for i in 0..m.outputs.len() {
                m.set_output_fact(i, InferenceFact::default())
                    .map_err(invalid)?;
            }
            let plan = optimise(m, true)
                .map_err(invalid)?
                .into_runnable()
                .map_err(invalid)?;
            let state = plan.spawn().map_err(invalid)?;
            self.plan = Some(Plan {
                size: (w, h),
                state,
                carry: None,
                windows: Vec::new(),
            });
        }
        Ok(self.plan.as_mut().expect("plan just built"))
    }

    /// Forgets the previous frame: the next frame starts a new stream.
    pub fn reset(&mut self) {
        if let Some(p) = self.plan.as_mut() {
            p.carry = None;
        }
    }

    /// Feeds the next frame of a stream (`w * h` luma, sides multiples of 8). Returns the maps
    /// of the pair (previous frame, this frame), or `None` for the first frame of a stream
    /// (after [`ExtractModel::reset`] or a change of frame size).
    pub fn push(&mut self, cur: &[u8], w: u32, h: u32) -> Result<Option<PairMaps>, ExtractError> {
        debug_assert!(cur.len() == (w * h) as usize);
        let path = self.path.clone();
        let bad = |detail: String| ExtractError::Inference {
            path: path.clone(),
            detail,
        };
        let fail = |e: TractError| bad(format!("{e:#}"));
        let plan = self.plan_for(w, h)?;
        let frame = Tensor::from_shape(&[1, 1, h as usize, w as usize], cur).map_err(&fail)?;
        let (first, state_in) = match plan.carry.take() {
            Some(c) => (None, c),
            None => {
                // A new stream: zero state (the pair outputs of this call are not used).
                let shapes = input_shapes(w, h);
                let z = |i: usize| -> TValue {
                    Tensor::zero::<f32>(&shapes[i])
                        .expect("zero state tensor")
                        .into_tvalue()
                };
                (
                    Some(()),
                    Carry {
                        inputs: [z(1), z(2), z(3), z(4), z(5), z(6)],
                        luma_sd: 0.0,
                    },
                )
            }
        };
        let prev_sd = state_in.luma_sd;
        let mut inputs: TVec<TValue> = tvec![frame.into_tvalue()];
        inputs.extend(state_in.inputs);
        let out = plan.state.run(inputs).map_err(&fail)?;
        let slice = |i: usize| -> Result<Vec<f32>, ExtractError> {
            let view = out[i].to_plain_array_view::<f32>().map_err(&fail)?;
            Ok(match view.as_slice() {
                Some(s) => s.to_vec(),
                None => view.iter().copied().collect(),
            })
        };
        let ev = slice(OUT_EVIDENCE)?;
        if ev.len() != EVIDENCE_LEN {
            return Err(bad(format!("unexpected evidence size {}", ev.len())));
        }
        let carry = Carry {
            inputs: STATE_FROM_OUTPUTS.map(|i| out[i].clone()),
            luma_sd: ev[4],
        };
        plan.carry = Some(carry);
        if first.is_some() {
            return Ok(None);
        }
        let (bw, bh) = ((w / MODEL_MULTIPLE) as usize, (h / MODEL_MULTIPLE) as usize);
        let tensors = out[OUT_TENSORS]
            .to_plain_array_view::<f32>()
            .map_err(&fail)?;
        let tensors = tensors
            .as_slice()
            .ok_or_else(|| bad("non-contiguous structure tensors".into()))?;
        if tensors.len() != PRODUCTS * LEVELS * bw * bh {
            return Err(bad(format!(
                "unexpected structure tensor size {}",
                tensors.len()
            )));
        }
        let mut maps = solve_blocks(tensors, &mut plan.windows, bw, bh, prev_sd.min(ev[4]));
        maps.thumb = slice(OUT_THUMB)?;
        maps.evidence.mad = ev[0];
        maps.evidence.hist = ev[1];
        maps.evidence.structure = ev[2];
        maps.evidence.luma_mean = ev[3];
        maps.evidence.luma_sd = ev[4];
        maps.evidence.prev_luma_sd = prev_sd;
        Ok(Some(maps))
    }
}

/// Per-block Lucas-Kanade from the model's block structure tensors: a 3x3-block window, a
/// regularised 2x2 solve per level, coarse to fine (start at 1/8 size; step to a finer level while
/// the motion there is within [`TRUST_PX`]), then trust gating (unexplained change, clipping, flat
/// frames). `sd_min` is the smaller luma standard deviation of the two frames; `t` is a reused
/// buffer.
fn solve_blocks(blocks: &[f32], t: &mut Vec<f32>, bw: usize, bh: usize, sd_min: f32) -> PairMaps {
    let nb = bw * bh;
    window_means(blocks, t, bw, bh);
    let plane = |lv: usize, c: usize| &t[((lv - 1) * PRODUCTS + c) * nb..][..nb];
    let levels: [[&[f32]; PRODUCTS]; LEVELS] =
        std::array::from_fn(|l| std::array::from_fn(|c| plane(l + 1, c)));
    let gate = ((sd_min - FLAT_SD) / FLAT_RAMP).clamp(0.0, 1.0);
    let mut m = PairMaps {
        bw,
        bh,
        dx: Vec::with_capacity(nb),
        dy: Vec::with_capacity(nb),
        conf: Vec::with_capacity(nb),
        unexplained: Vec::with_capacity(nb),
        ..Default::default()
    };
    let (mut res_sum, mut tt_sum) = (0f32, 0f32);
    let mut dgram = [0f32; DIRECTIONS];
    let dirs: [(f32, f32); DIRECTIONS] = std::array::from_fn(|k| {
        let a = k as f32 * std::f32::consts::TAU / DIRECTIONS as f32;
        (a.cos(), a.sin())
    });
    for i in 0..nb {
        let level = |lv: usize| {
            let p = &levels[lv - 1];
            let (sxx, sxy, syy, sxt, syt, stt) =
                (p[XX][i], p[XY][i], p[YY][i], p[XT][i], p[YT][i], p[TT][i]);
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
        let p = &levels[1];
        let (sxx, sxy, syy) = (p[XX][i], p[XY][i], p[YY][i]);
        m.conf
            .push((sxx * syy - sxy * sxy).max(0.0) / (sxx + syy + 1e-6));
    }
    dgram.iter_mut().for_each(|d| *d /= nb.max(1) as f32);
    m.evidence.directogram = dgram;
    m.evidence.unexplained = res_sum / (tt_sum + 1e-6);
    m
}

/// The Lucas-Kanade window: for every plane of `blocks` (`bw * bh` each), the mean over the 3x3
/// blocks around each block (24x24 input pixels); at the edges, over the blocks that exist.
/// Separable: sums along rows, then along columns.
fn window_means(blocks: &[f32], out: &mut Vec<f32>, bw: usize, bh: usize) {
    let nb = bw * bh;
    out.clear();
    out.resize(blocks.len(), 0.0);
    // 1 / (blocks in the window), the same for every plane.
    let span = |i: usize, n: usize| ((i + 2).min(n) - i.saturating_sub(1)) as f32;
    let inv: Vec<f32> = (0..nb)
        .map(|i| 1.0 / (span(i % bw, bw) * span(i / bw, bh)))
        .collect();
    let mut rows = vec![0f32; nb];
    for (plane, dst) in blocks.chunks_exact(nb).zip(out.chunks_exact_mut(nb)) {
        for (src, r) in plane.chunks_exact(bw).zip(rows.chunks_exact_mut(bw)) {
            for x in 0..bw {
                let (x0, x1) = (x.saturating_sub(1), (x + 2).min(bw));
                r[x] = src[x0..x1].iter().sum::<f32>();
            }
        }
        for y in 0..bh {
            let (y0, y1) = (y.saturating_sub(1), (y + 2).min(bh));
            let d = &mut dst[y * bw..(y + 1) * bw];
            for yy in y0..y1 {
                for (o, r) in d.iter_mut().zip(&rows[yy * bw..(yy + 1) * bw]) {
                    *o += r;
                }
            }
            for (o, k) in d.iter_mut().zip(&inv[y * bw..(y + 1) * bw]) {
                *o *= k;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan with the convolutions on direct loops computes exactly what tract's own plan
    /// computes: every output of 12 frames of a moving, textured picture (sizes of the
    /// analysis: 160 wide, 16:9 and 4:3), the state carried from frame to frame, bit for bit.
    #[test]
    fn direct_convolutions_give_tracts_outputs_bit_for_bit() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models/extract/extract_v2.onnx");
        for (w, h) in [(160usize, 88usize), (160, 120)] {
            let plan = |direct: bool| {
                let mut m = tract_onnx::onnx().model_for_path(&path).unwrap();
                for (i, shape) in input_shapes(w as u32, h as u32).into_iter().enumerate() {
                    let dt = if i == 0 {
                        u8::datum_type()
                    } else {
                        f32::datum_type()
                    };
                    m.set_input_fact(i, InferenceFact::dt_shape(dt, shape))
                        .unwrap();
                }
                for i in 0..m.outputs.len() {
                    m.set_output_fact(i, InferenceFact::default()).unwrap();
                }
                let plan = optimise(m, direct).unwrap();
                if direct {
                    let ours = plan
                        .nodes
                        .iter()
                        .filter(|n| ["Conv3x3", "BoxSum2x2"].contains(&&*n.op().name()))
                        .count();
                    assert_eq!(ours, 4, "the four convolutions are replaced");
                }
                plan.into_runnable().unwrap()
            };
            let (ours, tracts) = (plan(true), plan(false));
            let shapes = input_shapes(w as u32, h as u32);
            let zero = |i: usize| Tensor::zero::<f32>(&shapes[i]).unwrap().into_tvalue();
            let mut state_a: Vec<TValue> = (1..7).map(zero).collect();
            let mut state_b = state_a.clone();
            for f in 0..12usize {
                let frame: Vec<u8> = (0..w * h)
                    .map(|i| {
                        let (x, y) = ((i % w + 3 * f) as f32, (i / w + f) as f32);
                        (128.0 + 60.0 * (x * 0.21).sin() * (y * 0.13).cos() + (i * 37 % 11) as f32)
                            as u8
                    })
                    .collect();
                let run = |plan: &Arc<TypedSimplePlan>, state: &[TValue]| {
                    let mut inputs: TVec<TValue> = tvec![Tensor::from_shape(&[1, 1, h, w], &frame)
                        .unwrap()
                        .into_tvalue()];
                    inputs.extend(state.iter().cloned());
                    plan.run(inputs).unwrap()
                };
                let (a, b) = (run(&ours, &state_a), run(&tracts, &state_b));
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    let bits = |t: &TValue| -> Vec<u32> {
                        t.to_plain_array_view::<f32>()
                            .unwrap()
                            .iter()
                            .map(|v| v.to_bits())
                            .collect()
                    };
                    assert_eq!(bits(x), bits(y), "{w}x{h} frame {f} output {i}");
                }
                state_a = STATE_FROM_OUTPUTS.iter().map(|&i| a[i].clone()).collect();
                state_b = STATE_FROM_OUTPUTS.iter().map(|&i| b[i].clone()).collect();
            }
        }
    }
}

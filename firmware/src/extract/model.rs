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
/// Length of the evidence vector (see [`Evidence`]).
const EVIDENCE_LEN: usize = 4 + DIRECTIONS + 2;

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
        let flow = vec(0)?;
        let ev = vec(3)?;
        if flow.len() != 2 * bw * bh || ev.len() != EVIDENCE_LEN {
            return Err(ExtractError::Inference {
                path: self.path.clone(),
                detail: format!(
                    "unexpected output sizes (flow {}, evidence {})",
                    flow.len(),
                    ev.len()
                ),
            });
        }
        let (dx, dy) = flow.split_at(bw * bh);
        let mut directogram = [0f32; DIRECTIONS];
        directogram.copy_from_slice(&ev[4..4 + DIRECTIONS]);
        Ok(PairMaps {
            bw,
            bh,
            dx: dx.to_vec(),
            dy: dy.to_vec(),
            conf: vec(1)?,
            unexplained: vec(2)?,
            thumb: vec(4)?,
            evidence: Evidence {
                mad: ev[0],
                hist: ev[1],
                structure: ev[2],
                unexplained: ev[3],
                directogram,
                luma_mean: ev[4 + DIRECTIONS],
                luma_sd: ev[5 + DIRECTIONS],
            },
        })
    }
}

//! The extraction model's two kinds of convolution, as ops of our own in tract's plan.
//!
//! The model (`models/extract/extract_v2.onnx`) has four convolutions, all tiny: the half-size
//! pyramid level is a `ConvInteger` of the u8 frame with a 2x2 kernel of ones at stride 2
//! (one output channel), and each pyramid level's map comes from a 3x3 f32 convolution of one
//! channel into three (gradients and the normalised luma), zero-padded by one. tract 0.23.9
//! runs each as an im2col and a matrix product whose tiles are mostly padding (3 or 1 output
//! rows on an 8-row tile, 4 or 9 products per output): at 160x128, 1.0 ms of a 1.4 ms frame
//! (`extract_ops`), where the arithmetic is 0.15 M multiply-adds.
//!
//! [`substitute`] replaces, before codegen, each such convolution by a direct loop:
//! [`BoxSum2x2`] gives the same i32 sums (integers are exact), and [`Conv3x3`] computes each
//! output as tract's f32 kernels do, one fused multiply-add per kernel tap in im2col order
//! (row, then column) from zero, padding taps included, so the outputs are the same bits.
//! Anything else stays tract's.

use std::sync::Arc;

use tract_onnx::tract_hir::tract_core;
use tract_onnx::tract_hir::tract_core::internal::*;
use tract_onnx::tract_hir::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec};
use tract_onnx::tract_hir::tract_core::ops::nn::DataFormat;

use crate::tractutil::{konst, konst_is};

/// Taps of a 3x3 kernel.
const TAPS: usize = 9;

/// A 2x2 stride-2 integer convolution of one u8 channel into one i32 channel (valid padding,
/// zero points 0): `out[y, x] = Σ w[i, j] · in[2y + i, 2x + j]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxSum2x2 {
    w: [i32; 4],
}

impl Op for BoxSum2x2 {
    fn name(&self) -> StaticName {
        "BoxSum2x2".into()
    }

    tract_core::op_as_typed_op!();
}

impl EvalOp for BoxSum2x2 {
    tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let &[1, 1, h, w] = input.shape() else {
            bail!("BoxSum2x2: input {:?}", input.shape());
        };
        let (oh, ow) = (h / 2, w / 2);
        let view = input.try_as_plain_ram()?;
        let src = view.as_slice::<u8>()?;
        let mut out = Tensor::zero::<i32>(&[1, 1, oh, ow])?;
        {
            let mut o = out.try_as_plain_ram_mut()?;
            let o = o.as_slice_mut::<i32>()?;
            for (y, row) in o.chunks_exact_mut(ow).enumerate() {
                let top = &src[2 * y * w..][..2 * ow];
                let bottom = &src[(2 * y + 1) * w..][..2 * ow];
                for (x, v) in row.iter_mut().enumerate() {
                    *v = self.w[0] * i32::from(top[2 * x])
                        + self.w[1] * i32::from(top[2 * x + 1])
                        + self.w[2] * i32::from(bottom[2 * x])
                        + self.w[3] * i32::from(bottom[2 * x + 1]);
                }
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for BoxSum2x2 {
    tract_core::as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let s = &inputs[0].shape;
        let half = |d: &TDim| d.to_usize().map(|v| TDim::from(v / 2));
        Ok(tvec!(i32::fact([
            s[0].clone(),
            s[1].clone(),
            half(&s[2])?,
            half(&s[3])?
        ])))
    }
}

/// A 3x3 f32 convolution of one channel into `kernel.len() / 9` channels, zero-padded by one,
/// stride 1, zero bias. Each output is a chain of fused multiply-adds over the nine taps in
/// row-major order, starting from zero (padding taps multiply a zero), as tract's kernels
/// compute it.
#[derive(Clone)]
pub struct Conv3x3 {
    kernel: Arc<Vec<f32>>,
}

impl std::fmt::Debug for Conv3x3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conv3x3(1 -> {})", self.kernel.len() / TAPS)
    }
}

impl PartialEq for Conv3x3 {
    fn eq(&self, other: &Self) -> bool {
        self.kernel == other.kernel
    }
}

impl Eq for Conv3x3 {}

impl Conv3x3 {
    /// The outputs of channel `taps` (its nine weights) for the zero-padded input `pad`
    /// (`(h + 2) x (w + 2)`) into `out` (`h x w`).
    fn channel(taps: &[f32], pad: &[f32], w: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has FMA (checked above).
            return unsafe { channel_fma(taps, pad, w, out) };
        }
        channel_plain(taps, pad, w, out)
    }
}

/// [`Conv3x3::channel`]'s loop. `mul_add` is one rounding whatever the instruction set, so
/// the vectorised builds below give the same bits.
#[inline(always)]
fn channel_body(taps: &[f32], pad: &[f32], w: usize, out: &mut [f32]) {
    let pw = w + 2;
    for (y, row) in out.chunks_exact_mut(w).enumerate() {
        row.fill(0.0);
        for (t, &k) in taps.iter().enumerate() {
            let src = &pad[(y + t / 3) * pw + t % 3..][..w];
            for (o, &v) in row.iter_mut().zip(src) {
                *o = k.mul_add(v, *o);
            }
        }
    }
}

fn channel_plain(taps: &[f32], pad: &[f32], w: usize, out: &mut [f32]) {
    channel_body(taps, pad, w, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn channel_fma(taps: &[f32], pad: &[f32], w: usize, out: &mut [f32]) {
    channel_body(taps, pad, w, out)
}

impl Op for Conv3x3 {
    fn name(&self) -> StaticName {
        "Conv3x3".into()
    }

    tract_core::op_as_typed_op!();
}

impl EvalOp for Conv3x3 {
    tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let &[1, 1, h, w] = input.shape() else {
            bail!("Conv3x3: input {:?}", input.shape());
        };
        let view = input.try_as_plain_ram()?;
        let src = view.as_slice::<f32>()?;
        let pw = w + 2;
        let mut pad = vec![0f32; (h + 2) * pw];
        for (y, row) in src.chunks_exact(w).enumerate() {
            pad[(y + 1) * pw + 1..][..w].copy_from_slice(row);
        }
        let channels = self.kernel.len() / TAPS;
        let mut out = Tensor::zero::<f32>(&[1, channels, h, w])?;
        {
            let mut o = out.try_as_plain_ram_mut()?;
            let o = o.as_slice_mut::<f32>()?;
            for (taps, plane) in self
                .kernel
                .chunks_exact(TAPS)
                .zip(o.chunks_exact_mut(h * w))
            {
                Self::channel(taps, &pad, w, plane);
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Conv3x3 {
    tract_core::as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let s = &inputs[0].shape;
        Ok(tvec!(f32::fact([
            s[0].clone(),
            (self.kernel.len() / TAPS).into(),
            s[2].clone(),
            s[3].clone()
        ])))
    }
}

/// The op replacing `conv` at `node`, if it is one of the two kinds above.
fn replacement(model: &TypedModel, node: &TypedNode, conv: &Conv) -> Option<Box<dyn TypedOp>> {
    let p = &conv.pool_spec;
    let input = model.outlet_fact(node.inputs[0]).ok()?;
    let plain = p.data_format == DataFormat::NCHW
        && conv.kernel_fmt == KernelFormat::OIHW
        && conv.group == 1
        && p.input_channels == 1
        && p.dilations
            .as_ref()
            .is_none_or(|d| d.iter().all(|&x| x == 1))
        && input.rank() == 4
        && input.shape[0] == 1.into()
        && input.shape[1] == 1.into();
    if !plain {
        return None;
    }
    let kernel = konst(model, node.inputs[1])?;
    let strides = p.strides.as_ref().map(|s| s.to_vec()).unwrap_or(vec![1, 1]);
    match conv.q_params {
        Some(DatumType::I32) => {
            let even = |d: &TDim| d.to_usize().is_ok_and(|v| v.is_multiple_of(2));
            let ok = p.kernel_shape.as_slice() == [2, 2]
                && strides == [2, 2]
                && p.padding == PaddingSpec::Valid
                && p.output_channels == 1
                && input.datum_type == DatumType::U8
                && kernel.datum_type() == DatumType::U8
                && even(&input.shape[2])
                && even(&input.shape[3])
                && node.inputs.len() == 9
                // bias, a0, a scale, b0, b scale, c0, c scale
                && [(2, 0.0), (3, 0.0), (4, 1.0), (5, 0.0), (6, 1.0), (7, 0.0), (8, 1.0)]
                    .iter()
                    .all(|&(i, v)| konst_is(model, node.inputs[i], v));
            if !ok {
                return None;
            }
            let k = kernel.try_as_plain_ram().ok()?;
            let k = k.as_slice::<u8>().ok()?;
            Some(Box::new(BoxSum2x2 {
                w: [k[0], k[1], k[2], k[3]].map(i32::from),
            }))
        }
        None => {
            let ok = p.kernel_shape.as_slice() == [3, 3]
                && strides == [1, 1]
                && p.padding == PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1])
                && input.datum_type == DatumType::F32
                && kernel.datum_type() == DatumType::F32
                && kernel.shape() == [p.output_channels, 1, 3, 3]
                && node.inputs.len() == 3
                && konst_is(model, node.inputs[2], 0.0);
            if !ok {
                return None;
            }
            let k = kernel.try_as_plain_ram().ok()?;
            Some(Box::new(Conv3x3 {
                kernel: Arc::new(k.as_slice::<f32>().ok()?.to_vec()),
            }))
        }
        _ => None,
    }
}

/// Replaces the model's convolutions of the two kinds above by [`BoxSum2x2`] and [`Conv3x3`];
/// returns how many.
pub fn substitute(model: &mut TypedModel) -> TractResult<usize> {
    let mut patch = TypedModelPatch::default();
    let mut replaced = 0;
    for node in &model.nodes {
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let Some(op) = replacement(model, node, conv) else {
            continue;
        };
        let input = patch.tap_model(model, node.inputs[0])?;
        let out = patch.wire_node(&node.name, op, &[input])?;
        patch.shunt_outside(model, node.id.into(), out[0])?;
        replaced += 1;
    }
    if replaced > 0 {
        patch.apply(model)?;
        model.compact()?;
    }
    Ok(replaced)
}

//! ONNX's `DynamicQuantizeLinear` (f32 → u8 with a scale and zero point from the values) as
//! an op of this crate in the note model's decoding plan: the same bits as tract-onnx's own
//! `DynamicQuantizeLinearU8`, in loops the compiler vectorises.
//!
//! Every linear layer of the int8 model quantises its input this way, 17 times a step. tract-
//! onnx 0.23.9 folds the range through an `ndarray` view and quantises value by value: 3.4 µs
//! a node on this machine, 58 µs (8 %) of a 0.71 ms step at P = 40 (`note_model_ops`).
//!
//! The arithmetic is tract-onnx's, step for step: the minimum and maximum folded from 0 (a
//! value replaces them only if strictly below or above, so NaN and −0 never do), scale =
//! (max − min) / 255, zero point = round_ties_even(−min / scale) clamped to [0, 255], and
//! each value round_ties_even(x / scale) + zero point, clamped to [0, 255] (a division, not
//! a multiplication by the reciprocal, which rounds some values the other way). The fold's
//! result does not depend on the order the values are visited in, so it runs in lanes.

use tract_onnx::tract_hir::tract_core;
use tract_onnx::tract_hir::tract_core::internal::*;

/// The name tract-onnx's op reports (`Op::name`), which [`substitute`] replaces.
const TRACT_ONNX_OP: &str = "DynamicQuantizeLinearU8";
/// Independent minimum/maximum accumulators of the fold (vector lanes).
const LANES: usize = 16;

/// u8 quantisation of an f32 tensor with a scale and zero point taken from its values: the
/// u8 tensor, the scale (an f32 scalar) and the zero point (a u8 scalar).
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct DynQuantU8;

/// The scale and zero point of `xs`, as tract-onnx computes them.
pub fn scale_and_zero_point(xs: &[f32]) -> (f32, u8) {
    let (mut lo, mut hi) = ([0f32; LANES], [0f32; LANES]);
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
        }
    }
    let (mut min, mut max) = (0f32, 0f32);
    for &v in lo.iter().chain(rest) {
        min = if v < min { v } else { min };
    }
    for &v in hi.iter().chain(rest) {
        max = if v > max { v } else { max };
    }
    let scale = (max - min) / f32::from(u8::MAX);
    let zero_point = (-min / scale)
        .round_ties_even()
        .max(f32::from(u8::MIN))
        .min(f32::from(u8::MAX));
    (scale, zero_point as u8)
}

/// `xs` quantised with `scale` and `zero_point` into `ys`, as tract-onnx does it.
pub fn quantise(xs: &[f32], scale: f32, zero_point: u8, ys: &mut [u8]) {
    let zp = i32::from(zero_point);
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = (((x / scale).round_ties_even() as i32) + zp)
            .clamp(i32::from(u8::MIN), i32::from(u8::MAX)) as u8;
    }
}

impl Op for DynQuantU8 {
    fn name(&self) -> StaticName {
        "DynQuantU8".into()
    }

    tract_core::op_as_typed_op!();
}

impl EvalOp for DynQuantU8 {
    tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let input = input.cast_to::<f32>()?;
        let view = input.try_as_plain_ram()?;
        let xs = view.as_slice::<f32>()?;
        let (scale, zero_point) = scale_and_zero_point(xs);
        // SAFETY: `quantise` writes every element.
        let mut out = unsafe { Tensor::uninitialized::<u8>(input.shape())? };
        {
            let mut o = out.try_as_plain_ram_mut()?;
            quantise(xs, scale, zero_point, o.as_slice_mut::<u8>()?);
        }
        Ok(tvec!(
            out.into_tvalue(),
            tensor0(scale).into_tvalue(),
            tensor0(zero_point).into_tvalue()
        ))
    }
}

impl TypedOp for DynQuantU8 {
    tract_core::as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let q = u8::fact(inputs[0].shape.clone());
        Ok(tvec!(q, f32::scalar_fact(), u8::scalar_fact()))
    }
}

/// Replaces every tract-onnx `DynamicQuantizeLinearU8` of `model` by a [`DynQuantU8`];
/// returns how many.
pub fn substitute(model: &mut TypedModel) -> TractResult<usize> {
    let mut patch = TypedModelPatch::default();
    let mut replaced = 0;
    for node in &model.nodes {
        if node.op.name() != TRACT_ONNX_OP || node.inputs.len() != 1 || node.outputs.len() != 3 {
            continue;
        }
        if model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type() {
            continue;
        }
        let input = patch.tap_model(model, node.inputs[0])?;
        let outs = patch.wire_node(&node.name, DynQuantU8, &[input])?;
        for (slot, out) in outs.iter().enumerate() {
            patch.shunt_outside(model, OutletId::new(node.id, slot), *out)?;
        }
        replaced += 1;
    }
    if replaced > 0 {
        patch.apply(model)?;
        model.compact()?;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ONNX's own examples of DynamicQuantizeLinear (its operator documentation), and an all
    /// zero input (scale 0).
    #[test]
    fn it_quantises_as_onnx_specifies() {
        let cases: [(&[f32], f32, u8, &[u8]); 3] = [
            (
                &[0., 2., -3., -2.5, 1.34, 0.5],
                0.019_607_844,
                153,
                &[153, 255, 0, 26, 221, 179],
            ),
            (
                &[-1., -2.1, -1.3, -2.5, -3.34, -4.],
                0.015_686_275,
                255,
                &[191, 121, 172, 96, 42, 0],
            ),
            (
                &[1., 2.1, 1.3, 2.5, 3.34, 4., 1.5, 2.6, 3.9, 4., 3., 2.345],
                0.015_686_275,
                0,
                &[64, 134, 83, 159, 213, 255, 96, 166, 249, 255, 191, 149],
            ),
        ];
        for (xs, scale, zp, want) in cases {
            let (s, z) = scale_and_zero_point(xs);
            assert!((s - scale).abs() < 1e-8, "{xs:?}: scale {s}");
            assert_eq!(z, zp, "{xs:?}");
            let mut got = vec![0u8; xs.len()];
            quantise(xs, s, z, &mut got);
            assert_eq!(got, want, "{xs:?}");
        }
        assert_eq!(scale_and_zero_point(&[0.0; 40]), (0.0, 0));
    }
}

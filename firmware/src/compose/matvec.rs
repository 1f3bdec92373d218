//! The note model's int8 products for one token, as an op of our own in tract's decoding plan.
//!
//! Each linear layer of the int8 model is `DynamicQuantizeLinear` → `MatMulInteger` (u8
//! activations, constant i8 weights, zero weight zero point) → `Cast` → `Mul` by the scales,
//! and tract keeps that form (an `EinSum` with quantisation inputs giving i32). A decoding
//! step multiplies one row of activations by each weight matrix. tract-linalg 0.23.9 has no
//! int8 kernel for one row on x86-64: it runs its AMX 16x16 (or VNNI 8x8) tile with one useful
//! column, 45 % of a step on this machine (`note_model_ops`: the int8 products take 0.43 ms of
//! a 0.9 ms step at P = 100, while onnxruntime runs the whole step in 0.31 ms).
//!
//! [`substitute`] replaces each such `EinSum` whose rows are fixed at one by [`QMatVec`]:
//! the same integer products, Σ (a − a₀)·b in i32, by AVX-512 VNNI `vpdpbusd` over weights
//! packed once at load in the order the kernel reads them. Integer sums are exact, so every
//! output of the model is the same bits as with tract's kernels (the `Cast` and the scale
//! `Mul` after it are tract's own, unchanged). Where the CPU lacks AVX-512 VNNI (and on
//! aarch64, where tract has a one-row int8 kernel: the board's CPU) nothing is replaced.

use std::sync::Arc;

use tract_onnx::tract_hir::tract_core;
use tract_onnx::tract_hir::tract_core::internal::*;
use tract_onnx::tract_hir::tract_core::ops::einsum::EinSum;

use crate::tractutil::konst_is;

/// Output columns per block: one 512-bit register of i32 sums.
const BLOCK: usize = 16;
/// Blocks a pass of the kernel keeps in registers (independent sums hide `vpdpbusd`'s
/// latency); weight columns are padded with zeros to a multiple of `BLOCK * GROUP`.
const GROUP: usize = 4;
/// Inner-dimension values one `vpdpbusd` lane sums.
const K_STEP: usize = 4;
/// The `EinSum` expressions (tract's `Display`) of the model's quantised products: batched
/// (the layers) and plain (the output heads). The nine inputs: A, B, bias, A₀, A scale, B₀,
/// B scale, C₀, C scale.
const QUANTISED_MATMULS: [&str; 2] = ["amk,akn,,,,,,,->amn", "mk,kn,,,,,,,->mn"];

/// Constant i8 weights `[K, N]`, packed for the kernel: for each group of `GROUP` blocks of
/// `BLOCK` columns, for each `K_STEP` rows, the blocks' 64 bytes (lane j: the `K_STEP`
/// weights of column j, in row order).
#[derive(Debug)]
struct Packed {
    k: usize,
    n: usize,
    groups: usize,
    bytes: Vec<u8>,
    /// Σ_k b[k, n], for the activations' zero point.
    colsum: Vec<i32>,
}

impl Packed {
    fn new(b: &[i8], k: usize, n: usize) -> Self {
        let width = BLOCK * GROUP;
        let groups = n.div_ceil(width);
        // Row by row (the weights are read in order; the packed bytes of a row are K_STEP
        // apart): a 4 MB model packs in a few ms, where column-major reads took ~20 ms of load.
        let mut bytes = vec![0u8; groups * k * width];
        let mut colsum = vec![0i32; n];
        for (kk, row) in b.chunks_exact(n).enumerate() {
            let (step, lane) = (kk / K_STEP, kk % K_STEP);
            for (g, cols) in row.chunks(width).enumerate() {
                let base = (g * k + step * K_STEP) * width + lane;
                for (j, &w) in cols.iter().enumerate() {
                    bytes[base + j * K_STEP] = w as u8;
                }
            }
            for (s, &w) in colsum.iter_mut().zip(row) {
                *s += i32::from(w);
            }
        }
        Packed {
            k,
            n,
            groups,
            bytes,
            colsum,
        }
    }

    /// out[n] = Σ_k (a[k] − a0) · b[k, n], for one row `a` of `k` values.
    fn row(&self, a: &[u8], a0: u8, out: &mut [i32]) {
        debug_assert!(a.len() == self.k && out.len() == self.n);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `substitute` makes a QMatVec only where the CPU has these features.
        unsafe {
            self.row_vnni(a, a0, out)
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.row_portable(a, a0, out)
    }

    /// [`Packed::row`] in plain Rust (the reference of the tests, and other CPUs).
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    fn row_portable(&self, a: &[u8], a0: u8, out: &mut [i32]) {
        let width = BLOCK * GROUP;
        let mut sums = vec![0i32; width];
        for g in 0..self.groups {
            sums.fill(0);
            let panel = &self.bytes[g * self.k * width..(g + 1) * self.k * width];
            for (s, chunk) in panel.chunks_exact(width * K_STEP).enumerate() {
                let av = &a[s * K_STEP..(s + 1) * K_STEP];
                for (j, w) in chunk.chunks_exact(K_STEP).enumerate() {
                    sums[j] += av
                        .iter()
                        .zip(w)
                        .map(|(&x, &y)| i32::from(x) * i32::from(y as i8))
                        .sum::<i32>();
                }
            }
            for (j, s) in sums.iter().enumerate() {
                let col = g * width + j;
                if col < self.n {
                    out[col] = s - i32::from(a0) * self.colsum[col];
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn row_vnni(&self, a: &[u8], a0: u8, out: &mut [i32]) {
        use std::arch::x86_64::*;
        let width = BLOCK * GROUP;
        let steps = self.k / K_STEP;
        let zp = _mm512_set1_epi32(i32::from(a0));
        let mut p = self.bytes.as_ptr() as *const __m512i;
        for g in 0..self.groups {
            let mut s0 = _mm512_setzero_si512();
            let mut s1 = _mm512_setzero_si512();
            let mut s2 = _mm512_setzero_si512();
            let mut s3 = _mm512_setzero_si512();
            for s in 0..steps {
                let av = _mm512_set1_epi32(i32::from_le_bytes([
                    a[s * K_STEP],
                    a[s * K_STEP + 1],
                    a[s * K_STEP + 2],
                    a[s * K_STEP + 3],
                ]));
                s0 = _mm512_dpbusd_epi32(s0, av, _mm512_loadu_si512(p));
                s1 = _mm512_dpbusd_epi32(s1, av, _mm512_loadu_si512(p.add(1)));
                s2 = _mm512_dpbusd_epi32(s2, av, _mm512_loadu_si512(p.add(2)));
                s3 = _mm512_dpbusd_epi32(s3, av, _mm512_loadu_si512(p.add(3)));
                p = p.add(GROUP);
            }
            for (b, s) in [s0, s1, s2, s3].into_iter().enumerate() {
                let col = g * width + b * BLOCK;
                if col >= self.n {
                    break;
                }
                let live = (self.n - col).min(BLOCK);
                let mask: __mmask16 = if live == BLOCK {
                    0xffff
                } else {
                    (1u16 << live) - 1
                };
                let cs = _mm512_maskz_loadu_epi32(mask, self.colsum.as_ptr().add(col));
                let r = _mm512_sub_epi32(s, _mm512_mullo_epi32(zp, cs));
                _mm512_mask_storeu_epi32(out.as_mut_ptr().add(col), mask, r);
            }
        }
    }
}

/// Whether this CPU runs [`QMatVec`]'s kernel.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Σ_k (a − a₀)·b of u8 activations `[.., M, K]` and constant i8 weights `[K, N]`, in i32:
/// inputs a and its zero point a₀ (a u8 scalar).
#[derive(Clone)]
pub struct QMatVec {
    packed: Arc<Packed>,
}

impl std::fmt::Debug for QMatVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QMatVec({}x{} i8)", self.packed.k, self.packed.n)
    }
}

impl PartialEq for QMatVec {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.packed, &other.packed)
    }
}

impl Eq for QMatVec {}

impl Op for QMatVec {
    fn name(&self) -> StaticName {
        "QMatVec".into()
    }

    tract_core::op_as_typed_op!();
}

impl EvalOp for QMatVec {
    tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, a0) = args_2!(inputs);
        let a0 = *a0.try_as_plain_ram()?.to_scalar::<u8>()?;
        let (k, n) = (self.packed.k, self.packed.n);
        let mut shape: TVec<usize> = a.shape().into();
        ensure!(
            shape.last() == Some(&k),
            "QMatVec: input {:?}, K = {k}",
            a.shape()
        );
        *shape.last_mut().expect("checked above") = n;
        let rows = a.len() / k;
        let view = a.try_as_plain_ram()?;
        let a = view.as_slice::<u8>()?;
        // SAFETY: every element is written below (each row writes its n sums).
        let mut out = unsafe { Tensor::uninitialized::<i32>(&shape)? };
        {
            let mut o = out.try_as_plain_ram_mut()?;
            let o = o.as_slice_mut::<i32>()?;
            for r in 0..rows {
                self.packed
                    .row(&a[r * k..(r + 1) * k], a0, &mut o[r * n..(r + 1) * n]);
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for QMatVec {
    tract_core::as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape = inputs[0].shape.to_tvec();
        *shape.last_mut().context("QMatVec: a scalar input")? = self.packed.n.into();
        Ok(tvec!(i32::fact(shape)))
    }
}

/// Replaces every quantised product of `model` whose activations have one row and whose
/// weights are constant (zero point 0, no bias, unit scales) by a [`QMatVec`]; returns how
/// many. Nothing is replaced where the CPU lacks the kernel's features.
pub fn substitute(model: &mut TypedModel) -> TractResult<usize> {
    if !supported() {
        return Ok(0);
    }
    let mut patch = TypedModelPatch::default();
    let mut replaced = 0;
    for node in &model.nodes {
        let Some(op) = node.op_as::<EinSum>() else {
            continue;
        };
        if op.q_params != Some(DatumType::I32)
            || !QUANTISED_MATMULS.contains(&op.axes.to_string().as_str())
            || node.inputs.len() != 9
        {
            continue;
        }
        let a = model.outlet_fact(node.inputs[0])?;
        let b = model.outlet_fact(node.inputs[1])?;
        let Some(w) = b.konst.clone() else { continue };
        let rank = a.rank();
        if a.datum_type != DatumType::U8
            || w.datum_type() != DatumType::I8
            || rank < 2
            || a.shape[rank - 2] != 1.into()
            || w.shape().iter().rev().skip(2).any(|&d| d != 1)
            || w.rank() < 2
        {
            continue;
        }
        let (k, n) = (w.shape()[w.rank() - 2], w.shape()[w.rank() - 1]);
        let unit = [(2, 0.0), (4, 1.0), (5, 0.0), (6, 1.0), (7, 0.0), (8, 1.0)];
        if a.shape[rank - 1] != k.into()
            || !k.is_multiple_of(K_STEP)
            || !unit
                .iter()
                .all(|&(i, v)| konst_is(model, node.inputs[i], v))
        {
            continue;
        }
        let view = w.try_as_plain_ram()?;
        let packed = Arc::new(Packed::new(view.as_slice::<i8>()?, k, n));
        let a_in = patch.tap_model(model, node.inputs[0])?;
        let a0_in = patch.tap_model(model, node.inputs[3])?;
        let out = patch.wire_node(&node.name, QMatVec { packed }, &[a_in, a0_in])?;
        patch.shunt_outside(model, node.id.into(), out[0])?;
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

    fn weights(k: usize, n: usize, seed: u64) -> Vec<i8> {
        let mut x = seed;
        (0..k * n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 56) as u8 as i8
            })
            .collect()
    }

    /// The kernel gives the exact integer products, for sizes that fill its blocks and for
    /// the output heads' 571 columns (a partial block), with any zero point.
    #[test]
    fn the_kernel_gives_the_exact_products() {
        for (k, n) in [(256, 768), (1024, 256), (256, 571), (8, 3)] {
            let b = weights(k, n, k as u64 * 31 + n as u64);
            let a: Vec<u8> = (0..k).map(|i| (i * 37 % 256) as u8).collect();
            let p = Packed::new(&b, k, n);
            for a0 in [0u8, 1, 128, 255] {
                let want: Vec<i32> = (0..n)
                    .map(|c| {
                        (0..k)
                            .map(|r| (i32::from(a[r]) - i32::from(a0)) * i32::from(b[r * n + c]))
                            .sum()
                    })
                    .collect();
                let mut got = vec![i32::MIN; n];
                p.row_portable(&a, a0, &mut got);
                assert_eq!(got, want, "portable {k}x{n} a0 {a0}");
                if supported() {
                    let mut got = vec![i32::MIN; n];
                    p.row(&a, a0, &mut got);
                    assert_eq!(got, want, "vnni {k}x{n} a0 {a0}");
                }
            }
        }
    }
}

//! The int8 ONNX note model run by tract, one compound token per step with an explicit KV cache.
//!
//! Graph (written by `tools/train/notes/export.py`):
//! inputs `token` i64 `[1, T, N_FIELDS]` (T = 1 decoding, T > 1 refilling the cache) and the
//! KV cache as one tensor per layer and kind, `past_k0, past_v0, past_k1, ...` f32, the keys
//! `[1, heads, P, head_dim]` and the values as rows, `[1, heads, head_dim, P]`; outputs the next
//! token's logits per field (`family`, `pos`, `pitch` `[tracks, 128]`, `duration`,
//! `note_strength`, `track`) and `present_k0, present_v0, ...` (the caches with P + T entries,
//! in the same layouts). Separate tensors per layer make a decoding step copy the cache once
//! (the concatenation in each layer) instead of also slicing it out of one stacked tensor and
//! stacking it again: about a third of onnxruntime's step time at this size. The values as rows
//! (`tools/train/notes/v_cache_rows.py`) are what the values' product takes: stored the other
//! way, tract transposed the whole value cache at every step, a copy of it per layer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;

use super::vocab::{
    Token, FIELD_SIZES, MAX_DUR16, NOTE_STRENGTH_CLASSES, N_FAMILIES, N_FIELDS, N_PITCH, N_TRACKS,
    STEPS_PER_BAR,
};
use super::ComposeError;
use super::{dynquant, matvec};
use crate::music::DENSITY_CLASSES;

/// File name of the machine-readable model card next to the model.
pub const CARD_FILE: &str = "model.json";

/// tract's declutter passes run on the decoding plan before its codegen: constant
/// propagation and each op's own simplifications. The others (axis changes, slice and split
/// pushing, uniform-value and region propagation, concat-then-einsum) take half the CPU of
/// `into_optimized` on this graph and give a step little speed: on an idle core, load
/// 0.157 s → 0.088 s, a step 0.67 → 0.71 ms (medians of 4, 240 steps each). The decoding
/// plan is on the critical path of a short clip's `score`, where this is worth the most;
/// its logits are bit-identical. The refill plan keeps every pass (with fewer, its cache
/// differs in the last bits and so does the music after a window restart).
const DECLUTTER_PASSES: [&str; 2] = ["PropConst", "declutter"];

/// `model` decluttered by [`DECLUTTER_PASSES`] only, then code-generated, as
/// `TypedModel::into_optimized` does with all of them.
fn optimise(mut model: TypedModel) -> TractResult<TypedModel> {
    use tract_onnx::tract_hir::tract_core::optim::Optimizer;
    let mut declutter = Optimizer::declutter();
    declutter.passes.retain(|p| is_kept_pass(&format!("{p:?}")));
    declutter.optimize(&mut model)?;
    let quantisers = dynquant::substitute(&mut model)?;
    let replaced = matvec::substitute(&mut model)?;
    tracing::debug!(
        quantisers,
        replaced,
        "activation quantisers and int8 one-row products on undertone's ops"
    );
    Optimizer::codegen().optimize(&mut model)?;
    Ok(model)
}

/// Whether a pass, by its `Debug` name (`PropConst(0)`, `declutter`), is one of
/// [`DECLUTTER_PASSES`].
fn is_kept_pass(name: &str) -> bool {
    DECLUTTER_PASSES
        .iter()
        .any(|k| name == *k || name.strip_prefix(k).is_some_and(|r| r.starts_with('(')))
}

/// The machine-readable part of the model card (`models/notes/model.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct ModelCard {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Longest KV cache the model was trained for (tokens).
    pub max_len: usize,
    pub n_fields: usize,
    pub field_sizes: Vec<usize>,
    pub outputs: Vec<String>,
    /// Most notes per bar of each density class but the last (the corpus octiles).
    pub density_edges: Vec<f64>,
}

/// Time spent in one kind of op over a profile's steps ([`NoteModel::profile_ops`]).
#[derive(Debug, Clone)]
pub struct OpTime {
    /// tract's name of the op (`OptMatMul`, `Concat`, ...).
    pub op: String,
    /// Seconds over all the steps.
    pub seconds: f64,
    /// Nodes of this kind in the plan.
    pub nodes: usize,
}

/// Shape of KV-cache tensor `i` (keys of a layer, then its values) holding `p` entries:
/// keys `[1, heads, P, head_dim]`, values `[1, heads, head_dim, P]`.
fn cache_shape(card: &ModelCard, i: usize, p: usize) -> [usize; 4] {
    if i.is_multiple_of(2) {
        [1, card.heads, p, card.head_dim]
    } else {
        [1, card.heads, card.head_dim, p]
    }
}

/// Name of the graph's symbolic token-count dimension (the export's `Dim("tokens")`).
const TOKENS_DIM: &str = "tokens";

/// Names of the logits outputs, in graph order.
const OUTPUTS: [&str; 6] = [
    "family",
    "pos",
    "pitch",
    "duration",
    "note_strength",
    "track",
];

/// The KV cache: `2 x layers` tensors, the keys (`[1, heads, P, head_dim]`) then the values
/// (`[1, heads, head_dim, P]`) of each layer.
pub type Past = TVec<TValue>;

/// Logits of the next token's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    pub family: Vec<f32>,
    pub pos: Vec<f32>,
    /// `N_TRACKS` rows of `N_PITCH`, row-major.
    pub pitch: Vec<f32>,
    pub duration: Vec<f32>,
    pub note_strength: Vec<f32>,
    pub track: Vec<f32>,
}

impl Logits {
    /// The logits in output order, each flattened (for comparisons with reference vectors).
    pub fn fields(&self) -> [&[f32]; 6] {
        [
            &self.family,
            &self.pos,
            &self.pitch,
            &self.duration,
            &self.note_strength,
            &self.track,
        ]
    }
}

/// The loaded, checked, optimised model.
pub struct NoteModel {
    /// Kept between steps: tract reuses its buffers instead of allocating a new state per token.
    state: TypedSimpleState,
    /// The same graph with a symbolic token count, to refill the cache in one call: one plan
    /// shared with this model's siblings ([`NoteModel::sibling`]), built once.
    refill: Arc<Mutex<Refill>>,
    /// This model's own state of the refill plan, once it is used.
    refill_state: Option<TypedSimpleState>,
    card: ModelCard,
    path: PathBuf,
}

impl std::fmt::Debug for NoteModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteModel")
            .field("path", &self.path)
            .field("card", &self.card)
            .finish()
    }
}

/// The refill plan. Optimising it costs as much as the decode plan, and it is first needed
/// at the first window restart, bars into a piece: it is built on a thread of its own once
/// a piece starts ([`NoteModel::prepare_refill`]), so loading returns as soon as decoding can
/// start and, in `score`, the optimisation runs on the core the note model leaves free
/// instead of beside the video decoders.
enum Refill {
    Unbuilt(Box<TypedModel>),
    Building(std::thread::JoinHandle<Result<Arc<TypedSimplePlan>, String>>),
    Ready(Arc<TypedSimplePlan>),
    Failed(String),
}

fn shape_err(path: &Path, msg: impl Into<String>) -> ComposeError {
    ComposeError::ModelShape {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

impl NoteModel {
    /// Loads `path`, checks its size and sha256 against `model.json` beside it, checks the
    /// vocabulary and graph shapes, and optimises it for tract.
    pub fn load(path: &Path) -> Result<Self, ComposeError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ComposeError::ModelMissing {
            path: shown.clone(),
            source,
        })?;
        let card_path = path.with_file_name(CARD_FILE);
        let card_shown = card_path.display().to_string();
        let card_text =
            std::fs::read_to_string(&card_path).map_err(|e| ComposeError::CardInvalid {
                path: card_shown.clone(),
                msg: e.to_string(),
            })?;
        let card: ModelCard =
            serde_json::from_str(&card_text).map_err(|e| ComposeError::CardInvalid {
                path: card_shown.clone(),
                msg: e.to_string(),
            })?;
        let found = hex::encode(Sha256::digest(&bytes));
        if found != card.sha256 || bytes.len() as u64 != card.bytes {
            return Err(ComposeError::Checksum {
                path: shown,
                card: card_shown,
                found,
                found_bytes: bytes.len() as u64,
                expected: card.sha256.clone(),
                expected_bytes: card.bytes,
            });
        }
        if card.n_fields != N_FIELDS || card.field_sizes != FIELD_SIZES {
            return Err(shape_err(
                path,
                format!(
                    "its card lists fields {:?}, this firmware speaks {:?}",
                    card.field_sizes, FIELD_SIZES
                ),
            ));
        }
        if card.density_edges.len() != usize::from(DENSITY_CLASSES) - 1 {
            return Err(shape_err(
                path,
                format!(
                    "its card has {} density edges, this firmware has {} classes",
                    card.density_edges.len(),
                    DENSITY_CLASSES
                ),
            ));
        }
        if card.outputs != OUTPUTS {
            return Err(shape_err(
                path,
                format!("outputs {:?}, expected {:?}", card.outputs, OUTPUTS),
            ));
        }
        let invalid = |e: TractError| ComposeError::ModelInvalid {
            path: shown.clone(),
            msg: format!("{e:#}"),
        };
        let t = std::time::Instant::now();
        let model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(&bytes))
            .map_err(invalid)?;
        tracing::debug!(seconds = t.elapsed().as_secs_f64(), "note model parsed");
        // Two plans from the same graph: decoding with the token count fixed at 1 (tract picks
        // kernels for that exact shape), and refilling the cache with a symbolic token count.
        let model = model.into_typed().map_err(invalid)?;
        let tokens = model.symbols.sym(TOKENS_DIM);
        let typed = model
            .set_symbols(&HashMap::from([(tokens, TDim::Val(1))]))
            .map_err(invalid)?;
        Self::check_graph(path, &typed, &card)?;
        tracing::debug!(seconds = t.elapsed().as_secs_f64(), "note model typed");
        let plan = optimise(typed)
            .map_err(invalid)?
            .into_runnable()
            .map_err(invalid)?;
        let state = plan.spawn().map_err(invalid)?;
        let refill = Arc::new(Mutex::new(Refill::Unbuilt(Box::new(model))));
        tracing::info!(model = %shown, layers = card.layers, heads = card.heads, "note model loaded");
        Ok(NoteModel {
            state,
            refill,
            refill_state: None,
            card,
            path: path.to_path_buf(),
        })
    }

    /// Another runner of the same optimised plans (decoding and refilling), with state of its
    /// own: two siblings can write two parts of a piece on two threads at once. Costs no
    /// optimisation, only the new state's buffers.
    pub fn sibling(&self) -> Result<Self, ComposeError> {
        let state =
            TypedSimpleState::new(self.state.plan()).map_err(|e| ComposeError::ModelInvalid {
                path: self.path.display().to_string(),
                msg: format!("{e:#}"),
            })?;
        Ok(NoteModel {
            state,
            refill: Arc::clone(&self.refill),
            refill_state: None,
            card: self.card.clone(),
            path: self.path.clone(),
        })
    }

    fn check_graph(path: &Path, model: &TypedModel, card: &ModelCard) -> Result<(), ComposeError> {
        let n_past = 2 * card.layers;
        if model.inputs.len() != 1 + n_past || model.outputs.len() != OUTPUTS.len() + n_past {
            return Err(shape_err(
                path,
                format!(
                    "{} inputs and {} outputs, expected the token and {} KV-cache (past) inputs, \
                     and {} logits and {} cache outputs, for the {} layers its card lists",
                    model.inputs.len(),
                    model.outputs.len(),
                    n_past,
                    OUTPUTS.len(),
                    n_past,
                    card.layers
                ),
            ));
        }
        let fact = |o: OutletId| {
            model
                .outlet_fact(o)
                .map_err(|e| shape_err(path, e.to_string()))
        };
        let tok = fact(model.inputs[0])?;
        let want_tok: TVec<TDim> = tvec![1.into(), 1.into(), (N_FIELDS as i64).into()];
        if tok.datum_type != i64::datum_type() || tok.shape.to_tvec() != want_tok {
            return Err(shape_err(
                path,
                format!("input token is {tok:?}, expected i64 [1, 1, {N_FIELDS}]"),
            ));
        }
        for i in 0..n_past {
            let past = fact(model.inputs[1 + i])?;
            let dims = past.shape.to_tvec();
            // keys [1, heads, P, head_dim], values [1, heads, head_dim, P]
            let (p_axis, d_axis) = if i.is_multiple_of(2) { (2, 3) } else { (3, 2) };
            let ok = dims.len() == 4
                && dims[0] == TDim::from(1)
                && dims[1] == TDim::from(card.heads as i64)
                && dims[d_axis] == TDim::from(card.head_dim as i64)
                && dims[p_axis].as_i64().is_none();
            if past.datum_type != f32::datum_type() || !ok {
                return Err(shape_err(
                    path,
                    format!(
                        "cache input {} (past) is {past:?}, expected f32 {} with a symbolic P",
                        1 + i,
                        if i.is_multiple_of(2) {
                            format!("[1, {}, P, {}]", card.heads, card.head_dim)
                        } else {
                            format!("[1, {}, {}, P]", card.heads, card.head_dim)
                        }
                    ),
                ));
            }
        }
        let sizes = [
            N_FAMILIES,
            STEPS_PER_BAR,
            N_TRACKS * N_PITCH,
            MAX_DUR16,
            NOTE_STRENGTH_CLASSES,
            N_TRACKS,
        ];
        for (i, (name, want)) in OUTPUTS.iter().zip(sizes).enumerate() {
            let f = fact(model.outputs[i])?;
            let n: Option<i64> = f.shape.iter().map(|d| d.as_i64()).product();
            if n != Some(want as i64) {
                return Err(shape_err(
                    path,
                    format!("output {name} is {f:?}, expected {want} logits"),
                ));
            }
        }
        Ok(())
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An empty KV cache (P = 0).
    pub fn empty_past(&self) -> Past {
        let c = &self.card;
        (0..2 * c.layers)
            .map(|i| {
                Tensor::zero::<f32>(&cache_shape(c, i, 0))
                    .expect("zero-sized tensor")
                    .into_tvalue()
            })
            .collect()
    }

    /// Entries in a KV cache.
    pub fn past_len(past: &[TValue]) -> usize {
        past.first().map_or(0, |t| t.shape()[2])
    }

    /// Feeds one token after `past`; returns the next token's logits and the grown cache.
    pub fn step(&mut self, token: &Token, past: Past) -> Result<(Logits, Past), ComposeError> {
        self.run(std::slice::from_ref(token), past, false)
    }

    /// Feeds `tokens` into an empty cache in one call (a window restart); returns the logits
    /// after the last one and the cache holding all of them.
    pub fn refill(&mut self, tokens: &[Token]) -> Result<(Logits, Past), ComposeError> {
        let past = self.empty_past();
        self.run(tokens, past, true)
    }

    /// Where a decoding step's time goes: runs `steps` one-token steps of the decoding plan
    /// after a cache of `past` entries (zeros) and returns, per kind of op, the total
    /// seconds and the number of nodes, longest first. For benchmarks
    /// (`firmware/examples/note_model_ops.rs`), not the music: the cache is not grown.
    pub fn profile_ops(&mut self, past: usize, steps: usize) -> Result<Vec<OpTime>, ComposeError> {
        let c = &self.card;
        let cache: Past = (0..2 * c.layers)
            .map(|i| {
                Tensor::zero::<f32>(&cache_shape(c, i, past))
                    .expect("zero tensor")
                    .into_tvalue()
            })
            .collect();
        let path = self.path.display().to_string();
        let err = |e: TractError| ComposeError::Inference {
            path: path.clone(),
            step: past,
            msg: format!("{e:#}"),
        };
        let mut by_op: HashMap<String, (f64, usize)> = HashMap::new();
        for _ in 0..steps {
            let tok = Tensor::from_shape::<i64>(&[1, 1, N_FIELDS], &[0; N_FIELDS]).map_err(err)?;
            let mut inputs: TVec<TValue> = tvec![tok.into_tvalue()];
            inputs.extend(cache.iter().cloned());
            self.state
                .run_plan_with_eval(inputs, |ctx, op_state, node, inputs| {
                    let t = std::time::Instant::now();
                    let r =
                        tract_onnx::tract_hir::tract_core::plan::eval(ctx, op_state, node, inputs);
                    let e = by_op.entry(node.op().name().to_string()).or_default();
                    e.0 += t.elapsed().as_secs_f64();
                    e.1 += 1;
                    r
                })
                .map_err(err)?;
        }
        let mut ops: Vec<OpTime> = by_op
            .into_iter()
            .map(|(op, (seconds, n))| OpTime {
                op,
                seconds,
                nodes: n / steps.max(1),
            })
            .collect();
        ops.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        Ok(ops)
    }

    /// Starts optimising the refill plan on a thread of its own, if that has not begun (by
    /// this model or a sibling).
    pub fn prepare_refill(&mut self) {
        let mut refill = self.refill.lock().expect("refill plan lock");
        if !matches!(*refill, Refill::Unbuilt(_)) {
            return;
        }
        let Refill::Unbuilt(model) = std::mem::replace(&mut *refill, Refill::Failed(String::new()))
        else {
            unreachable!("checked above")
        };
        let build = move || -> TractResult<Arc<TypedSimplePlan>> {
            model.into_optimized()?.into_runnable()
        };
        *refill = std::thread::Builder::new()
            .name("refill-plan".into())
            .spawn(move || build().map_err(|e| format!("{e:#}")))
            .map_or_else(|e| Refill::Failed(e.to_string()), Refill::Building);
    }

    /// This model's state of the refill plan, waiting for the plan's thread the first time.
    fn refill_state(&mut self) -> Result<&mut TypedSimpleState, ComposeError> {
        if self.refill_state.is_none() {
            self.prepare_refill();
            let mut refill = self.refill.lock().expect("refill plan lock");
            if matches!(*refill, Refill::Building(_)) {
                let Refill::Building(h) =
                    std::mem::replace(&mut *refill, Refill::Failed(String::new()))
                else {
                    unreachable!("checked above")
                };
                *refill = match h.join() {
                    Ok(Ok(plan)) => Refill::Ready(plan),
                    Ok(Err(msg)) => Refill::Failed(msg),
                    Err(_) => Refill::Failed("the thread optimising it panicked".into()),
                };
            }
            let state = match &*refill {
                Refill::Ready(plan) => plan.spawn().map_err(|e| format!("{e:#}")),
                Refill::Failed(msg) => Err(msg.clone()),
                Refill::Building(_) | Refill::Unbuilt(_) => unreachable!("built above"),
            };
            drop(refill);
            self.refill_state = Some(state.map_err(|msg| ComposeError::ModelInvalid {
                path: self.path.display().to_string(),
                msg: format!("its refill plan: {msg}"),
            })?);
        }
        Ok(self.refill_state.as_mut().expect("set above"))
    }

    fn run(
        &mut self,
        tokens: &[Token],
        past: Past,
        refill: bool,
    ) -> Result<(Logits, Past), ComposeError> {
        let step = Self::past_len(&past);
        if refill {
            self.refill_state()?;
        }
        let NoteModel {
            state,
            refill_state,
            path,
            ..
        } = self;
        let err = |e: TractError| ComposeError::Inference {
            path: path.display().to_string(),
            step,
            msg: format!("{e:#}"),
        };
        let flat: Vec<i64> = tokens.iter().flatten().copied().collect();
        let tok = Tensor::from_shape::<i64>(&[1, tokens.len(), N_FIELDS], &flat).map_err(err)?;
        let state = match (refill_state, refill) {
            (Some(refilling), true) => refilling,
            _ => state,
        };
        let mut inputs: TVec<TValue> = tvec![tok.into_tvalue()];
        inputs.extend(past);
        let mut out = state.run(inputs).map_err(err)?;
        let present: Past = out.drain(OUTPUTS.len()..).collect();
        let v = |i: usize| -> Result<Vec<f32>, ComposeError> {
            Ok(out[i]
                .to_plain_array_view::<f32>()
                .map_err(err)?
                .iter()
                .copied()
                .collect())
        };
        Ok((
            Logits {
                family: v(0)?,
                pos: v(1)?,
                pitch: v(2)?,
                duration: v(3)?,
                note_strength: v(4)?,
                track: v(5)?,
            },
            present,
        ))
    }
}

#[cfg(test)]
mod pass_tests {
    use super::*;

    /// A tract upgrade that renames a kept pass would silently drop it (the plan would
    /// still be right, only slower): every name in [`DECLUTTER_PASSES`] must be found.
    #[test]
    fn the_kept_declutter_passes_exist_in_tract() {
        use tract_onnx::tract_hir::tract_core::optim::Optimizer;
        let names: Vec<String> = Optimizer::declutter()
            .passes
            .iter()
            .map(|p| format!("{p:?}"))
            .collect();
        for kept in DECLUTTER_PASSES {
            assert!(
                names.iter().any(|n| is_kept_pass(n) && n.starts_with(kept)),
                "{kept} is not among tract's declutter passes {names:?}"
            );
        }
        assert!(
            names.iter().any(|n| !is_kept_pass(n)),
            "some passes are left out"
        );
        assert!(!is_kept_pass("PropConstX") && is_kept_pass("PropConst(0)"));
    }

    /// The decoding plan built with the kept passes computes exactly what tract's full
    /// `into_optimized` plan does: 60 steps of the committed reference tokens, every output
    /// (logits and cache) equal bit for bit.
    #[test]
    fn the_quick_plan_gives_the_full_plans_outputs_bit_for_bit() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let path = root.join("models/notes/notes_int8.onnx");
        let typed = || {
            let m = tract_onnx::onnx()
                .model_for_path(&path)
                .unwrap()
                .into_typed()
                .unwrap();
            let tokens = m.symbols.sym(TOKENS_DIM);
            m.set_symbols(&HashMap::from([(tokens, TDim::Val(1))]))
                .unwrap()
        };
        let quick = optimise(typed()).unwrap().into_runnable().unwrap();
        let full = typed().into_optimized().unwrap().into_runnable().unwrap();
        let text = std::fs::read_to_string(path.with_file_name("reference.json")).unwrap();
        let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
        let tokens = reference["tokens"].as_array().unwrap();
        let (mut a, mut b) = (quick.spawn().unwrap(), full.spawn().unwrap());
        let empty = |i: usize| -> TValue {
            let shape = if i.is_multiple_of(2) {
                [1, 4, 0, 64]
            } else {
                [1, 4, 64, 0]
            };
            Tensor::zero::<f32>(&shape).unwrap().into()
        };
        let mut past_a: Vec<TValue> = (0..8).map(empty).collect();
        let mut past_b = past_a.clone();
        for (i, tok) in tokens.iter().take(60).enumerate() {
            let v: Vec<i64> = tok
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect();
            let token: TValue = Tensor::from_shape(&[1, 1, v.len()], &v).unwrap().into();
            let mut inputs_a: TVec<TValue> = tvec!(token.clone());
            inputs_a.extend(past_a.iter().cloned());
            let mut inputs_b: TVec<TValue> = tvec!(token);
            inputs_b.extend(past_b.iter().cloned());
            let (out_a, out_b) = (a.run(inputs_a).unwrap(), b.run(inputs_b).unwrap());
            assert_eq!(out_a.len(), out_b.len());
            for (k, (x, y)) in out_a.iter().zip(&out_b).enumerate() {
                let (x, y) = (
                    x.to_plain_array_view::<f32>().unwrap(),
                    y.to_plain_array_view::<f32>().unwrap(),
                );
                assert!(
                    x.shape() == y.shape()
                        && x.iter()
                            .zip(y.iter())
                            .all(|(p, q)| p.to_bits() == q.to_bits()),
                    "step {i}, output {k} differs"
                );
            }
            let n = out_a.len();
            past_a = out_a[n - 8..].to_vec();
            past_b = out_b[n - 8..].to_vec();
        }
    }

    /// The op profile times the plan's own ops (the int8 products among them, each node
    /// once a step) and leaves the model as it was: the next step's logits are the same.
    #[test]
    fn the_op_profile_times_every_node_and_changes_nothing() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut model = NoteModel::load(&root.join("models/notes/notes_int8.onnx")).unwrap();
        let token: Token = [0; N_FIELDS];
        let (before, _) = model.step(&token, model.empty_past()).unwrap();
        let ops = model.profile_ops(3, 2).unwrap();
        // the 17 int8 products: tract's kernels, or ours where the CPU runs them
        let int8: usize = ops
            .iter()
            .filter(|o| o.op == "OptMatMul" || o.op == "QMatVec")
            .map(|o| o.nodes)
            .sum();
        assert!(int8 >= 17, "{ops:?}");
        let ours = ops
            .iter()
            .find(|o| o.op == "QMatVec")
            .map_or(0, |o| o.nodes);
        assert_eq!(ours, if matvec::supported() { 17 } else { 0 }, "{ops:?}");
        // and the 17 activation quantisers ahead of them, always ours
        let quantisers = |name: &str| ops.iter().find(|o| o.op == name).map_or(0, |o| o.nodes);
        assert_eq!(quantisers("DynQuantU8"), 17, "{ops:?}");
        assert_eq!(quantisers("DynamicQuantizeLinearU8"), 0, "{ops:?}");
        assert!(
            ops.iter()
                .filter(|o| o.nodes >= 17)
                .all(|o| o.seconds > 0.0),
            "{ops:?}"
        );
        // every node the plan runs, once a step (its constants are computed beforehand)
        let nodes: usize = ops.iter().map(|o| o.nodes).sum();
        let in_plan = model.state.plan().model().nodes().len();
        assert!(
            nodes > in_plan / 2 && nodes <= in_plan,
            "{nodes} of {in_plan}"
        );
        assert!(ops.windows(2).all(|w| w[0].seconds >= w[1].seconds));
        let (after, _) = model.step(&token, model.empty_past()).unwrap();
        assert_eq!(before.fields(), after.fields());
    }
}

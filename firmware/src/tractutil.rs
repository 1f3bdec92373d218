//! Helpers shared by the ops this crate swaps into tract's plans (`compose::matvec`,
//! `extract::conv`).

use std::sync::Arc;

use tract_onnx::tract_hir::tract_core::internal::*;

/// The constant tensor at `outlet`, if there is one.
pub(crate) fn konst(model: &TypedModel, outlet: OutletId) -> Option<Arc<Tensor>> {
    model.outlet_fact(outlet).ok().and_then(|f| f.konst.clone())
}

/// Whether the constant scalar at `outlet` equals `v` (as f64).
pub(crate) fn konst_is(model: &TypedModel, outlet: OutletId, v: f64) -> bool {
    konst(model, outlet)
        .filter(|t| t.len() == 1)
        .and_then(|t| t.cast_to_scalar::<f64>().ok())
        == Some(v)
}

"""Rewrites the int8 note model's attention as ONNX `Attention` nodes (opset 23), one per layer.

An experiment, not part of the release pipeline (the committed model is export.py's output):
tract-onnx 0.23 reads `Attention` (with past/present keys and values and an additive mask) as
its `Sdpa` op and runs it with its flash-attention kernel instead of the exported
concat / transpose / two products / softmax. Measured 2026-11-27 (docs/design/note-model.md):
onnxruntime's outputs match the original graph's (within 1e-6; one-token steps were
identical), tract's step at P = 100 is about 11 % shorter on x86-64, and `undertone score`
wrote the same music for bikes and cup.mp4 but not for the trailer (tract's flash kernel sums
in another order, and a sampled token flipped). Not shipped: the gain is small here, the
evaluation would have to be run again, and the board's (aarch64) figure is not measured.

    python tools/train/notes/fuse_attention.py IN.onnx OUT.onnx [--check]

IN is a graph in the export's cache layout, before v_cache_rows.py (the model committed
before it: `git show f52e121:models/notes/notes_int8.onnx > IN.onnx`).

--check runs both graphs in onnxruntime on random caches (T = 1 and refills) and fails if an
output differs by more than TOLERANCE. Needs onnx (and onnxruntime for --check), as pinned in
requirements.txt. To run OUT.onnx in undertone, put it in a copy of models/notes/ with
model.json's sha256 and bytes updated and pass that folder's parent with --data; set
TRACT_FLASH_SDPA_ST=true (tract's flash kernel otherwise spreads the four heads over rayon
threads, which made a step slower here).
"""
import argparse

import numpy as np
import onnx
from onnx import helper

LAYERS, HEADS = 4, 4
# Largest difference --check accepts between the two graphs' outputs in onnxruntime (the
# fused kernel may sum a refill's products in another order).
TOLERANCE = 1e-5


def fuse(model: onnx.ModelProto) -> onnx.ModelProto:
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def only(name, op):
        (n,) = [c for c in consumers[name] if c.op_type == op]
        return n

    dropped, replaced = set(), {}
    for layer in range(LAYERS):
        cat_k = only(f"past_k{layer}", "Concat")
        cat_v = only(f"past_v{layer}", "Concat")
        scores = only(cat_k.output[0], "MatMul")  # (K q^T): the cache on the row side
        q_t, k_new, v_new = producer[scores.input[1]], producer[cat_k.input[1]], producer[cat_v.input[1]]
        heads = [producer[t.input[0]] for t in (q_t, k_new, v_new)]  # [1,T,256] -> [1,T,4,64]
        assert all(h.op_type == "Reshape" for h in heads), "unexpected head split"
        div = consumers[scores.output[0]][0]
        sub = consumers[div.output[0]][0]  # the causal mask, subtracted
        softmax = consumers[sub.output[0]][0]
        mix = consumers[softmax.output[0]][0]
        v_t = producer[mix.input[0]]
        back = consumers[mix.output[0]][0]
        merge = consumers[back.output[0]][0]  # [1,T,4,64] -> [1,T,256]
        ops = [div.op_type, sub.op_type, softmax.op_type, mix.op_type, v_t.op_type, back.op_type, merge.op_type]
        assert ops == ["Div", "Sub", "Softmax", "MatMul", "Transpose", "Transpose", "Reshape"], ops
        for n in [cat_k, cat_v, scores, q_t, k_new, v_new, *heads, div, sub, softmax, mix, v_t, back, merge]:
            dropped.add(n.name)
        # 3-D Q, K, V ([1, T, heads x 64]); the default scale is 1/sqrt(64), the graph's divisor.
        replaced[merge.name] = helper.make_node(
            "Attention",
            [heads[0].input[0], heads[1].input[0], heads[2].input[0], "attention_mask",
             f"past_k{layer}", f"past_v{layer}"],
            [merge.output[0], f"present_k{layer}", f"present_v{layer}"],
            name=f"attention_{layer}", q_num_heads=HEADS, kv_num_heads=HEADS)
    # The export's mask, [1, 1, T, P+T] before its transpose, is subtracted: negate it once.
    mask_t = producer[sub.input[1]]
    assert mask_t.op_type == "Transpose"
    dropped.add(mask_t.name)
    negate = helper.make_node("Neg", [mask_t.input[0]], ["attention_mask"], name="attention_mask_neg")
    nodes = []
    for n in g.node:
        if n.name in replaced:
            nodes.append(replaced[n.name])
        elif n.name not in dropped:
            nodes.append(n)
            if mask_t.input[0] in n.output:
                nodes.append(negate)
    del g.node[:]
    g.node.extend(nodes)
    for o in model.opset_import:
        if o.domain == "":
            o.version = 23  # Attention is an opset-23 op
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model


def check(a_path: str, b_path: str) -> None:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    a = ort.InferenceSession(a_path, so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(b_path, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1234)
    worst = 0.0
    sizes = [4, 17, 8, 4, 2, 48, 129, 33, 5, 5, 32, 2, 8]
    for t, p in [(1, 0), (1, 1), (1, 100), (1, 255), (3, 10), (16, 0), (5, 200)]:
        feed = {"token": np.stack([rng.integers(0, s, (1, t)) for s in sizes], axis=-1).astype(np.int64)}
        for layer in range(LAYERS):
            for kind in "kv":
                feed[f"past_{kind}{layer}"] = rng.normal(0, 1, (1, HEADS, p, 64)).astype(np.float32)
        for x, y, out in zip(a.run(None, feed), b.run(None, feed), a.get_outputs()):
            diff = float(np.abs(x - y).max()) if x.size else 0.0
            worst = max(worst, diff)
            if diff > TOLERANCE:
                raise SystemExit(f"{out.name} differs at T={t}, P={p}: max abs {diff}")
    print(f"onnxruntime: every output within {worst:.2g} of the original (T = 1 and refills, P = 0..255)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    onnx.save(fuse(onnx.load(args.src)), args.dst)
    print(f"wrote {args.dst}")
    if args.check:
        check(args.src, args.dst)


if __name__ == "__main__":
    main()

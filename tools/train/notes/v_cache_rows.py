"""Stores the note model's value cache as rows: `past_v{i}` / `present_v{i}` become
`[1, heads, head_dim, P]` instead of `[1, heads, P, head_dim]`.

The exported graph mixes the values as `V^T w^T` (the cache on the row side of the product,
docs/design/note-model.md), so every step transposed the whole value cache before the
product; tract did it as a copy of the cache at every step of every layer, then packed the
copy along P. Kept transposed, the cache is concatenated on its last axis (the new token's
values transposed, one column) and feeds the product as it is: tract packs the same panels
from it, so its outputs are the same bits, and the copy is gone.

    python tools/train/notes/v_cache_rows.py MODEL_DIR      (models/notes after export.py)

Rewrites MODEL_DIR/notes_int8.onnx in place (refusing one already rewritten), then updates
model.json (sha256, bytes, the cache layout) and the onnxruntime outputs in reference.json
for the same reference tokens. export.py runs the rewrite itself; this command is for a
model exported before it did. Needs onnx, numpy and onnxruntime (requirements.txt).
"""
import argparse
import hashlib
import json
import os

import numpy as np
import onnx
from onnx import helper

KV_CACHE = "per layer: past_k{i} [1, heads, P, head_dim], past_v{i} [1, heads, head_dim, P]"


def values_as_rows(model: onnx.ModelProto, layers: int) -> onnx.ModelProto:
    """The rewrite (see the module's text); fails on a graph that is not export.py's."""
    g = model.graph
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    dropped, replaced = set(), {}
    for layer in range(layers):
        (cat,) = [n for n in consumers[f"past_v{layer}"] if n.op_type == "Concat"]
        axis = [helper.get_attribute_value(a) for a in cat.attribute if a.name == "axis"]
        if axis != [2]:
            raise SystemExit(f"past_v{layer} is concatenated on axis {axis}: already rewritten?")
        (transpose,) = [n for n in consumers[cat.output[0]] if n.op_type == "Transpose"]
        perm = [list(helper.get_attribute_value(a)) for a in transpose.attribute if a.name == "perm"]
        assert perm == [[0, 1, 3, 2]], perm
        users = consumers[transpose.output[0]]
        assert [u.op_type for u in users] == ["MatMul"] and users[0].input[0] == transpose.output[0]
        column = f"v_new_rows{layer}"
        replaced[cat.name] = [
            helper.make_node("Transpose", [cat.input[1]], [column], name=column, perm=[0, 1, 3, 2]),
            helper.make_node("Concat", [f"past_v{layer}", column], [cat.output[0]], name=cat.name, axis=3),
        ]
        dropped.add(transpose.name)
        users[0].input[0] = cat.output[0]
    nodes = []
    for n in g.node:
        if n.name in replaced:
            nodes.extend(replaced[n.name])
        elif n.name not in dropped:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.name.startswith(("past_v", "present_v")):
            dims = vi.type.tensor_type.shape.dim
            p, d = onnx.TensorShapeProto.Dimension(), onnx.TensorShapeProto.Dimension()
            p.CopyFrom(dims[2])
            d.CopyFrom(dims[3])
            dims[2].CopyFrom(d)
            dims[3].CopyFrom(p)
    onnx.checker.check_model(model)
    return model


def empty_cache(card: dict) -> list:
    """The empty cache in this layout: keys then values of each layer."""
    h, d = card["heads"], card["head_dim"]
    return [np.zeros((1, h, 0, d) if kind == "k" else (1, h, d, 0), dtype=np.float32)
            for _ in range(card["layers"]) for kind in "kv"]


def reference_outputs(path: str, card: dict, ref: dict) -> dict:
    """onnxruntime's outputs for reference.json's tokens, step by step and in one refill."""
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [f"past_{kind}{i}" for i in range(card["layers"]) for kind in "kv"]
    outs, n_out = card["outputs"], len(card["outputs"])
    rows = np.array(ref["tokens"], dtype=np.int64)
    steps, past = {k: [] for k in outs}, empty_cache(card)
    for r in rows:
        res = sess.run(None, {"token": r.reshape(1, 1, -1), **dict(zip(names, past))})
        for i, k in enumerate(outs):
            steps[k].append(np.round(res[i].reshape(-1).astype(np.float64), 5).tolist())
        past = res[n_out:]
    n = ref["prefill_tokens"]
    pre = sess.run(None, {"token": rows[:n].reshape(1, n, -1), **dict(zip(names, empty_cache(card)))})
    prefill = {k: np.round(pre[i].reshape(-1).astype(np.float64), 5).tolist() for i, k in enumerate(outs)}
    return {**ref, "outputs": steps, "prefill_outputs": prefill, "onnxruntime": ort.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    args = ap.parse_args()
    card_path = os.path.join(args.model_dir, "model.json")
    card = json.load(open(card_path))
    path = os.path.join(args.model_dir, card["file"])
    model = values_as_rows(onnx.load(path), card["layers"])
    tmp = path + ".partial"
    onnx.save(model, tmp)
    os.replace(tmp, path)
    data = open(path, "rb").read()
    card.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), kv_cache=KV_CACHE)
    ref_path = os.path.join(args.model_dir, "reference.json")
    ref = reference_outputs(path, card, json.load(open(ref_path)))
    for p, obj, indent in [(ref_path, ref, None), (card_path, card, 1)]:
        with open(p + ".partial", "w") as f:
            json.dump(obj, f, indent=indent)
        os.replace(p + ".partial", p)
    print(f"rewrote {path}: {len(data)} bytes, sha256 {card['sha256']}")


if __name__ == "__main__":
    main()

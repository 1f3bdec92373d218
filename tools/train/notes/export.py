"""Export the trained note model for incremental decoding, quantise it to int8, write reference vectors.

    .venv/bin/python tools/train/notes/export.py [--ckpt tools/train/work/notes/ckpt.pt]

Graph (one decoding step):
  inputs   token  int64 [1, T, N_FIELDS]                 the compound token(s) just written (T = 1 when
                                                         decoding; T > 1 refills the cache in one call)
           past_k0, past_k1, ...  f32 [1, HEADS, P, HEAD_DIM]   KV cache of the P tokens before them
           past_v0, past_v1, ...  f32 [1, HEADS, HEAD_DIM, P]   (P >= 0), one tensor per layer and kind;
                                                         the values as rows (v_cache_rows.py)
  outputs  family [3], pos [16], pitch [4, 128], duration [32], note_strength [4], track [4]
                                                         logits of the next token's fields (one fused
                                                         linear layer, split)
           present_k0, present_v0, ... the caches with P + T entries, in the same layouts
Token positions are P..P+T-1 (read from the shapes), so the runtime keeps P + T <= MAX_LEN.

Writes
  tools/train/work/notes/notes_fp32.onnx, notes_pre.onnx   intermediate
  models/notes/notes_int8.onnx                            quantize_dynamic(MatMul/Gemm, QInt8), then the
                                                         value cache stored as rows (v_cache_rows.py)
  models/notes/reference.json                             onnxruntime outputs for a fixed token run
  models/notes/model.json                                 shapes, vocab, sha256 (read by the runtime's checks)
"""

import argparse
import hashlib
import json
import logging
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, os.path.dirname(__file__))
import tokens as tk  # noqa: E402
from model import HEADS, MAX_LEN, NoteModel  # noqa: E402
from v_cache_rows import KV_CACHE, values_as_rows  # noqa: E402

log = logging.getLogger("export")

OUT_NAMES = list(HEADS.keys())
# Steps of the reference run written next to the model (enough to cover several bars).
REFERENCE_STEPS = 48
# Tokens fed in one call for the refill reference.
PREFILL = 16


class Step(torch.nn.Module):
    """One decoding call. The six output heads are fused into one linear layer (the same weights,
    concatenated): one int8 matrix product and one activation quantisation instead of six."""

    def __init__(self, m):
        super().__init__()
        self.m = m
        self.sizes = [HEADS[k] for k in OUT_NAMES]
        self.fused = torch.nn.Linear(m.cfg["d"], sum(self.sizes))
        with torch.no_grad():
            self.fused.weight.copy_(torch.cat([m.heads[k].weight for k in OUT_NAMES]))
            self.fused.bias.copy_(torch.cat([m.heads[k].bias for k in OUT_NAMES]))

    def forward(self, token, *past):
        h, present = self.m.step_hidden(token, past)
        outs = list(torch.split(self.fused(h[0, 0]), self.sizes))
        outs[OUT_NAMES.index("pitch")] = outs[OUT_NAMES.index("pitch")].reshape(tk.N_TRACKS, tk.N_PITCH)
        return (*outs, *present)


def past_names(cfg, prefix):
    return [f"{prefix}_{kind}{i}" for i in range(cfg["layers"]) for kind in ("k", "v")]


def empty_past(cfg, n=0, v_rows=False):
    """Keys then values of each layer, with n entries; `v_rows`: the values as rows (int8 graph)."""
    h, d = cfg["n_heads"], cfg["d"] // cfg["n_heads"]
    return [np.zeros((1, h, d, n) if v_rows and i % 2 else (1, h, n, d), dtype=np.float32)
            for i in range(2 * cfg["layers"])]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def reference_tokens(tokens_path):
    """The first REFERENCE_STEPS tokens of the first held-out piece, normalised to C / Am."""
    z = np.load(tokens_path)
    p = int(np.nonzero(z["split"] == 1)[0][0])
    rows = z["rows"][z["piece_off"][p]:z["piece_off"][p] + REFERENCE_STEPS].astype(np.int64)
    k = int(z["shift"][p])
    note = rows[:, tk.F_TYPE] == tk.T_NOTE
    rows[note, tk.F_PITCH] += k
    rows[:, tk.F_CHORD] = ((rows[:, tk.F_CHORD] // 4 + k) % 12) * 4 + rows[:, tk.F_CHORD] % 4
    return rows


def run_ort(path, rows, cfg, v_rows=False):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    past = empty_past(cfg, v_rows=v_rows)
    names = past_names(cfg, "past")
    outs = []
    for r in rows:
        res = sess.run(None, {"token": r.reshape(1, 1, -1), **dict(zip(names, past))})
        outs.append({k: res[i] for i, k in enumerate(OUT_NAMES)})
        past = res[len(OUT_NAMES):]
    return outs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default="tools/train/work/notes/ckpt.pt")
    ap.add_argument("--tokens", default="tools/train/work/notes/tokens.npz")
    ap.add_argument("--work", default="tools/train/work/notes")
    ap.add_argument("--out-dir", default="models/notes")
    ap.add_argument("--stats", default="models/notes/tokens.json", help="class edges (build_tokens.py)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    ck = torch.load(args.ckpt, weights_only=False, map_location="cpu")
    model = NoteModel(**ck["cfg"])
    model.load_state_dict(ck["model"])
    model.eval()
    cfg = model.cfg
    step = Step(model).eval()

    fp32 = os.path.join(args.work, "notes_fp32.onnx")
    pre = os.path.join(args.work, "notes_pre.onnx")
    os.makedirs(args.out_dir, exist_ok=True)
    int8 = os.path.join(args.out_dir, "notes_int8.onnx")

    tok = torch.zeros(1, 2, tk.N_FIELDS, dtype=torch.int64)
    past = [torch.from_numpy(a) for a in empty_past(cfg, 3)]
    p_dim = torch.export.Dim("past", min=0, max=MAX_LEN - 1)
    t_dim = torch.export.Dim("tokens", min=1, max=MAX_LEN)
    prog = torch.onnx.export(step, (tok, *past), fp32, dynamo=True, input_names=["token", *past_names(cfg, "past")],
                             output_names=[*OUT_NAMES, *past_names(cfg, "present")],
                             dynamic_shapes={"token": {1: t_dim}, "past": tuple({2: p_dim} for _ in past)},
                             external_data=False, opset_version=18)
    del prog
    quant_pre_process(fp32, pre)
    quantize_dynamic(pre, int8, op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8,
                     extra_options={"MatMulConstBOnly": True})
    onnx.save(values_as_rows(onnx.load(int8), cfg["layers"]), int8)

    rows = reference_tokens(args.tokens)
    # torch vs fp32 onnx, a sanity check of the export itself
    with torch.no_grad():
        pk = model.empty_past()
        ref_t = []
        for r in rows:
            lg, pk = model.step(torch.from_numpy(r).view(1, 1, -1), pk)
            ref_t.append(lg["family"][0, 0].numpy())
    o32 = run_ort(fp32, rows, cfg)
    d32 = max(float(np.abs(a["family"] - b).max()) for a, b in zip(o32, ref_t))
    o8 = run_ort(int8, rows, cfg, v_rows=True)
    d8 = max(float(np.abs(o8[i][k] - o32[i][k]).max()) for i in range(len(rows)) for k in OUT_NAMES)
    log.info("torch vs onnx fp32 max diff %.2e; int8 vs fp32 max diff %.3f", d32, d8)

    # The refill path: the first PREFILL tokens in one call must give the step-by-step logits.
    sess = ort.InferenceSession(int8, providers=["CPUExecutionProvider"])
    pre_out = sess.run(None, {"token": rows[:PREFILL].reshape(1, PREFILL, -1),
                              **dict(zip(past_names(cfg, "past"), empty_past(cfg, v_rows=True)))})
    dpre = max(float(np.abs(pre_out[i] - o8[PREFILL - 1][k]).max()) for i, k in enumerate(OUT_NAMES))
    log.info("int8 prefill of %d tokens vs step by step: max diff %.3f", PREFILL, dpre)
    ref = {"steps": len(rows), "fields": tk.FIELD_NAMES, "tokens": rows.tolist(), "prefill_tokens": PREFILL,
           "prefill_outputs": {k: np.round(pre_out[i].reshape(-1).astype(np.float64), 5).tolist()
                               for i, k in enumerate(OUT_NAMES)},
           "outputs": {k: [np.round(o[k].reshape(-1).astype(np.float64), 5).tolist() for o in o8] for k in OUT_NAMES},
           "onnxruntime": ort.__version__}
    with open(os.path.join(args.out_dir, "reference.json"), "w") as f:
        json.dump(ref, f)
    meta = {
        "file": os.path.basename(int8), "sha256": sha256(int8), "bytes": os.path.getsize(int8),
        "layers": cfg["layers"], "d_model": cfg["d"], "heads": cfg["n_heads"], "head_dim": cfg["d"] // cfg["n_heads"],
        "ff": cfg["ff"], "max_len": MAX_LEN, "kv_cache": KV_CACHE, "n_fields": tk.N_FIELDS, "field_names": tk.FIELD_NAMES,
        "field_sizes": tk.FIELD_SIZES, "outputs": OUT_NAMES, "train_step": ck["step"],
        "params": sum(p.numel() for p in model.parameters()),
        "density_edges": json.load(open(args.stats))["density_edges_notes_per_bar"],
        "fp32_bytes": os.path.getsize(fp32), "int8_vs_fp32_max_abs_diff": d8, "prefill_vs_steps_max_abs_diff": dpre, "torch_vs_fp32_max_abs_diff": d32,
    }
    with open(os.path.join(args.out_dir, "model.json"), "w") as f:
        json.dump(meta, f, indent=1)
    log.info("wrote %s (%d bytes, sha256 %s)", int8, meta["bytes"], meta["sha256"])


if __name__ == "__main__":
    main()

"""Replays the exact model calls of an `undertone compose --steps-out FILE` run through
onnxruntime (one thread, the same ONNX file) and prints its time per sampled-token step as JSON.

    python tools/bench/compose_ort.py STEPS.jsonl models/notes/notes_int8.onnx

Each line of STEPS.jsonl is `[kind, token]`: "step" feeds one token on the running cache,
"firststep" one token on an empty cache, and a run of "refill" lines is one call on an empty
cache (a window restart), exactly as the Rust runtime made them.
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort


def calls(steps):
    """[(fresh_cache, tokens [1, T, F])] in order."""
    out, refill = [], []
    for kind, tok in steps:
        if kind == "refill":
            refill.append(tok)
            continue
        if refill:
            out.append((True, np.array(refill, dtype=np.int64)[None]))
            refill = []
        out.append((kind == "firststep", np.array(tok, dtype=np.int64).reshape(1, 1, -1)))
    if refill:
        out.append((True, np.array(refill, dtype=np.int64)[None]))
    return out


def main():
    steps_path, model_path = sys.argv[1], sys.argv[2]
    card = json.load(open(model_path.rsplit("/", 1)[0] + "/model.json"))
    steps = [json.loads(line) for line in open(steps_path) if line.strip()]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    # The KV cache: one tensor per layer and kind, fed by name (past_k0, past_v0, ...).
    names = [f"past_{kind}{i}" for i in range(card["layers"]) for kind in ("k", "v")]
    # Keys [1, heads, P, head_dim], values [1, heads, head_dim, P] (models/notes/model.json's kv_cache).
    h, d = card["heads"], card["head_dim"]
    empty = [np.zeros((1, h, 0, d) if n.startswith("past_k") else (1, h, d, 0), dtype=np.float32) for n in names]
    n_logits = len(card["outputs"])
    cs = calls(steps)

    def run(t, past):
        return sess.run(None, {"token": t, **dict(zip(names, past))})[n_logits:]

    past = empty
    for fresh, t in cs[:32]:  # warm-up
        past = run(t, empty if fresh else past)
    past = empty
    t0 = time.perf_counter()
    for fresh, t in cs:
        past = run(t, empty if fresh else past)
    secs = time.perf_counter() - t0
    sampled = sum(1 for k, _ in steps if k != "refill")
    print(json.dumps({"runtime": "onnxruntime " + ort.__version__, "calls": len(cs), "tokens_fed": len(steps),
                      "seconds": secs, "ms_per_step": 1e3 * secs / sampled}))


if __name__ == "__main__":
    main()

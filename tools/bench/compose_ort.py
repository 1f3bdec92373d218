"""Replays the exact model steps of an `undertone compose --steps-out FILE` run through onnxruntime
(one thread, the same ONNX file) and prints its time per step as JSON.

    python tools/bench/compose_ort.py STEPS.jsonl models/notes/notes_int8.onnx

Each line of STEPS.jsonl is `[cache_cleared, token]`; the KV cache is cleared where the runtime
cleared it (window restarts), so both runtimes see the same cache lengths.
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    steps_path, model_path = sys.argv[1], sys.argv[2]
    card = json.load(open(model_path.rsplit("/", 1)[0] + "/model.json"))
    steps = [json.loads(line) for line in open(steps_path) if line.strip()]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    empty = np.zeros((card["layers"], 2, 1, card["heads"], 0, card["head_dim"]), dtype=np.float32)
    toks = [np.array(t, dtype=np.int64).reshape(1, 1, -1) for _, t in steps]
    past = empty
    # warm-up: one pass over the first 32 steps
    for t in toks[:32]:
        past = sess.run(None, {"token": t, "past": past})[-1]
    past = empty
    t0 = time.perf_counter()
    for (fresh, _), t in zip(steps, toks):
        if fresh:
            past = empty
        past = sess.run(None, {"token": t, "past": past})[-1]
    secs = time.perf_counter() - t0
    print(json.dumps({"runtime": "onnxruntime " + ort.__version__, "model_steps": len(steps), "seconds": secs,
                      "ms_per_model_step": 1e3 * secs / len(steps)}))


if __name__ == "__main__":
    main()

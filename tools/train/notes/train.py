"""Train the note model (CPU or one GPU); resumable and seeded.

    nice -n 10 .venv/bin/python tools/train/notes/train.py --steps 3000          # CPU, this machine
    python tools/train/notes/train.py --device cuda --batch 64 --minutes 7 \
        --dropout 0.1 --best best.pt                                            # one GPU, bf16 autocast

Reads tools/train/work/notes/tokens.npz (build_tokens.py), writes tools/train/work/notes/ckpt.pt
every --ckpt-every steps and resumes from it when it exists (same seed: the data stream and the
random state are restored, so a resumed run continues where it stopped). Logs to stdout.
With --minutes the schedule runs on whichever ends first, the steps or the wall-clock budget
(progress = max(step / steps, elapsed / budget)), so a run fits a fixed slot on any machine.
With --best PATH the weights alone (fp32, no optimiser) of the step with the lowest held-out
loss are written to PATH at each evaluation (a long run on a small corpus overfits: the best
held-out step is the one exported).

Augmentation: each training crop is transposed, half the time to C major / A minor (the keys the
product asks for), otherwise to a uniformly random key, so every chord root is seen.
"""

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import tokens as tk  # noqa: E402
from model import MAX_LEN, NoteModel  # noqa: E402

log = logging.getLogger("train")


class Data:
    def __init__(self, path, rng):
        z = np.load(path)
        self.rows = z["rows"].astype(np.int64)
        self.piece_off = z["piece_off"]
        self.split = z["split"]
        self.shift = z["shift"].astype(np.int64)
        bars_per_piece = z["bars_per_piece"]
        bar_off = z["bar_off"]
        self.bar_starts = np.split(bar_off, np.cumsum(bars_per_piece)[:-1])
        self.train = np.nonzero(self.split == 0)[0]
        self.test = np.nonzero(self.split == 1)[0]
        lens = self.piece_off[1:] - self.piece_off[:-1]
        w = lens[self.train].astype(np.float64)
        self.p = w / w.sum()
        self.rng = rng

    def crop(self, piece, start_row, k):
        end = min(self.piece_off[piece + 1], start_row + MAX_LEN + 1)
        x = self.rows[start_row:end].copy()
        note = x[:, tk.F_TYPE] == tk.T_NOTE
        x[note, tk.F_PITCH] = np.clip(x[note, tk.F_PITCH] + k, 0, tk.N_PITCH - 1)
        root = (x[:, tk.F_CHORD] // 4 + k) % 12
        x[:, tk.F_CHORD] = root * 4 + x[:, tk.F_CHORD] % 4
        if len(x) < MAX_LEN + 1:
            pad = np.zeros((MAX_LEN + 1 - len(x), tk.N_FIELDS), dtype=np.int64)
            pad[:, tk.F_TYPE] = tk.T_PAD
            x = np.concatenate([x, pad])
        return x

    def batch(self, size):
        out = []
        for piece in self.rng.choice(self.train, size=size, p=self.p):
            starts = self.bar_starts[piece]
            # Start at any bar that leaves at least a quarter of a crop (short pieces: bar 0).
            ok = starts[starts <= max(self.piece_off[piece + 1] - MAX_LEN // 4, starts[0])]
            start = int(self.rng.choice(ok))
            k = int(self.shift[piece])
            if self.rng.random() >= 0.5:
                k += int(self.rng.integers(-6, 6))
            out.append(self.crop(piece, start, k))
        return torch.from_numpy(np.stack(out))

    def test_batches(self, size):
        crops = [self.crop(p, int(self.piece_off[p]), int(self.shift[p])) for p in self.test]
        for i in range(0, len(crops), size):
            yield torch.from_numpy(np.stack(crops[i:i + size]))


def losses(model, x):
    """Per-field mean cross-entropies of predicting x[:, 1:] from x[:, :-1]."""
    inp, tgt = x[:, :-1], x[:, 1:]
    lg = model(inp)
    ttype = tgt[..., tk.F_TYPE]
    valid = ttype != tk.T_PAD
    out = {"family": F.cross_entropy(lg["family"][valid], ttype[valid])}
    pm = ttype == tk.T_POS
    out["pos"] = F.cross_entropy(lg["pos"][pm], tgt[..., tk.F_POS][pm])
    nm = ttype == tk.T_NOTE
    pitch = lg["pitch"][nm].view(-1, tk.N_TRACKS, tk.N_PITCH)
    track = tgt[..., tk.F_TRACK][nm]
    pitch = pitch[torch.arange(len(track), device=pitch.device), track]
    out["pitch"] = F.cross_entropy(pitch, tgt[..., tk.F_PITCH][nm])
    out["duration"] = F.cross_entropy(lg["duration"][nm], tgt[..., tk.F_DUR][nm])
    out["note_strength"] = F.cross_entropy(lg["note_strength"][nm], tgt[..., tk.F_NSTR][nm])
    out["track"] = F.cross_entropy(lg["track"][nm], track)
    return out


def lr_at(step, args, progress=None):
    """Warm-up over the first steps, then cosine to lr_min over `progress` (0..1; default step / steps)."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if progress is None:
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    t = min(1.0, progress)
    return args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * t))


def save_weights(path, model, step, metrics):
    """The weights alone (what export.py needs), atomically."""
    tmp = path + ".tmp"
    torch.save({"model": {k: v.detach().float().cpu() for k, v in model.state_dict().items()}, "step": step,
                "cfg": model.cfg, "eval": metrics}, tmp)
    os.replace(tmp, path)


def save(path, model, opt, step, rng, args):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "cfg": model.cfg,
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "args": vars(args)}, tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="tools/train/work/notes/tokens.npz")
    ap.add_argument("--ckpt", default="tools/train/work/notes/ckpt.pt")
    ap.add_argument("--steps", type=int, default=3000, help="length of the cosine schedule (and of the run)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-min", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast on cuda)")
    ap.add_argument("--minutes", type=float, default=None, help="wall-clock budget of the schedule")
    ap.add_argument("--dropout", type=float, default=0.0, help="residual/embedding dropout")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ff", type=int, default=1024)
    ap.add_argument("--best", default=None, help="write the best held-out step's weights here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = Data(args.data, rng)
    dev = torch.device(args.device)
    model = NoteModel(d=args.d, layers=args.layers, n_heads=args.heads, ff=args.ff, dropout=args.dropout).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)

    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()

    step = 0
    best = float("inf")
    if os.path.exists(args.ckpt):
        ck = torch.load(args.ckpt, weights_only=False, map_location=dev)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed from %s at step %d", args.ckpt, step)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("params %d; train pieces %d, test pieces %d", n_params, len(data.train), len(data.test))
    t0, tok = time.time(), 0

    def progress():
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        if args.minutes:
            p = max(p, (time.time() - t0) / (args.minutes * 60))
        return p

    while step < args.steps and progress() < 1.0:
        lr = lr_at(step, args, progress())
        for g in opt.param_groups:
            g["lr"] = lr
        xb = data.batch(args.batch)
        tok += int((xb[:, 1:, tk.F_TYPE] != tk.T_PAD).sum())
        x = xb.to(dev, non_blocking=True)
        model.train()
        with amp():
            ls = losses(model, x)
        ls = {k: v.float() for k, v in ls.items()}
        loss = sum(ls.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            log.info("step %d loss %.3f %s lr %.2e %.0f tok/s", step, loss.item(),
                     " ".join(f"{k}={v.item():.3f}" for k, v in ls.items()), lr, tok / (time.time() - t0))
        last = step == args.steps or progress() >= 1.0
        if step % args.ckpt_every == 0 or last:
            save(args.ckpt, model, opt, step, rng, args)
        if step % args.eval_every == 0 or last:
            model.eval()
            tot, n = {}, 0
            with torch.no_grad(), amp():
                for xb in data.test_batches(32):
                    for k, v in losses(model, xb.to(dev)).items():
                        tot[k] = tot.get(k, 0.0) + v.float().item() * len(xb)
                    n += len(xb)
            ev = {k: round(v / n, 4) for k, v in tot.items()}
            total = sum(ev.values())
            log.info("eval step %d total %.4f %s", step, total, json.dumps(ev))
            if args.best and total < best:
                best = total
                save_weights(args.best, model, step, ev)
                log.info("best so far: step %d -> %s", step, args.best)
    log.info("done at step %d", step)


if __name__ == "__main__":
    main()

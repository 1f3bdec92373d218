"""The note model: a small decoder-only transformer over compound tokens (tokens.py).

Input: one compound token per step; each field has its own embedding table and the embeddings
are summed (with a learned position embedding). Output: one head per predicted field of the
*next* token: type (BAR/POS/NOTE), position, pitch (one 128-way row per track, so the register
follows the voice), duration, note strength, track. Control fields are never predicted: the
runtime writes them from the video.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import tokens as tk

# Context length in tokens (training crop and the runtime's KV-cache window).
MAX_LEN = 256

HEADS = {
    "family": tk.N_TYPES_OUT,
    "pos": tk.STEPS_PER_BAR,
    "pitch": tk.N_TRACKS * tk.N_PITCH,
    "duration": tk.MAX_DUR16,
    "note_strength": tk.NOTE_STRENGTH_CLASSES,
    "track": tk.N_TRACKS,
}


class Block(nn.Module):
    def __init__(self, d, n_heads, ff, dropout=0.0):
        super().__init__()
        self.n_heads = n_heads
        # Residual dropout (training only: eval mode and the exported graph have none).
        self.drop = nn.Dropout(dropout)
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ff)
        self.fc2 = nn.Linear(ff, d)

    def split(self, x):
        b, t, d = x.shape
        return x.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)

    def forward(self, x, past=None):
        """x: [B, T, d]. past: None (training, causal) or (keys, values), each [B, H, P, dh]
        (decoding); returns the new hidden state and (keys, values) with P + T entries."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = self.split(q), self.split(k), self.split(v)
        if past is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            present = None
        else:
            p = past[0].shape[2]
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
            present = (k, v)
            # T new queries over P cached + T new keys, causal among the new ones (T = 1 in
            # decoding: the mask is all zeros; T > 1 refills the cache in one call). Written out
            # (not SDPA) so the exported graph is plain MatMul/Softmax that every runtime handles.
            # Both products put the cache on the row side, (K q^T)^T and (V^T w^T)^T: a runtime
            # then multiplies P rows by one column (a matrix-vector kernel) instead of one row
            # by P columns, which tract runs with a tile of 64 rows of which 63 are padding
            # (about a quarter of a decoding step at P = 200; the arithmetic is the same).
            att = (k @ q.transpose(-1, -2)).transpose(-1, -2) / math.sqrt(d // self.n_heads)
            q_pos = (torch.arange(t, device=x.device) + p).to(att.dtype)
            k_pos = torch.arange(p + t, device=x.device).to(att.dtype)
            future = (k_pos.unsqueeze(0) > q_pos.unsqueeze(1)).to(att.dtype)
            w = torch.softmax(att - future * 1e4, dim=-1)
            a = (v.transpose(-1, -2) @ w.transpose(-1, -2)).transpose(-1, -2)
        a = a.transpose(1, 2).reshape(b, t, d)
        x = x + self.drop(self.proj(a))
        x = x + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(x)))))
        return x, present


class NoteModel(nn.Module):
    def __init__(self, d=256, layers=4, n_heads=4, ff=1024, dropout=0.0):
        super().__init__()
        self.cfg = dict(d=d, layers=layers, n_heads=n_heads, ff=ff)
        self.emb = nn.ModuleList(nn.Embedding(n, d) for n in tk.FIELD_SIZES)
        self.pos_emb = nn.Embedding(MAX_LEN, d)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d, n_heads, ff, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.heads = nn.ModuleDict({k: nn.Linear(d, n) for k, n in HEADS.items()})
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def embed(self, x, positions):
        h = self.pos_emb(positions)
        for i, e in enumerate(self.emb):
            h = h + e(x[..., i])
        return h

    def out(self, h):
        h = self.ln_f(h)
        return {k: head(h) for k, head in self.heads.items()}

    def forward(self, x):
        """Training: x [B, T, N_FIELDS] int64 -> dict of logits [B, T, n]."""
        t = x.shape[1]
        h = self.emb_drop(self.embed(x, torch.arange(t, device=x.device)))
        for blk in self.blocks:
            h, _ = blk(h)
        return self.out(h)

    def step(self, x, past):
        """T tokens after a cache: x [B, T, N_FIELDS], past = [keys_0, values_0, keys_1, ...]
        (2 x layers tensors [B, H, P, dh]) -> (logits of the token after the last one, the same
        list with P + T entries). One tensor per layer and kind, so a decoding step copies the
        cache once (the concatenation), not again to slice it out of and stack it into one tensor."""
        h, present = self.step_hidden(x, past)
        return {k: head(h) for k, head in self.heads.items()}, present

    def step_hidden(self, x, past):
        """As `step`, but the final layer-normed hidden state [B, 1, d] instead of the logits."""
        p, t = past[0].shape[2], x.shape[1]
        h = self.embed(x, torch.arange(p, p + t, device=x.device))
        presents = []
        for i, blk in enumerate(self.blocks):
            h, (k, v) = blk(h, (past[2 * i], past[2 * i + 1]))
            presents += [k, v]
        return self.ln_f(h[:, -1:]), presents

    def empty_past(self, batch=1):
        c = self.cfg
        return [torch.zeros(batch, c["n_heads"], 0, c["d"] // c["n_heads"]) for _ in range(2 * c["layers"])]

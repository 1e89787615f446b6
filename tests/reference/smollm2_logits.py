#!/usr/bin/env python3
"""Reference logits of SmolLM2-135M-Instruct (llama GGUF) for tests/test_smollm2_logits.c.

Usage:  pip install gguf numpy
        python3 tests/reference/smollm2_logits.py [build/models/SmolLM2-135M-Instruct.Q4_1.gguf]

Writes tests/reference/smollm2_logits.json. The forward is written here from the llama definition, in NumPy
float64, over the weights as gguf-py dequantizes them (its own implementation of the ggml block formats, so the C
dequantizer is checked too). It deliberately works on the GGUF's q/k rows AS STORED, which llama.cpp's converter
permuted into interleaved pairs, and so applies RoPE the GPT-J / Meta way (pairs 2i, 2i+1); lmforge un-permutes
the rows at load and applies the rotate_half form, so the two agree only if the un-permute is right.

Fixture contents: the prompts' token ids (from `lmforge tokenize -t <gguf>`), the argmax at every position, the
last position's logits (all 49152 as little-endian float32 base64 for the first prompt, the top 100 for the
others), and a 64-token greedy continuation of the first prompt with each step's top-1/top-2 margin.
"""
import base64
import json
import os
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PATH = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build/models/SmolLM2-135M-Instruct.Q4_1.gguf")

PROMPTS = [  # text and ids as `lmforge tokenize -t <gguf>` gives them
    ("The capital of France is", [504, 3575, 282, 4649, 314]),
    ("Once upon a time, there was a little", [6403, 1980, 253, 655, 28, 665, 436, 253, 1838]),
    ("def fibonacci(n):", [1604, 3987, 46477, 24, 94, 727]),
]
N_GREEDY = 64
TOPK = 100

r = GGUFReader(PATH)


def field(key):
    return r.fields[key].contents()


assert field("general.architecture") == "llama"
L = field("llama.block_count")
C = field("llama.embedding_length")
NH = field("llama.attention.head_count")
NKV = field("llama.attention.head_count_kv")
theta = float(field("llama.rope.freq_base"))
eps = float(field("llama.attention.layer_norm_rms_epsilon"))
hs = C // NH

W = {}
for t in r.tensors:
    a = dequantize(t.data, t.tensor_type).astype(np.float64)
    W[t.name] = a.reshape([int(d) for d in reversed(t.shape)])  # (ne1, ne0) = (out, in)
head = W.get("output.weight", W["token_embd.weight"])  # tied when there is no output.weight


def rmsnorm(x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope_interleaved(x, T):
    """x: (T, H, hs) in the GGUF's row order: dims (2i, 2i+1) form the pair rotated by angle pos * theta^(-2i/hs)."""
    inv = theta ** (-np.arange(0, hs, 2, dtype=np.float64) / hs)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]  # (T, hs/2)
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


def forward(ids):
    T = len(ids)
    x = W["token_embd.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(L):
        p = "blk.%d." % l
        h = rmsnorm(x, W[p + "attn_norm.weight"])
        q = rope_interleaved((h @ W[p + "attn_q.weight"].T).reshape(T, NH, hs), T)
        k = rope_interleaved((h @ W[p + "attn_k.weight"].T).reshape(T, NKV, hs), T)
        v = (h @ W[p + "attn_v.weight"].T).reshape(T, NKV, hs)
        y = np.empty((T, NH, hs))
        for hh in range(NH):
            kv = hh // (NH // NKV)
            s = q[:, hh] @ k[:, kv].T / np.sqrt(hs) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            y[:, hh] = (s / s.sum(axis=1, keepdims=True)) @ v[:, kv]
        x = x + y.reshape(T, C) @ W[p + "attn_output.weight"].T
        h = rmsnorm(x, W[p + "ffn_norm.weight"])
        g = h @ W[p + "ffn_gate.weight"].T
        u = h @ W[p + "ffn_up.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "ffn_down.weight"].T
    return rmsnorm(x, W["output_norm.weight"]) @ head.T  # (T, V)


cases = []
for n, (text, ids) in enumerate(PROMPTS):
    logits = forward(ids)
    last = logits[-1].astype(np.float32)
    c = {"text": text, "ids": ids, "argmax": [int(i) for i in logits.argmax(axis=1)]}
    if n == 0:
        c["last_logits_f32_b64"] = base64.b64encode(last.astype("<f4").tobytes()).decode()
    else:
        top = np.argsort(-logits[-1])[:TOPK]
        c["top_ids"] = [int(i) for i in top]
        c["top_logits"] = [float(last[i]) for i in top]
    cases.append(c)
    print("prompt %d: argmax of last position %d (logit %.4f)" % (n, c["argmax"][-1], logits[-1].max()))

ids = list(PROMPTS[0][1])
greedy, margins = [], []
for _ in range(N_GREEDY):
    lg = forward(ids)[-1]
    o = np.argsort(-lg)[:2]
    greedy.append(int(o[0]))
    margins.append(float(lg[o[0]] - lg[o[1]]))
    ids.append(int(o[0]))
print("greedy:", greedy)
print("min top1-top2 margin: %.4f" % min(margins))
out = {"model": os.path.basename(PATH), "cases": cases, "greedy_prompt": 0, "greedy_ids": greedy,
       "greedy_margins": margins}
with open(os.path.join(HERE, "smollm2_logits.json"), "w") as f:
    json.dump(out, f, indent=1)

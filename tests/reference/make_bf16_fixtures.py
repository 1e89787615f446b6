#!/usr/bin/env python3
"""bf16 mixed-precision twins of the lmforge model, for tests/test_bf16_reference.c.

Usage (PyPI torch 2.15.0, the venv of the PEFT fixtures):

    /path/to/venv/bin/python tests/reference/make_bf16_fixtures.py

Reads the weights, batches and optimizer settings of fixtures/{gpt2,llama}.safetensors (make_fixtures.py) and
writes fixtures/bf16/{gpt2,llama}.safetensors with two twins of `lmforge train --precision bf16`:

- `emul.*`, the exact twin: float64, with every product's inputs rounded to bfloat16 (round to nearest even) as
  lmforge's lmf_sgemm_bf16 rounds them: each linear layer's forward x W^T (x and W rounded), input gradient dy W
  and weight gradient dy^T x (dy, W and x rounded), the head (tied or not) included, and attention's products
  (scores q k^T, output P v, and their gradients dO v^T, P^T dO, dS k, dS^T q: each operand rounded); products of
  bf16 values are exact, so the only other difference from lmforge is fp32 against fp64 summation. The softmax,
  norms, activations, residuals, biases, the loss and AdamW unrounded. The C test holds lmforge to this one tightly.
- `autocast.*`: the same model in float32 under torch.autocast(device_type="cpu", dtype=torch.bfloat16), PyTorch's
  own mixed precision, with fp32 master weights and fp32 AdamW. Autocast on CPU (checked in torch 2.15 by the dtype
  each op returns, see autocast_rules() below) runs matmul / linear / bmm / baddbmm / scaled_dot_product_attention in
  bf16, the tied head's product included (F.linear / @ with wte is a matmul like any other); embedding lookups and
  cross_entropy run in fp32; softmax, layer_norm, gelu, silu follow their input's dtype. So it differs from lmforge
  in two places: (1) a matmul's *output* is rounded to bf16 too (lmforge keeps the fp32 sum), and with it what
  consumes that output before a residual or bias add promotes back to fp32 (llama's q/k/v and RoPE, the attention
  scores and their softmax, SwiGLU, the logits before the fp32 cross-entropy); (2) its backward rounds the
  gradients that flow out of each product to bf16 as well. Biases are added after the product here (fp32), as
  lmforge adds them; F.linear under autocast would round the bias to bf16 too.

Each fixture holds, per twin P in {emul, autocast}: P.logits (B,T,V), P.loss (1,), P.grad.<param> for the fixture's
gradient batch, P.train.losses (S,) and P.final.<param> after the fixture's S AdamW steps (warmup + cosine, clip 1,
weight decay on the matrices), with the schedule and hyperparameters of the source fixture. Metadata: the source
fixture's name and the torch version. Deterministic: no random numbers are drawn here.
"""

import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_fixtures as mf  # noqa: E402

OUT_DIR = os.path.join(HERE, "fixtures", "bf16")
FIXTURES = ["gpt2", "llama"]


def r16(t):
    """Round to bfloat16 (nearest even) and back: the value lmf_sgemm_bf16 multiplies."""
    return t.to(torch.bfloat16).to(t.dtype)


class RoundedLinear(torch.autograd.Function):
    """y = r(x) r(W)^T; dx = r(dy) r(W); dW = r(dy)^T r(x): lmforge's three bf16 products, summed in float64."""

    @staticmethod
    def forward(ctx, x, W):
        ctx.save_for_backward(x, W)
        return r16(x) @ r16(W).t()

    @staticmethod
    def backward(ctx, dy):
        x, W = ctx.saved_tensors
        dy16 = r16(dy)
        dx = dy16 @ r16(W)
        dW = dy16.reshape(-1, dy.shape[-1]).t() @ r16(x).reshape(-1, x.shape[-1])
        return dx, dW


def lin_emul(x, W):
    return RoundedLinear.apply(x, W)


def lin_plain(x, W):
    return x @ W.t()  # under autocast: bf16 inputs, bf16 output


class RoundedMatmul(torch.autograd.Function):
    """a @ b with both rounded; da = r(g) r(b)^T, db = r(a)^T r(g): attention's products in lmforge's bf16."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return r16(a) @ r16(b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        g16 = r16(g)
        return g16 @ r16(b).transpose(-1, -2), r16(a).transpose(-1, -2) @ g16


def attention(q, k, v, mask, hs, mm):
    """q, k, v (B, H, T, hs) -> (B, H, T, hs); mm does the two products (rounded for the exact twin, plain @ under
    autocast); the scores are scaled after their product and the softmax is taken in the scores' type, as
    lmforge's fp32 softmax and autocast's softmax of bf16 scores do."""
    att = mm(q, k.transpose(-1, -2)) / math.sqrt(hs)
    att = att.masked_fill(~mask, float("-inf"))
    return mm(torch.softmax(att, dim=-1), v)


def mm_emul(a, b):
    return RoundedMatmul.apply(a, b)


def mm_plain(a, b):
    return a @ b


def forward(cfg, p, tokens, lin, mm):
    """make_fixtures.forward with the linear products through lin and attention's through mm."""
    gpt2 = cfg["arch"] == "gpt2"
    B, T = tokens.shape
    C, NH, NKV, L = cfg["n_embd"], cfg["n_head"], cfg["n_kv_head"], cfg["n_layer"]
    Fd, eps = cfg["ffn_dim"], cfg["norm_eps"]
    hs = C // NH
    kvC = NKV * hs
    group = NH // NKV
    dt = p["wte"].dtype
    x = p["wte"][tokens]
    if gpt2:
        x = x + p["wpe"][:T][None]
    else:
        cos, sin = (t.to(dt) for t in mf.rope_cos_sin(T, hs, cfg["rope_theta"]))
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(L):
        h = mf.layernorm(x, p["ln1_w"][l], p["ln1_b"][l], eps) if gpt2 else mf.rmsnorm(x, p["ln1_w"][l], eps)
        qkv = lin(h, p["qkv_w"][l])
        if gpt2:
            qkv = qkv + p["qkv_b"][l]
        q = qkv[..., :C].reshape(B, T, NH, hs).transpose(1, 2)
        k = qkv[..., C:C + kvC].reshape(B, T, NKV, hs).transpose(1, 2)
        v = qkv[..., C + kvC:].reshape(B, T, NKV, hs).transpose(1, 2)
        if not gpt2:
            q = mf.apply_rope(q, cos, sin)
            k = mf.apply_rope(k, cos, sin)
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        y = attention(q, k, v, mask, hs, mm).transpose(1, 2).reshape(B, T, C)
        y = lin(y, p["attn_proj_w"][l])
        if gpt2:
            y = y + p["attn_proj_b"][l]
        x = x + y
        if gpt2:
            h = mf.layernorm(x, p["ln2_w"][l], p["ln2_b"][l], eps)
            a = mf.gelu_tanh(lin(h, p["fc_w"][l]) + p["fc_b"][l])
            x = x + lin(a, p["fc_proj_w"][l]) + p["fc_proj_b"][l]
        else:
            h = mf.rmsnorm(x, p["ln2_w"][l], eps)
            g = lin(h, p["fc_w"][l][:Fd])
            u = lin(h, p["fc_w"][l][Fd:])
            x = x + lin(F.silu(g) * u, p["fc_proj_w"][l])
    x = mf.layernorm(x, p["lnf_w"], p["lnf_b"], eps) if gpt2 else mf.rmsnorm(x, p["lnf_w"], eps)
    W = p["wte"] if cfg["tied_embeddings"] else p["lm_head"]
    return lin(x, W)


class Twin:
    def __init__(self, name, dtype, lin, mm, autocast):
        self.name, self.dtype, self.lin, self.mm, self.autocast = name, dtype, lin, mm, autocast

    def loss(self, cfg, p, tokens, targets):
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=self.autocast):
            logits = forward(cfg, p, tokens, self.lin, self.mm)
            loss = mf.loss_fn(logits, targets)  # autocast: cross_entropy runs in fp32 on the bf16 logits
        return logits, loss


def train(twin, cfg, init, tr, tokens, targets):
    """make_fixtures.train with the twin's forward: torch AdamW (decay on the matrices), clip, warmup + cosine."""
    p = {n: t.clone().to(twin.dtype).requires_grad_(True) for n, t in init.items()}
    decay = [p[n] for n in p if n in mf.DECAY_NAMES]
    no_decay = [p[n] for n in p if n not in mf.DECAY_NAMES]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=tr["weight_decay"]),
                             dict(params=no_decay, weight_decay=0.0)],
                            lr=tr["lr"], betas=(tr["beta1"], tr["beta2"]), eps=tr["eps"], foreach=False)
    losses = []
    for s in range(tr["train_steps"]):
        for g in opt.param_groups:
            g["lr"] = mf.lr_at(s, tr)
        opt.zero_grad(set_to_none=True)
        _, loss = twin.loss(cfg, p, tokens[s], targets[s])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(p.values()), tr["grad_clip"])
        opt.step()
        losses.append(loss.item())
    return {n: t.detach() for n, t in p.items()}, losses


def autocast_rules():
    """The autocast facts the docstring states, checked on this torch (an assertion fails if a release changes them)."""
    x, W = torch.randn(4, 8), torch.randn(6, 8)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        y = x @ W.t()
        assert y.dtype == torch.bfloat16 and F.linear(x, W).dtype == torch.bfloat16
        assert torch.bmm(x[None], W.t()[None]).dtype == torch.bfloat16
        assert F.embedding(torch.tensor([1]), W).dtype == torch.float32
        assert F.cross_entropy(y, torch.tensor([0, 1, 2, 3])).dtype == torch.float32
        assert torch.softmax(x, -1).dtype == torch.float32 and torch.softmax(y, -1).dtype == torch.bfloat16
        assert F.layer_norm(y, (6,)).dtype == torch.bfloat16 and F.silu(y).dtype == torch.bfloat16
        assert (y + torch.zeros(6)).dtype == torch.float32  # a bias / residual add promotes back to fp32
        d = torch.randn(3, 3, dtype=torch.float64)
        assert (d @ d).dtype == torch.float64  # autocast leaves float64 alone: the exact twin runs outside it


def make(name):
    meta, t = mf.read_safetensors(os.path.join(HERE, "fixtures", f"{name}.safetensors"))
    cfg = {k: (meta[k] if k == "arch" else float(meta[k]) if k in ("norm_eps", "rope_theta") else int(meta[k]))
           for k in ("arch", "vocab_size", "max_seq_len", "n_layer", "n_embd", "n_head", "n_kv_head", "ffn_dim",
                     "norm_eps", "rope_theta", "tied_embeddings")}
    tr = {k: (int(meta[k]) if k in ("warmup_steps", "max_steps", "train_steps") else float(meta[k]))
          for k in mf.TRAIN}
    init = {n: torch.from_numpy(t[f"param.{n}"].copy()).to(torch.float64) for n in mf.PARAM_NAMES
            if f"param.{n}" in t}
    tok = torch.from_numpy(t["tokens"].astype(np.int64))
    tgt = torch.from_numpy(t["targets"].astype(np.int64))
    ttok = torch.from_numpy(t["train.tokens"].astype(np.int64))
    ttgt = torch.from_numpy(t["train.targets"].astype(np.int64))

    out = []
    f32 = lambda x: x.detach().to(torch.float32).numpy()
    res = {}
    for twin in (Twin("emul", torch.float64, lin_emul, mm_emul, False),
                 Twin("autocast", torch.float32, lin_plain, mm_plain, True)):
        p = {n: v.clone().to(twin.dtype).requires_grad_(True) for n, v in init.items()}
        logits, loss = twin.loss(cfg, p, tok, tgt)
        loss.backward()
        final, losses = train(twin, cfg, init, tr, ttok, ttgt)
        res[twin.name] = (loss.item(), losses)
        out.append((f"{twin.name}.logits", f32(logits.float())))
        out.append((f"{twin.name}.loss", np.array([loss.item()], dtype=np.float32)))
        for n in init:
            out.append((f"{twin.name}.grad.{n}", f32(p[n].grad)))
        out.append((f"{twin.name}.train.losses", np.array(losses, dtype=np.float32)))
        for n in init:
            out.append((f"{twin.name}.final.{n}", f32(final[n])))
    # the plain fp64 reference's numbers, for the printout
    print(f"{name}: loss fp64 {float(t['loss'][0]):.6f} emul {res['emul'][0]:.6f} autocast {res['autocast'][0]:.6f}; "
          f"last train loss fp64 {float(t['train.losses'][-1]):.6f} emul {res['emul'][1][-1]:.6f} "
          f"autocast {res['autocast'][1][-1]:.6f}")
    os.makedirs(OUT_DIR, exist_ok=True)
    mf.write_safetensors(os.path.join(OUT_DIR, f"{name}.safetensors"), out,
                         {"source": f"{name}.safetensors", "torch": torch.__version__})


def main():
    torch.manual_seed(0)  # autocast_rules' random inputs only
    autocast_rules()
    torch.use_deterministic_algorithms(True)
    for name in FIXTURES:
        make(name)


if __name__ == "__main__":
    main()

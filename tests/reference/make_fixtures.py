#!/usr/bin/python3
"""Generate PyTorch reference fixtures for the lmforge C model.

Usage (Debian python, which has torch + numpy):

    /usr/bin/python3 tests/reference/make_fixtures.py

Writes tests/reference/fixtures/{gpt2,llama,llama_tied}.safetensors.
Everything is computed in float64 and cast to float32 when written.
The initial weights are generated, rounded to float32 and converted back to
float64 before use, so the C code (fp32) starts from bit-identical weights.

Dependencies: torch and numpy only (the safetensors format is written and
parsed by hand below).
"""

import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures")

DT = torch.float64

# Unified parameter table, in order. Absent tensors are not written.
PARAM_NAMES = [
    "wte", "wpe", "ln1_w", "ln1_b", "qkv_w", "qkv_b", "attn_proj_w",
    "attn_proj_b", "ln2_w", "ln2_b", "fc_w", "fc_b", "fc_proj_w",
    "fc_proj_b", "lnf_w", "lnf_b", "lm_head",
]
# Weight decay is decided by name, not by ndim.
DECAY_NAMES = {"qkv_w", "attn_proj_w", "fc_w", "fc_proj_w", "lm_head"}

TRAIN = dict(lr=1e-3, warmup_steps=3, max_steps=10, min_lr=1e-4,
             beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1,
             grad_clip=1.0, train_steps=10)

FIXTURES = [
    dict(name="gpt2", seed=1234,
         cfg=dict(arch="gpt2", vocab_size=97, max_seq_len=16, n_layer=2,
                  n_embd=32, n_head=4, n_kv_head=4, ffn_dim=128,
                  norm_eps=1e-5, rope_theta=10000.0, tied_embeddings=1),
         B=2, T=8),
    dict(name="llama", seed=5678,
         cfg=dict(arch="llama", vocab_size=101, max_seq_len=16, n_layer=2,
                  n_embd=32, n_head=4, n_kv_head=2, ffn_dim=88,
                  norm_eps=1e-5, rope_theta=10000.0, tied_embeddings=0),
         B=2, T=8),
    dict(name="llama_tied", seed=9012,
         cfg=dict(arch="llama", vocab_size=67, max_seq_len=16, n_layer=1,
                  n_embd=48, n_head=6, n_kv_head=1, ffn_dim=40,
                  norm_eps=1e-6, rope_theta=500000.0, tied_embeddings=1),
         B=3, T=7),
]


# --------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------

def param_shapes(cfg):
    """Ordered dict name -> shape for the tensors present in this family."""
    V, maxT, L, C = (cfg["vocab_size"], cfg["max_seq_len"], cfg["n_layer"],
                     cfg["n_embd"])
    NH, NKV, Fd = cfg["n_head"], cfg["n_kv_head"], cfg["ffn_dim"]
    hs = C // NH
    kvC = NKV * hs
    gpt2 = cfg["arch"] == "gpt2"
    s = {}
    s["wte"] = (V, C)
    if gpt2:
        s["wpe"] = (maxT, C)
    s["ln1_w"] = (L, C)
    if gpt2:
        s["ln1_b"] = (L, C)
    s["qkv_w"] = (L, C + 2 * kvC, C)
    if gpt2:
        s["qkv_b"] = (L, C + 2 * kvC)
    s["attn_proj_w"] = (L, C, C)
    if gpt2:
        s["attn_proj_b"] = (L, C)
    s["ln2_w"] = (L, C)
    if gpt2:
        s["ln2_b"] = (L, C)
    s["fc_w"] = (L, Fd, C) if gpt2 else (L, 2 * Fd, C)
    if gpt2:
        s["fc_b"] = (L, Fd)
    s["fc_proj_w"] = (L, C, Fd)
    if gpt2:
        s["fc_proj_b"] = (L, C)
    s["lnf_w"] = (C,)
    if gpt2:
        s["lnf_b"] = (C,)
    if not cfg["tied_embeddings"]:
        s["lm_head"] = (V, C)
    assert list(s) == [n for n in PARAM_NAMES if n in s]
    return s


def init_params(cfg, gen):
    """Random init; rounded through float32 so C and reference agree bitwise."""
    params = {}
    for name, shape in param_shapes(cfg).items():
        r = torch.randn(shape, generator=gen, dtype=DT)
        if name in ("ln1_w", "ln2_w", "lnf_w"):
            t = 1.0 + 0.1 * r
        else:  # matrices, embeddings and biases all use std 0.02
            t = 0.02 * r
        params[name] = t.to(torch.float32).to(DT)
    return params


# --------------------------------------------------------------------------
# model (plain torch ops, mirroring the C layout)
# --------------------------------------------------------------------------

def layernorm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased
    return (x - mean) / torch.sqrt(var + eps) * w + b


def rmsnorm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(
        math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def rope_cos_sin(T, hs, theta):
    half = hs // 2
    d = torch.arange(half, dtype=DT)
    inv_freq = theta ** (-2.0 * d / hs)
    ang = torch.arange(T, dtype=DT)[:, None] * inv_freq[None, :]  # (T, half)
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x, cos, sin):
    """x: (B, H, T, hs); HF rotate_half (non-interleaved) convention."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def forward(cfg, p, tokens):
    """tokens: (B, T) long -> logits (B, T, V)."""
    gpt2 = cfg["arch"] == "gpt2"
    B, T = tokens.shape
    C, NH, NKV, L = cfg["n_embd"], cfg["n_head"], cfg["n_kv_head"], cfg["n_layer"]
    Fd, eps = cfg["ffn_dim"], cfg["norm_eps"]
    hs = C // NH
    kvC = NKV * hs
    group = NH // NKV

    x = p["wte"][tokens]
    if gpt2:
        x = x + p["wpe"][:T][None]
    else:
        cos, sin = rope_cos_sin(T, hs, cfg["rope_theta"])
    mask = torch.ones(T, T, dtype=torch.bool).tril()

    for l in range(L):
        if gpt2:
            h = layernorm(x, p["ln1_w"][l], p["ln1_b"][l], eps)
        else:
            h = rmsnorm(x, p["ln1_w"][l], eps)
        qkv = h @ p["qkv_w"][l].t()
        if gpt2:
            qkv = qkv + p["qkv_b"][l]
        q = qkv[..., :C].reshape(B, T, NH, hs).transpose(1, 2)
        k = qkv[..., C:C + kvC].reshape(B, T, NKV, hs).transpose(1, 2)
        v = qkv[..., C + kvC:].reshape(B, T, NKV, hs).transpose(1, 2)
        if not gpt2:
            q = apply_rope(q, cos, sin)
            k = apply_rope(k, cos, sin)
        # GQA: query head h uses kv head h // group
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        att = att.masked_fill(~mask, float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        y = y @ p["attn_proj_w"][l].t()
        if gpt2:
            y = y + p["attn_proj_b"][l]
        x = x + y

        if gpt2:
            h = layernorm(x, p["ln2_w"][l], p["ln2_b"][l], eps)
            a = gelu_tanh(h @ p["fc_w"][l].t() + p["fc_b"][l])
            x = x + a @ p["fc_proj_w"][l].t() + p["fc_proj_b"][l]
        else:
            h = rmsnorm(x, p["ln2_w"][l], eps)
            g = h @ p["fc_w"][l][:Fd].t()
            u = h @ p["fc_w"][l][Fd:].t()
            x = x + (F.silu(g) * u) @ p["fc_proj_w"][l].t()

    if gpt2:
        x = layernorm(x, p["lnf_w"], p["lnf_b"], eps)
    else:
        x = rmsnorm(x, p["lnf_w"], eps)
    W = p["wte"] if cfg["tied_embeddings"] else p["lm_head"]
    return x @ W.t()


def loss_fn(logits, targets):
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1).long(),
                           ignore_index=-1)


# --------------------------------------------------------------------------
# independent alternative forward (for self-checking the reference)
# --------------------------------------------------------------------------

def forward_alt(cfg, p, tokens):
    """Deliberately different implementation: torch builtins, per-head loops,
    complex-number RoPE, explicit GQA indexing, per-(b,t) softmax loops."""
    gpt2 = cfg["arch"] == "gpt2"
    B, T = tokens.shape
    C, NH, NKV, L = cfg["n_embd"], cfg["n_head"], cfg["n_kv_head"], cfg["n_layer"]
    Fd, eps = cfg["ffn_dim"], cfg["norm_eps"]
    hs = C // NH
    kvC = NKV * hs
    half = hs // 2

    x = F.embedding(tokens, p["wte"])
    if gpt2:
        x = x + F.embedding(torch.arange(T), p["wpe"])

    def norm(x, w, b):
        if gpt2:
            return F.layer_norm(x, (C,), w, b, eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def rope(vec, t):  # vec: (..., hs) at position t, via complex rotation
        z = torch.complex(vec[..., :half], vec[..., half:])
        ang = torch.tensor([t * cfg["rope_theta"] ** (-(2.0 * d) / hs)
                            for d in range(half)], dtype=DT)
        z = z * torch.polar(torch.ones_like(ang), ang)
        return torch.cat([z.real, z.imag], dim=-1)

    for l in range(L):
        h = norm(x, p["ln1_w"][l], p["ln1_b"][l] if gpt2 else None)
        qkv = F.linear(h, p["qkv_w"][l], p["qkv_b"][l] if gpt2 else None)
        Wq = qkv[..., :C]
        Wk = qkv[..., C:C + kvC]
        Wv = qkv[..., C + kvC:]
        out = torch.zeros(B, T, C, dtype=DT)
        for b in range(B):
            for hd in range(NH):
                kvh = hd // (NH // NKV)
                for t in range(T):
                    qv = Wq[b, t, hd * hs:(hd + 1) * hs]
                    if not gpt2:
                        qv = rope(qv, t)
                    scores = []
                    for s in range(t + 1):
                        kv = Wk[b, s, kvh * hs:(kvh + 1) * hs]
                        if not gpt2:
                            kv = rope(kv, s)
                        scores.append((qv * kv).sum() / math.sqrt(hs))
                    scores = torch.stack(scores)
                    w = torch.exp(scores - scores.max())
                    w = w / w.sum()
                    acc = torch.zeros(hs, dtype=DT)
                    for s in range(t + 1):
                        acc = acc + w[s] * Wv[b, s, kvh * hs:(kvh + 1) * hs]
                    out[b, t, hd * hs:(hd + 1) * hs] = acc
        x = x + F.linear(out, p["attn_proj_w"][l],
                         p["attn_proj_b"][l] if gpt2 else None)
        h = norm(x, p["ln2_w"][l], p["ln2_b"][l] if gpt2 else None)
        if gpt2:
            a = F.gelu(F.linear(h, p["fc_w"][l], p["fc_b"][l]), approximate="tanh")
            x = x + F.linear(a, p["fc_proj_w"][l], p["fc_proj_b"][l])
        else:
            gu = F.linear(h, p["fc_w"][l])
            g, u = gu[..., :Fd], gu[..., Fd:]
            x = x + F.linear(g * torch.sigmoid(g) * u, p["fc_proj_w"][l])
    x = norm(x, p["lnf_w"], p["lnf_b"] if gpt2 else None)
    W = p["wte"] if cfg["tied_embeddings"] else p["lm_head"]
    return F.linear(x, W)


def loss_alt(logits, targets):
    lp = logits - logits.logsumexp(-1, keepdim=True)
    tot, n = 0.0, 0
    for idx in np.ndindex(*targets.shape):
        tgt = int(targets[idx])
        if tgt == -1:
            continue
        tot = tot - lp[idx][tgt]
        n += 1
    return tot / n


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------

def lr_at(step, tr):
    if step < tr["warmup_steps"]:
        return tr["lr"] * (step + 1) / tr["warmup_steps"]
    ratio = (step - tr["warmup_steps"]) / (tr["max_steps"] - tr["warmup_steps"])
    return tr["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (tr["lr"] - tr["min_lr"])


def train(cfg, init, tr, train_tokens, train_targets):
    p = {n: t.clone().requires_grad_(True) for n, t in init.items()}
    decay = [p[n] for n in p if n in DECAY_NAMES]
    no_decay = [p[n] for n in p if n not in DECAY_NAMES]
    opt = torch.optim.AdamW(
        [dict(params=decay, weight_decay=tr["weight_decay"]),
         dict(params=no_decay, weight_decay=0.0)],
        lr=tr["lr"], betas=(tr["beta1"], tr["beta2"]), eps=tr["eps"])
    losses, norms, lrs = [], [], []
    for s in range(tr["train_steps"]):
        lr = lr_at(s, tr)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(forward(cfg, p, train_tokens[s]), train_targets[s])
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(list(p.values()), tr["grad_clip"])
        opt.step()
        losses.append(loss.item())
        norms.append(gn.item())
        lrs.append(lr)
    final = {n: t.detach().clone() for n, t in p.items()}
    return final, losses, norms, lrs


def train_manual(cfg, init, tr, train_tokens, train_targets):
    """Independent re-implementation of clip + AdamW + schedule (the formulas
    the C code implements), used only to cross-check train()."""
    p = {n: t.clone() for n, t in init.items()}
    m = {n: torch.zeros_like(t) for n, t in p.items()}
    v = {n: torch.zeros_like(t) for n, t in p.items()}
    b1, b2, eps = tr["beta1"], tr["beta2"], tr["eps"]
    losses, norms = [], []
    for s in range(tr["train_steps"]):
        lr = lr_at(s, tr)
        q = {n: t.clone().requires_grad_(True) for n, t in p.items()}
        loss = loss_alt(forward(cfg, q, train_tokens[s]), train_targets[s])
        loss.backward()
        g = {n: q[n].grad.detach() for n in q}
        norm = math.sqrt(sum(float((x * x).sum()) for x in g.values()))
        coef = tr["grad_clip"] / (norm + 1e-6)
        if coef < 1.0:
            g = {n: x * coef for n, x in g.items()}
        t = s + 1
        for n in p:
            wd = tr["weight_decay"] if n in DECAY_NAMES else 0.0
            m[n] = b1 * m[n] + (1 - b1) * g[n]
            v[n] = b2 * v[n] + (1 - b2) * g[n] * g[n]
            mhat = m[n] / (1 - b1 ** t)
            vhat = v[n] / (1 - b2 ** t)
            p[n] = p[n] * (1 - lr * wd) - lr * mhat / (torch.sqrt(vhat) + eps)
        losses.append(float(loss))
        norms.append(norm)
    return p, losses, norms


# --------------------------------------------------------------------------
# safetensors (hand written)
# --------------------------------------------------------------------------

def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, np.ndarray float32/int32), written in order."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs = []
    off = 0
    for name, arr in tensors:
        if arr.dtype == np.float32:
            dt = "F32"
        elif arr.dtype == np.int32:
            dt = "I32"
        else:
            raise TypeError(f"{name}: unsupported dtype {arr.dtype}")
        data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    pad = (-(8 + len(hj))) % 8
    hj = hj + b" " * pad
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for bl in blobs:
            f.write(bl)
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    assert (8 + n) % 8 == 0, "data start not 8-byte aligned"
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__")
    data = buf[8 + n:]
    out = {}
    end_max = 0
    order = []
    for name, info in header.items():
        b, e = info["data_offsets"]
        dt = {"F32": "<f4", "I32": "<i4"}[info["dtype"]]
        arr = np.frombuffer(data[b:e], dtype=dt).reshape(info["shape"])
        assert arr.nbytes == e - b
        out[name] = arr
        order.append((b, e))
        end_max = max(end_max, e)
    order.sort()
    pos = 0
    for b, e in order:  # contiguous, no gaps or overlaps
        assert b == pos, "tensors not contiguous"
        pos = e
    assert end_max == len(data), "trailing bytes after last tensor"
    return meta, out


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def relerr(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def make_fixture(fx):
    cfg, B, T, seed = fx["cfg"], fx["B"], fx["T"], fx["seed"]
    V = cfg["vocab_size"]
    S = TRAIN["train_steps"]
    assert cfg["n_embd"] % cfg["n_head"] == 0
    assert cfg["n_head"] % cfg["n_kv_head"] == 0
    assert (cfg["n_embd"] // cfg["n_head"]) % 2 == 0
    assert T <= cfg["max_seq_len"]
    if cfg["arch"] == "gpt2":
        assert cfg["n_kv_head"] == cfg["n_head"]

    gen = torch.Generator().manual_seed(seed)
    init = init_params(cfg, gen)

    tokens = torch.randint(0, V, (B, T), generator=gen)
    targets = torch.randint(0, V, (B, T), generator=gen)
    # a few ignored positions (deterministic, spread over batch rows)
    targets[0, 1] = -1
    targets[B - 1, T - 1] = -1
    targets[B // 2, T // 2] = -1

    train_tokens = torch.randint(0, V, (S, B, T), generator=gen)
    train_targets = torch.randint(0, V, (S, B, T), generator=gen)
    train_targets[:, 0, 0] = -1  # one ignored position per training batch

    # gradient check data
    p = {n: t.clone().requires_grad_(True) for n, t in init.items()}
    logits = forward(cfg, p, tokens)
    loss = loss_fn(logits, targets)
    loss.backward()
    grads = {n: t.grad.detach().clone() for n, t in p.items()}

    # --- self-checks of the reference itself ---
    with torch.no_grad():
        logits_alt = forward_alt(cfg, init, tokens)
        loss2 = loss_alt(logits_alt, targets)
    e_logits = relerr(logits.detach().numpy(), logits_alt.numpy())
    e_loss = abs(loss.item() - float(loss2)) / abs(float(loss2))
    assert e_logits < 1e-12, f"alt forward mismatch {e_logits}"
    assert e_loss < 1e-12, f"alt loss mismatch {e_loss}"
    # finite-difference spot checks on a few gradient entries
    fd_max = 0.0
    fd_gen = torch.Generator().manual_seed(seed + 1)
    for name in init:
        q = {n: t.clone() for n, t in init.items()}
        flat = q[name].view(-1)
        i = int(torch.randint(0, flat.numel(), (1,), generator=fd_gen))
        h = 1e-6
        with torch.no_grad():
            flat[i] += h
            lp = loss_fn(forward(cfg, q, tokens), targets).item()
            flat[i] -= 2 * h
            lm = loss_fn(forward(cfg, q, tokens), targets).item()
        fd = (lp - lm) / (2 * h)
        an = grads[name].view(-1)[i].item()
        err = abs(fd - an) / (abs(an) + 1e-4)
        fd_max = max(fd_max, err)
        assert err < 1e-5, f"finite-difference mismatch {name}[{i}]: {fd} vs {an}"

    # --- training ---
    final, losses, norms, lrs = train(cfg, init, TRAIN, train_tokens, train_targets)
    # training should make progress on the seen batches on average
    assert all(math.isfinite(v) for v in losses + norms)
    final_m, losses_m, norms_m = train_manual(cfg, init, TRAIN, train_tokens,
                                              train_targets)
    e_train = max(relerr(losses, losses_m), relerr(norms, norms_m),
                  max(relerr(final[n].numpy(), final_m[n].numpy()) for n in final))
    assert e_train < 1e-10, f"manual AdamW mismatch {e_train}"

    f32 = lambda t: t.detach().to(torch.float32).numpy()
    i32 = lambda t: t.to(torch.int32).numpy()
    tensors = []
    for n in init:
        tensors.append((f"param.{n}", f32(init[n])))
    tensors.append(("tokens", i32(tokens)))
    tensors.append(("targets", i32(targets)))
    tensors.append(("logits", f32(logits)))
    tensors.append(("loss", np.array([loss.item()], dtype=np.float32)))
    for n in init:
        tensors.append((f"grad.{n}", f32(grads[n])))
    tensors.append(("train.tokens", i32(train_tokens)))
    tensors.append(("train.targets", i32(train_targets)))
    tensors.append(("train.losses", np.array(losses, dtype=np.float32)))
    tensors.append(("train.grad_norms", np.array(norms, dtype=np.float32)))
    tensors.append(("train.lrs", np.array(lrs, dtype=np.float32)))
    for n in init:
        tensors.append((f"final.{n}", f32(final[n])))

    def fmt(v):
        if isinstance(v, float):
            return repr(v)
        return str(v)

    meta = {}
    for k in ("arch", "vocab_size", "max_seq_len", "n_layer", "n_embd",
              "n_head", "n_kv_head", "ffn_dim", "norm_eps", "rope_theta",
              "tied_embeddings"):
        meta[k] = fmt(cfg[k])
    meta["B"] = str(B)
    meta["T"] = str(T)
    for k in ("lr", "warmup_steps", "max_steps", "min_lr", "beta1", "beta2",
              "eps", "weight_decay", "grad_clip", "train_steps"):
        meta[k] = fmt(TRAIN[k])

    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, fx["name"] + ".safetensors")
    write_safetensors(path, tensors, meta)

    # --- round-trip check with our own parser ---
    meta_r, got = read_safetensors(path)
    assert meta_r == meta, "metadata round-trip failed"
    assert list(got) == [n for n, _ in tensors], "tensor order mismatch"
    for n, arr in tensors:
        assert got[n].dtype == arr.dtype and got[n].shape == arr.shape, n
        assert np.array_equal(got[n], arr), f"round-trip mismatch {n}"
    # weights read back are exactly the float64 weights used
    for n in init:
        assert np.array_equal(got[f"param.{n}"].astype(np.float64), init[n].numpy()), n

    size = os.path.getsize(path)
    print(f"{fx['name']:>11}: {size:7d} bytes  loss={loss.item():.6f}  "
          f"alt-forward relerr={e_logits:.1e}  fd-grad relerr={fd_max:.1e}  "
          f"manual-adamw relerr={e_train:.1e}  clipped steps="
          f"{sum(x > TRAIN['grad_clip'] for x in norms)}/{len(norms)}")
    # The brief asked for files well under 300 KB, but the prescribed gpt2
    # dimensions (~29.5K params, stored three times: param/grad/final) give
    # ~360 KB. The dimensions were kept; this guards against accidental growth.
    assert size < 400 * 1024, f"{path} is unexpectedly large ({size} bytes)"
    return path


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for fx in FIXTURES:
        make_fixture(fx)
    return 0


if __name__ == "__main__":
    sys.exit(main())

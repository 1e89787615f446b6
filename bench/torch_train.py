#!/usr/bin/python3
"""PyTorch CPU twin of bench_train.c: the same gpt2 / llama shapes, one training step = forward + backward +
clip_grad_norm_ + AdamW, timed after 2 warm-up steps. Prints one line like bench_train.

usage: torch_train.py ARCH L C H KVH F V B T THREADS STEPS
env:   TORCH_AUTOCAST=bf16 runs the forward under torch.autocast("cpu", dtype=torch.bfloat16) (oneDNN's bf16
       products: AMX tiles where the CPU has them); the line then says precision=bf16-autocast.
"""
import contextlib, math, os, resource, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(s, arch, C, H, KVH, Fd):
        super().__init__()
        s.arch, s.H, s.KVH, s.hs = arch, H, KVH, C // H
        gpt2 = arch == "gpt2"
        Norm = nn.LayerNorm if gpt2 else RMSNorm
        s.n1, s.n2 = Norm(C), Norm(C)
        s.qkv = nn.Linear(C, C + 2 * KVH * s.hs, bias=gpt2)
        s.proj = nn.Linear(C, C, bias=gpt2)
        s.fc = nn.Linear(C, Fd if gpt2 else 2 * Fd, bias=gpt2)
        s.fcproj = nn.Linear(Fd, C, bias=gpt2)

    def forward(s, x, cos, sin):
        B, T, C = x.shape
        q, k, v = s.qkv(s.n1(x)).split([C, s.KVH * s.hs, s.KVH * s.hs], dim=-1)
        q = q.view(B, T, s.H, s.hs).transpose(1, 2)
        k = k.view(B, T, s.KVH, s.hs).transpose(1, 2)
        v = v.view(B, T, s.KVH, s.hs).transpose(1, 2)
        if s.arch == "llama":
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            if s.KVH != s.H:
                k = k.repeat_interleave(s.H // s.KVH, dim=1)
                v = v.repeat_interleave(s.H // s.KVH, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(s.hs)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + s.proj(y)
        h = s.fc(s.n2(x))
        if s.arch == "gpt2":
            h = F.gelu(h, approximate="tanh")
        else:
            g, u = h.chunk(2, dim=-1)
            h = F.silu(g) * u
        return x + s.fcproj(h)


class RMSNorm(nn.Module):
    def __init__(s, C, eps=1e-5):
        super().__init__()
        s.w, s.eps = nn.Parameter(torch.ones(C)), eps

    def forward(s, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.eps) * s.w


def rope(x, cos, sin):
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Model(nn.Module):
    def __init__(s, arch, L, C, H, KVH, Fd, V, T):
        super().__init__()
        s.arch = arch
        s.wte = nn.Embedding(V, C)
        s.wpe = nn.Embedding(T, C) if arch == "gpt2" else None
        s.blocks = nn.ModuleList([Block(arch, C, H, KVH, Fd) for _ in range(L)])
        s.nf = nn.LayerNorm(C) if arch == "gpt2" else RMSNorm(C)
        hs = C // H
        ang = torch.arange(T)[:, None] * (10000.0 ** (-2.0 * torch.arange(hs // 2) / hs))[None, :]
        s.register_buffer("cos", torch.cos(ang), persistent=False)
        s.register_buffer("sin", torch.sin(ang), persistent=False)

    def forward(s, idx, targets):
        B, T = idx.shape
        x = s.wte(idx)
        if s.wpe is not None:
            x = x + s.wpe(torch.arange(T))
        for b in s.blocks:
            x = b(x, s.cos[:T], s.sin[:T])
        logits = s.nf(x) @ s.wte.weight.t()  # tied head
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    a = sys.argv[1:]
    if len(a) != 11:
        sys.exit(__doc__)
    arch = a[0]
    L, C, H, KVH, Fd, V, B, T, threads, steps = map(int, a[1:])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = Model(arch, L, C, H, KVH, Fd, V, T)
    for n, p in m.named_parameters():  # GPT-2 style init, as lmforge (keeps the loss sane; speed is unaffected)
        if p.dim() >= 2:
            torch.nn.init.normal_(p, std=0.02)
    decay = [p for n, p in m.named_parameters() if p.dim() >= 2 and "wte" not in n and "wpe" not in n]
    other = [p for n, p in m.named_parameters() if not (p.dim() >= 2 and "wte" not in n and "wpe" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    tok = torch.randint(0, V, (B * T + 1,))
    x, y = tok[:-1].view(B, T), tok[1:].view(B, T)
    autocast = os.environ.get("TORCH_AUTOCAST") == "bf16"
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else contextlib.nullcontext
    times, loss0, loss = [], 0.0, 0.0
    for s in range(steps + 2):
        t0 = time.perf_counter()
        with ctx():
            loss = m(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        if s >= 2:
            times.append(time.perf_counter() - t0)
        if s == 0:
            loss0 = loss.item()
    times.sort()
    med = times[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    n = sum(p.numel() for p in m.parameters())
    print(f"torch ms_per_step={med*1e3:.1f} tok_per_s={B*T/med:.1f} peak_rss_mib={rss:.0f} params={n} "
          f"loss0={loss0:.4f} lossN={loss.item():.4f} version={torch.__version__}"
          + (" precision=bf16-autocast" if autocast else ""))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Training speed of transformers' Mixtral MoE block alone (fp32, the eager experts loop: one pass per expert over
the tokens routed to it, as transformers does it), for bench/moe_block_bench.sh: the router (MixtralTopKRouter), the
experts (MixtralExperts) and the load-balancing aux loss (coefficient 0.01) forward, then backward through all of
them, on N = B x T fixed random rows of width C. The same work as bench_moe_block (lmf_moe_forward + losses +
lmf_moe_backward). Prints the median tokens/s of STEPS timed passes after 2 warm-up passes.

usage: moe_torch_block.py C E K F B T THREADS STEPS
"""
import statistics
import sys
import time

import torch
from transformers import MixtralConfig
from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock, load_balancing_loss_func

C, E, K, F, B, T, threads, steps = map(int, sys.argv[1:9])
torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = MixtralConfig(hidden_size=C, intermediate_size=F, num_local_experts=E, num_experts_per_tok=K,
                    router_jitter_noise=0.0, experts_implementation="eager")
block = MixtralSparseMoeBlock(cfg).train()
with torch.no_grad():
    for p in block.parameters():
        p.normal_(0.0, 0.02)
x = torch.randn(B * T, C, requires_grad=True)
dout = 1e-3 * torch.randn(B * T, C)
times = []
for i in range(steps + 2):
    t0 = time.perf_counter()
    block.zero_grad()
    x.grad = None
    logits, w, idx = block.gate(x)
    y = block.experts(x, idx, w)
    aux = load_balancing_loss_func((logits,), E, K)
    loss = (y * dout).sum() + 0.01 * aux
    loss.backward()
    if i >= 2:
        times.append(time.perf_counter() - t0)
med = statistics.median(times)
print(f"torch {torch.__version__} MixtralSparseMoeBlock threads={threads} ms={med * 1e3:.2f} tok_per_s={B * T / med:.1f}")

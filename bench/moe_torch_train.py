#!/usr/bin/env python3
"""Training tokens/s of transformers' MixtralForCausalLM (fp32, eager attention, the eager experts loop: one pass
per expert over the tokens routed to it, as transformers does it) for bench/moe_train_bench.sh: the same shape as
bench/moe_bench.sh's MoE (4 layers, C 128, 4 heads, 8 experts of 256, top-2, vocab 4096, untied head, B 16 x T 128),
random tokens, one step = forward (with the router aux loss) + backward + clip + AdamW. Prints the median tokens/s of
STEPS timed steps after 3 warm-up steps.

usage: moe_torch_train.py [THREADS=2] [STEPS=10]
env:   TORCH_AUTOCAST=bf16 runs the forward under torch.autocast("cpu", dtype=torch.bfloat16) (oneDNN's bf16
       products, as lmforge's --precision bf16 rounds its products; the weights, gradients and AdamW stay fp32)
"""
import contextlib
import os
import statistics
import sys
import time

import torch
from transformers import MixtralConfig, MixtralForCausalLM

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
torch.set_num_threads(threads)
torch.manual_seed(0)
B, T = 16, 128
cfg = MixtralConfig(vocab_size=4096, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=4, num_local_experts=8, num_experts_per_tok=2,
                    max_position_embeddings=T, tie_word_embeddings=True, router_aux_loss_coef=0.01,
                    output_router_logits=True, attn_implementation="eager", experts_implementation="eager")
model = MixtralForCausalLM(cfg).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
autocast = os.environ.get("TORCH_AUTOCAST") == "bf16"
ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else contextlib.nullcontext
times = []
for i in range(steps + 3):
    x = torch.randint(0, cfg.vocab_size, (B, T))
    t0 = time.perf_counter()
    with ctx():
        out = model(input_ids=x, labels=x)
    opt.zero_grad()
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if i >= 3:
        times.append(time.perf_counter() - t0)
print(f"torch {torch.__version__} transformers MixtralForCausalLM threads={threads} "
      f"tok_per_s={B * T / statistics.median(times):.1f} precision={'bf16-autocast' if autocast else 'fp32'}")

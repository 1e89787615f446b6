#!/usr/bin/env python3
"""Hugging Face PEFT + PyTorch CPU twin of `lmforge finetune` (LoRA): one step = forward + backward +
clip_grad_norm_ (1.0, as lmforge's default --grad-clip) + AdamW step + zero_grad, on B x T token batches cut from
the same {"text"} JSONL with the model's own tokenizer (BOS when the tokenizer wants it + text + EOS, truncated to T;
every position in the loss, labels = input_ids). 1 warm-up step, then STEPS timed; prints the median like bench_train.

usage: peft_finetune.py HF_DIR DATA.jsonl THREADS [B=4] [T=512] [STEPS=5] [R=16] [ALPHA=32] [DROPOUT=0.1]
R = 0: full fine-tuning instead (plain PyTorch: every weight trains, no PEFT), the twin of `lmforge finetune --full`.
env: TORCH_AUTOCAST=bf16 runs the forward under torch.autocast("cpu", dtype=torch.bfloat16) (the line says
     precision=bf16-autocast), the twin of lmforge's bf16 products.
"""
import contextlib, json, os, resource, sys, time

import torch
import transformers
import peft
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    a = sys.argv[1:]
    if len(a) < 3:
        sys.exit(__doc__)
    hf, data, threads = a[0], a[1], int(a[2])
    B, T, steps, r = (int(x) for x in (a[3:] + ["4", "512", "5", "16"][len(a) - 3:])[:4])
    alpha = float(a[7]) if len(a) > 7 else 32.0
    dropout = float(a[8]) if len(a) > 8 else 0.1
    torch.set_num_threads(threads)
    torch.manual_seed(1337)

    tok = AutoTokenizer.from_pretrained(hf)
    rows = []
    with open(data) as f:
        for line in f:
            ids = tok(json.loads(line)["text"])["input_ids"]
            if tok.eos_token_id is not None:
                ids = ids + [tok.eos_token_id]
            if len(ids) >= T:
                rows.append(ids[:T])
    need = B * (steps + 1)
    if len(rows) < need:
        sys.exit(f"{data}: {len(rows)} examples of >= {T} tokens, need {need}")
    batches = [torch.tensor(rows[i * B:(i + 1) * B], dtype=torch.long) for i in range(steps + 1)]

    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
    if r > 0:
        cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=["q_proj", "v_proj"],
                         task_type="CAUSAL_LM")
        model = get_peft_model(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    autocast = os.environ.get("TORCH_AUTOCAST") == "bf16"
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else contextlib.nullcontext
    times, losses = [], []
    for s in range(steps + 1):
        x = batches[s]
        t0 = time.perf_counter()
        with ctx():
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        losses.append(loss.item())
        if s >= 1:
            times.append(dt)
    times.sort()
    med = times[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    attn = getattr(model.config, "_attn_implementation", "?")
    print(f"{'peft' if r > 0 else 'torch-full'} ms_per_step={med*1e3:.1f} tok_per_s={B*T/med:.1f} peak_rss_mib={rss:.0f} trainable={n_train} "
          f"loss0={losses[0]:.4f} lossN={losses[-1]:.4f} attn={attn} torch={torch.__version__.split('+')[0]} "
          f"transformers={transformers.__version__} peft={peft.__version__}"
          + (" precision=bf16-autocast" if autocast else ""))


if __name__ == "__main__":
    main()

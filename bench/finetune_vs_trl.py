#!/usr/bin/env python3
"""The demo fine-tune (make demo-finetune) run again with Hugging Face TRL's SFTTrainer + PEFT, and the final
validation losses of both runs compared (issue 12: within 2%). Called by bench/finetune_vs_trl.sh, which has run
`lmforge finetune` first; see that script for the whole procedure.

What is held equal, and how:
- weights: the HF folder is `lmforge export` of the same F32 GGUF lmforge trained on;
- tokens and loss masks: the conversations are rendered with the model's chat template (the exported
  tokenizer_config.json) and tokenized with the exported tokenizer.json; the loss covers each assistant turn's
  content and its <|im_end|>, as src/train/sft.h defines it (not the "<|im_start|>assistant\\n" header, not the "\\n"
  after <|im_end|>), truncated to the first T tokens. The ids are checked against `lmforge tokenize` and the counts
  against lmforge's own log, and the validation loss of the base and of lmforge's adapter, computed here, against
  lmforge's metrics.jsonl. TRL's own chat masking is not used for training: SmolLM2's template has no
  {% generation %} markers (assistant_only_loss refuses it) and the conversational prompt/completion form also
  trains the "\\n" after each <|im_end|>; the script reports how many tokens that differs by;
- data order: lmforge's loader (a PCG32 Fisher-Yates permutation per epoch, seeded by (seed, epoch)) reproduced
  here, and TRL given the examples in that order with a sequential sampler;
- optimisation: torch.optim.AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0), lmforge's schedule (linear warmup
  lr*(s+1)/W, cosine to min_lr at max_steps) as a LambdaLR, grad-norm clipping 1.0, batch B of right-padded rows,
  loss = mean over the batch's loss tokens (transformers' num_items_in_batch; lmforge's cross-entropy likewise);
- LoRA: r, alpha, dropout on q_proj,v_proj (PEFT's LoraConfig; A kaiming-uniform and B zero on both sides, from
  different RNGs, as are the dropout masks: exact equality is not expected).
Both adapters are evaluated by the one evaluator here (float32, dropout off, sum of token losses / loss tokens).

usage: finetune_vs_trl.py --hf DIR --data DIR --lmforge-run DIR [--lmforge BIN --gguf FILE] [hyperparameters]
prints a markdown table and a `key=value` summary line; exit 1 when the relative difference exceeds --bar."""
import argparse, json, math, os, re, subprocess, sys, time

import torch
import transformers, peft, trl
from datasets import Dataset
from peft import LoraConfig, PeftModel, get_peft_model
from torch.utils.data import SequentialSampler
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

M64 = (1 << 64) - 1


class Pcg32:
    """src/core/rng.c, bit for bit: lmforge's data order comes from it."""

    def __init__(self, seed, stream):
        self.state, self.inc = 0, ((stream << 1) | 1) & M64
        self.u32()
        self.state = (self.state + seed) & M64
        self.u32()

    def u32(self):
        old = self.state
        self.state = (old * 6364136223846793005 + self.inc) & M64
        xs = (((old >> 18) ^ old) >> 27) & 0xFFFFFFFF
        rot = old >> 59
        return ((xs >> rot) | (xs << ((-rot) & 31))) & 0xFFFFFFFF

    def below(self, n):
        if n <= 1:
            return 0
        limit = M64 - M64 % n
        while True:
            x = (self.u32() << 32) | self.u32()
            if x < limit:
                return x % n


def permutation(n, seed, stream):  # src/train/sft.c permutation()
    order, r = list(range(n)), Pcg32(seed, stream)
    for i in range(n, 1, -1):
        j = r.below(i)
        order[i - 1], order[j] = order[j], order[i - 1]
    return order


def lmforge_order(n, seed, count):
    """The example indices lmforge's loader serves for `count` rows (lmf_sft_loader_next)."""
    out, epoch = [], 0
    while len(out) < count:
        out += permutation(n, seed, epoch)
        epoch += 1
    return out[:count]


def lr_at(step, lr, min_lr, warmup, max_steps):  # src/train/optim.c lmf_lr_at
    if step < warmup:
        return lr * (step + 1) / warmup
    if step >= max_steps:
        return min_lr
    ratio = (step - warmup) / (max_steps - warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (lr - min_lr)


def encode(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def render(tok, messages, gen=False):
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def tokenize_examples(tok, path, T):
    """Rows of (ids, loss flags) as src/train/sft.c makes them for {"messages"} lines: assistant content and its
    <|im_end|> in the loss, boundaries from rendering incrementally, first T tokens kept, no-loss rows dropped."""
    rows, stats = [], {"n_tokens": 0, "n_loss_tokens": 0, "n_truncated": 0, "n_dropped": 0, "shifts": 0}
    texts = []
    for line in open(path, encoding="utf-8"):
        if not line.strip():
            continue
        msgs = json.loads(line)["messages"]
        text = render(tok, msgs)
        texts.append(text)
        ids = encode(tok, text)
        loss = [0] * len(ids)
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            a = encode(tok, render(tok, msgs[:i], gen=True))
            whole = render(tok, msgs[: i + 1])
            end_text = whole[: whole.rindex("<|im_end|>") + len("<|im_end|>")]
            b = encode(tok, end_text)
            for pre in (a, b):
                if ids[: len(pre)] != pre:
                    stats["shifts"] += 1
            for t in range(len(a), len(b)):
                loss[t] = 1
        if len(ids) > T:
            ids, loss = ids[:T], loss[:T]
            stats["n_truncated"] += 1
        if not any(loss[1:]):
            stats["n_dropped"] += 1
            continue
        rows.append((ids, loss))
        stats["n_tokens"] += len(ids)
        stats["n_loss_tokens"] += sum(loss[1:])
    return rows, stats, texts


def trl_native_masks(tok, path, T):
    """Loss tokens TRL itself would train for these conversations as conversational prompt/completion rows (the
    completion is everything after the prompt's generation header), truncated to T: for the report only."""
    n = 0
    for line in open(path, encoding="utf-8"):
        if line.strip():
            msgs = json.loads(line)["messages"]
            full = len(encode(tok, render(tok, msgs)))
            prompt = len(encode(tok, render(tok, msgs[:-1], gen=True)))
            n += max(0, min(full, T) - max(prompt, 1))
    return n


def check_ids_against_lmforge(lmforge, gguf, tok, texts):
    """The concatenated rendered conversations through `lmforge tokenize` (special tokens on, as chat encodes):
    the ids must equal the HF tokenizer's. Conversations start and end at special tokens, so concatenation does not
    merge tokens across them."""
    r = subprocess.run([lmforge, "tokenize", "-t", gguf, "--allow-special"], input="".join(texts),
                       capture_output=True, text=True, check=True)
    theirs = json.loads(r.stdout)
    ours = [i for t in texts for i in encode(tok, t)]
    if ours != theirs:
        k = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        sys.exit(f"token ids differ from lmforge's at position {k} of {len(ours)} / {len(theirs)}")
    return len(ours)


@torch.no_grad()
def val_loss(model, rows, B, pad):
    """Sum of the loss tokens' cross-entropy / their count, rows right-padded (what finetune.c's evaluate()
    computes: its per-batch means weighted by the batch's loss tokens)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), B):
        chunk = rows[i : i + B]
        L = max(len(ids) for ids, _ in chunk)
        inp = torch.full((len(chunk), L), pad, dtype=torch.long)
        att = torch.zeros((len(chunk), L), dtype=torch.long)
        tgt = torch.full((len(chunk), L), -100, dtype=torch.long)
        for b, (ids, loss) in enumerate(chunk):
            inp[b, : len(ids)] = torch.tensor(ids)
            att[b, : len(ids)] = 1
            for t in range(len(ids) - 1):
                if loss[t + 1]:
                    tgt[b, t] = ids[t + 1]
        logits = model(input_ids=inp, attention_mask=att).logits.float()
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                               ignore_index=-100, reduction="sum")
        total += ce.double().item()
        count += int((tgt != -100).sum())
    return total / count


class OrderedSFTTrainer(SFTTrainer):
    """SFTTrainer that serves the train set in its stored order (lmforge's, prepared by the caller)."""

    def _get_train_sampler(self, *args, **kwargs):
        return SequentialSampler(self.train_dataset)


def lmforge_metrics(run):
    steps, vals = {}, {}
    for line in open(os.path.join(run, "metrics.jsonl")):
        m = json.loads(line)
        if "val_loss" in m:
            vals[m["step"]] = m["val_loss"]
        elif "loss" in m:
            steps[m["step"]] = m["loss"]
    return steps, vals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True)
    ap.add_argument("--data", required=True, help="folder with train.jsonl and val.jsonl (scripts/devil-sft.py)")
    ap.add_argument("--lmforge-run", required=True, help="the lmforge finetune --out-dir")
    ap.add_argument("--lmforge", default="build/lmforge")
    ap.add_argument("--gguf", default="build/models/SmolLM2-135M-Instruct.F32.gguf")
    ap.add_argument("--lmforge-log", help="lmforge finetune's stderr, for the example / token counts")
    ap.add_argument("--out", default="/tmp/lmforge-finetune-vs-trl/trl")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=2e-5)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1337, help="lmforge's --seed: the data order")
    ap.add_argument("--torch-seeds", default="0", help="comma-separated: one TRL run per seed (LoRA init, dropout)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse", action="store_true", help="evaluate the TRL runs already in --out, do not train")
    ap.add_argument("--bar", type=float, default=0.02)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    transformers.logging.set_verbosity_error()
    B, T = a.batch, a.seq

    tok = AutoTokenizer.from_pretrained(a.hf)
    pad = tok.convert_tokens_to_ids(tok.eos_token)
    train, tstats, texts = tokenize_examples(tok, os.path.join(a.data, "train.jsonl"), T)
    val, vstats, vtexts = tokenize_examples(tok, os.path.join(a.data, "val.jsonl"), T)
    n_ids = check_ids_against_lmforge(a.lmforge, a.gguf, tok, texts + vtexts)
    print(f"tokens: {len(train)} train / {len(val)} validation examples; ids equal lmforge tokenize's ({n_ids} ids); "
          f"train {tstats}, val {vstats}", file=sys.stderr)
    if a.lmforge_log:
        m = re.search(r"finetune: (\d+) training examples \((\d+) tokens, (\d+) in the loss; (\d+) truncated, "
                      r"(\d+) dropped\), (\d+) validation", open(a.lmforge_log).read())
        got = tuple(map(int, m.groups())) if m else None
        want = (len(train), tstats["n_tokens"], tstats["n_loss_tokens"], tstats["n_truncated"], tstats["n_dropped"],
                len(val))
        if got != want:
            sys.exit(f"lmforge's counts {got} differ from these {want} (examples, tokens, loss tokens, truncated, "
                     f"dropped, validation)")
    native = trl_native_masks(tok, os.path.join(a.data, "train.jsonl"), T)

    order = lmforge_order(len(train), a.seed, a.steps * B)
    ds = Dataset.from_dict({"input_ids": [train[i][0] for i in order],
                            "completion_mask": [train[i][1] for i in order]})
    runs = []
    for ts in [int(s) for s in a.torch_seeds.split(",")]:
        out = os.path.join(a.out, f"seed{ts}")
        log = os.path.join(out, "run.json")
        if a.reuse and os.path.exists(log):  # evaluate a finished run again without training it again
            run = json.load(open(log))
            model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(a.hf, dtype=torch.float32),
                                              os.path.join(out, "adapter"))
        else:
            torch.manual_seed(ts)
            model = AutoModelForCausalLM.from_pretrained(a.hf, dtype=torch.float32)
            model = get_peft_model(model, LoraConfig(r=a.r, lora_alpha=a.alpha, lora_dropout=a.dropout,
                                                     target_modules=["q_proj", "v_proj"], bias="none",
                                                     task_type="CAUSAL_LM"))
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=a.weight_decay)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: lr_at(s, a.lr, a.min_lr, a.warmup, a.steps) / a.lr)
            used_lr = []  # the learning rate of every optimizer step, as the optimizer sees it
            opt.register_step_pre_hook(lambda o, args, kwargs: used_lr.append(o.param_groups[0]["lr"]))
            cfg = SFTConfig(output_dir=out, per_device_train_batch_size=B, max_steps=a.steps, max_length=T,
                            completion_only_loss=True, max_grad_norm=a.grad_clip, logging_steps=1,
                            save_strategy="no", report_to="none", use_cpu=True, seed=ts, data_seed=ts,
                            dataloader_num_workers=0, disable_tqdm=True, bf16=False, fp16=False)
            trainer = OrderedSFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok,
                                        optimizers=(opt, sched))
            t0 = time.time()
            trainer.train()
            hist = [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
            run = {"seed": ts, "secs": time.time() - t0, "losses": [h["loss"] for h in hist], "lrs": used_lr}
            model.save_pretrained(os.path.join(out, "adapter"))
            json.dump(run, open(log, "w"))
            del trainer, opt
        run["after"] = val_loss(model, val, B, pad)
        runs.append(run)
        del model

    lmf_steps, lmf_vals = lmforge_metrics(a.lmforge_run)
    base = AutoModelForCausalLM.from_pretrained(a.hf, dtype=torch.float32)
    before = val_loss(base, val, B, pad)
    lmf_after_here = val_loss(PeftModel.from_pretrained(base, os.path.join(a.lmforge_run, "adapter")), val, B, pad)

    lmf_before, lmf_after = lmf_vals.get(0), lmf_vals.get(a.steps)
    tail = max(1, a.steps // 6)
    lmf_tail = sum(lmf_steps[s] for s in range(a.steps - tail + 1, a.steps + 1)) / tail
    print(f"| run | val loss before | val loss after | train loss, mean of last {tail} steps | after vs lmforge |")
    print("|---|---|---|---|---|")
    print(f"| lmforge finetune (metrics.jsonl) | {lmf_before:.4f} | {lmf_after:.4f} | {lmf_tail:.4f} | |")
    print(f"| lmforge's adapter, this evaluator (vs lmforge's own) | {before:.4f} | {lmf_after_here:.4f} | | "
          f"{(lmf_after_here - lmf_after) / lmf_after:+.3%} |")
    worst = 0.0
    for r in runs:
        rel = (r["after"] - lmf_after) / lmf_after
        worst = max(worst, abs(rel))
        t_tail = sum(r["losses"][-tail:]) / tail
        print(f"| TRL SFTTrainer + PEFT (torch seed {r['seed']}), this evaluator | {before:.4f} | {r['after']:.4f} | "
              f"{t_tail:.4f} | {rel:+.3%} |")
    lr_dev = max(abs(x - lr_at(i, a.lr, a.min_lr, a.warmup, a.steps)) / a.lr for r in runs for i, x in enumerate(r["lrs"]))
    n_lr = min(len(r["lrs"]) for r in runs)
    trl_secs = ", ".join(f"{r['secs']:.0f} s" for r in runs)
    print()
    print(f"before: lmforge {lmf_before:.6f}, here {before:.6f} (rel {(before - lmf_before) / lmf_before:+.2e}); "
          f"lmforge's adapter after: lmforge {lmf_after:.6f}, here {lmf_after_here:.6f}; TRL's learning rate ({n_lr} optimizer "
          f"steps) differs from lmforge's schedule by at most {lr_dev:.1e} of lr; TRL {trl_secs} for "
          f"{a.steps} steps on {a.threads} thread(s).")
    first = ", ".join(f"{r['losses'][0]:.4f}" for r in runs)
    print(f"Step 1 training loss (B = 0, so the base's loss on the first batch: equal iff the batches are): lmforge "
          f"{lmf_steps[1]:.4f}, TRL {first}.")
    print(f"Loss tokens: {tstats['n_loss_tokens']} in training (lmforge's masks, used by both); TRL's own "
          f"conversational prompt/completion masking would train {native - tstats['n_loss_tokens']:+d} more "
          f"(the \\n after each <|im_end|> that fits in T).")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
          f"trl {trl.__version__}")
    ok = worst <= a.bar
    print(f"result={'PASS' if ok else 'FAIL'} worst_rel={worst:.4f} bar={a.bar}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Full fine-tuning reference fixtures (float64 PyTorch + transformers), for `lmforge finetune --full`.

Rerun (the venv of make_lora_fixtures.py; from anywhere, the script chdirs to the repository root):

    /work/venv-peft/bin/python tests/reference/make_full_ft_fixtures.py

Generated with the versions recorded in each file's __metadata__ (torch 2.15.0, transformers 5.24.0). Deterministic.

The same base folders, batch, prompt masking and float64 patches as make_lora_fixtures.py (whose helpers this
imports), but every weight of the model trains: writes tests/reference/fixtures/full_ft/<model>.safetensors for
model in {llama, gpt2}, holding (F32 unless said; B = 2, T = 8, S = 10):

  tokens          I32 (B, T)   input ids (make_lora_fixtures.py's, same seed)
  labels          I32 (B, T)   tokens with -100 on the first 3 positions of each row (SFT prompt masking; HF's shift)
  logits          (B, T, V)    the base model's
  loss            (1,)         mean cross-entropy over the B * (T - 3) = 10 targets
  grad.<w>        HF shape     d loss / d <w> for every parameter, under its HF name (gpt2's tied wte: the sum of the
                               embedding's and the head's contributions, as the one tensor it is)
  train.losses    (S,)         the loss before each of S = 10 torch.optim.AdamW steps on the same batch
  final.<w>       HF shape     every parameter after the S steps

AdamW: lr 1e-2 constant, betas (0.9, 0.999), eps 1e-8, weight decay 0.1 on the parameters lmforge decays (the
linear layers' weights and an untied head, as llm.c and lmforge's lmf_param_decays do; not the embeddings, norms or
biases), 0 elsewhere; no clipping. Eval mode (no dropout).
"""

import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_lora_fixtures as L  # noqa: E402

OUT_REL = "tests/reference/fixtures/full_ft"
WD = 0.1


def main():
    os.chdir(L.ROOT)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    L.transformers.logging.set_verbosity_error()
    L.exact_float64()
    os.makedirs(OUT_REL, exist_ok=True)
    for name, spec in L.MODELS.items():
        model = L.load_base(spec["base"], torch.float32).double()
        V = model.config.vocab_size
        g = torch.Generator().manual_seed(spec["seed"])  # make_lora_fixtures.py's tokens
        tokens = torch.randint(0, V, (L.B, L.T), generator=g)
        labels = tokens.clone()
        labels[:, : L.N_PROMPT] = -100
        logits = model(input_ids=tokens).logits
        loss = L.lm_loss(logits, labels)
        assert abs(loss.item() - L.loss_manual(logits, labels).item()) < 1e-12
        loss.backward()
        params = dict(model.named_parameters())  # tied gpt2: lm_head.weight is wte, listed once
        out = {"tokens": tokens.to(torch.int32), "labels": labels.to(torch.int32),
               "logits": logits.detach().float(), "loss": loss.detach().reshape(1).float()}
        for k, p in params.items():
            out["grad." + k] = p.grad.detach().float()
        embeddings = ("model.embed_tokens.weight", "transformer.wte.weight", "transformer.wpe.weight")
        decay = [p for k, p in params.items() if p.dim() == 2 and k not in embeddings]
        other = [p for k, p in params.items() if not (p.dim() == 2 and k not in embeddings)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": other, "weight_decay": 0.0}],
                                lr=L.OPT["lr"], betas=L.OPT["betas"], eps=L.OPT["eps"])
        losses = []
        for _ in range(L.STEPS):
            opt.zero_grad()
            ls = L.lm_loss(model(input_ids=tokens).logits, labels)
            losses.append(ls.item())
            ls.backward()
            opt.step()
        out["train.losses"] = torch.tensor(losses, dtype=torch.float32)
        for k, p in params.items():
            out["final." + k] = p.detach().float()
        meta = dict(model=name, base_dir=spec["base"], B=L.B, T=L.T, n_prompt=L.N_PROMPT, seed_tokens=spec["seed"],
                    optimizer="AdamW", lr=L.OPT["lr"], beta1=L.OPT["betas"][0], beta2=L.OPT["betas"][1],
                    eps=L.OPT["eps"], weight_decay=WD, weight_decay_on="2-D parameters", grad_clip="none",
                    steps=L.STEPS, loss=repr(loss.item()), losses=",".join(repr(x) for x in losses),
                    torch=torch.__version__, transformers=L.transformers.__version__)
        path = os.path.join(OUT_REL, name + ".safetensors")
        L.write_safetensors(path, out, meta)
        print(f"{path}: loss {loss.item():.6f} -> {losses[-1]:.6f}, {len(params)} parameters")


if __name__ == "__main__":
    main()

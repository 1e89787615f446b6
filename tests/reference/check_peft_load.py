#!/usr/bin/env python3
"""A LoRA adapter lmforge wrote loads in Hugging Face PEFT and gives lmforge's logits.

For the tiny gpt2 fixture (it carries a tokenizer): `lmforge finetune` trains a LoRA on c_attn,c_proj for 10 steps
on a generated prompt/completion JSONL; transformers + peft.PeftModel.from_pretrained (float64) then compute the
logits of a fixed token sequence, and lmforge computes them with the same adapter (tests/reference/peft_logits.c,
compiled here against build/liblmforge.a). The llama fixture carries no tokenizer, so `lmforge finetune` refuses it;
there the helper writes an adapter with random A and B on every linear (q/k exercise the rotate_half row order)
through the same writer, lmf_lora_save_peft; the same for the tiny Mixtral (a mixture of experts) on q, k, v, o,
and for transformers' tiny Qwen2 (all linear: q/k/v carry biases) and Qwen2-MoE (q, k, v, o), Qwen3 (all linear),
Qwen3-MoE and OLMoE (q, k, v, o: through their q/k norms); and adapters on the router and the experts (PEFT's
target_parameters: the Mixtral's all-linear with gate_up_proj at 2r, one expert parameter alone, the router with
gate_up_proj; Qwen2-MoE's, Qwen3-MoE's and OLMoE's routed experts), and all-linear as PEFT has it on Qwen2-MoE
(q/k/v/o and the shared expert's gate_proj, up_proj, down_proj and shared_expert_gate), Qwen3-MoE and OLMoE (as
Mixtral's), and Phi-3's fused qkv_proj alone and all-linear (qkv_proj, o_proj, gate_up_proj, down_proj). Passes when max |diff| / max |logit| < 1e-4 for
all.

Usage: check_peft_load.py --lmforge build/lmforge [--lib build/liblmforge.a] (run with a Python that has torch,
transformers and peft; not part of ctest)."""
import argparse, json, os, subprocess, sys, tempfile

import torch
import transformers, peft
from transformers import AutoModelForCausalLM
from peft import PeftModel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIX = os.path.join(HERE, "fixtures", "hf")
LIBS = ["-lm", "-lpcre2-8", "-lutf8proc", "-lcjson", "-lxxhash", "-lzstd"]


def build_helper(lib, out):
    subprocess.run(["cc", "-O2", "-fopenmp", "-I" + os.path.join(ROOT, "include"), "-I" + os.path.join(ROOT, "src"),
                    os.path.join(HERE, "peft_logits.c"), lib, *LIBS, "-o", out], check=True)


def lmforge_logits(helper, base, adapter, tokens):
    r = subprocess.run([helper, "logits", base, adapter, *map(str, tokens)], check=True, capture_output=True, text=True)
    return torch.tensor(json.loads(r.stdout)["logits"], dtype=torch.float64)


def peft_logits(base, adapter, tokens):
    kw = {"experts_implementation": "eager"} if "moe" in base else {}  # Mixtral's / Qwen2-MoE's experts in float64
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float64, **kw)
    model = PeftModel.from_pretrained(model, adapter, dtype=torch.float64).to(torch.float64)
    model.eval()
    with torch.no_grad():
        with_lora = model(torch.tensor([tokens])).logits[0]
        with model.disable_adapter():
            without = model(torch.tensor([tokens])).logits[0]
    return with_lora, without


def compare(name, base, adapter, tokens, helper):
    ours = lmforge_logits(helper, base, adapter, tokens)
    theirs, plain = peft_logits(base, adapter, tokens)
    scale = theirs.abs().max().item()
    rel = (ours - theirs).abs().max().item() / scale
    effect = (theirs - plain).abs().max().item() / scale
    ok = rel < 1e-4 and effect > 1e-3  # the adapter must matter, or agreement proves nothing
    print(f"{name}: {len(tokens)} tokens x {theirs.shape[1]} logits, max |logit| {scale:.4g}, "
          f"max rel diff lmforge vs PEFT {rel:.3e}, adapter effect {effect:.3e} -> {'PASS' if ok else 'FAIL'}")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lmforge", default=os.path.join(ROOT, "build", "lmforge"))
    ap.add_argument("--lib", default=os.path.join(ROOT, "build", "liblmforge.a"))
    a = ap.parse_args()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        helper = os.path.join(tmp, "peft_logits")
        build_helper(a.lib, helper)

        data = os.path.join(tmp, "data.jsonl")
        with open(data, "w") as f:
            for i in range(12):
                f.write(json.dumps({"prompt": f"Question {i}: what is {i} plus {i}?", "completion": f" It is {2 * i}."}) + "\n")
        gpt2 = os.path.join(FIX, "gpt2")
        out = os.path.join(tmp, "ft")
        subprocess.run([a.lmforge, "finetune", "-m", gpt2, "--data", data, "--out-dir", out, "--batch-size", "2",
                        "--seq-len", "32", "--max-steps", "10", "--lr", "5e-3", "--lora-dropout", "0",
                        "--lora-targets", "c_attn,c_proj", "--val-fraction", "0", "--threads", "2"],
                       check=True, stderr=subprocess.DEVNULL)
        tok = transformers.AutoTokenizer.from_pretrained(gpt2)
        tokens = tok("Question 3: what is 3 plus 3? It is")["input_ids"]
        ok &= compare("gpt2 (lmforge finetune, c_attn,c_proj)", gpt2, os.path.join(out, "adapter"), tokens, helper)

        llama = os.path.join(FIX, "llama")
        lla = os.path.join(tmp, "llama_adapter")
        subprocess.run([helper, "mkadapter", llama, "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", lla],
                       check=True)
        tokens = [1, 5, 9, 17, 33, 2, 40, 63, 0, 12, 7, 21]
        ok &= compare("llama (random adapter, all linear)", llama, lla, tokens, helper)

        mixtral = os.path.join(HERE, "fixtures", "moe", "mixtral")
        mxa = os.path.join(tmp, "mixtral_adapter")
        subprocess.run([helper, "mkadapter", mixtral, "q_proj,k_proj,v_proj,o_proj", mxa], check=True)
        tokens = [1, 5, 9, 17, 33, 2, 40, 47, 0, 12, 7, 21]
        ok &= compare("mixtral (random adapter, q k v o)", mixtral, mxa, tokens, helper)
        # the router and the experts (PEFT's target_parameters): all-linear (gate_up_proj at 2r, nested wrappers),
        # one expert parameter alone (not nested), the router alone
        for i, targets in enumerate(("all-linear", "q_proj,experts.down_proj", "gate.weight,gate_up_proj")):
            ad = os.path.join(tmp, f"mixtral_experts_{i}")
            subprocess.run([helper, "mkadapter", mixtral, targets, ad], check=True)
            ok &= compare(f"mixtral (random adapter, {targets})", mixtral, ad, tokens, helper)

        # qwen2: PEFT wraps the biased q/k/v Linear and keeps its bias; Qwen2-MoE's gated shared expert underneath
        for name, targets in (("qwen2", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"),
                              ("qwen2_moe", "q_proj,k_proj,v_proj,o_proj"),
                              ("qwen2_moe", "q_proj,gate.weight,experts.gate_up_proj,experts.down_proj"),
                              # PEFT's all-linear there: q/k/v/o and the shared expert's Linears and its gate
                              ("qwen2_moe", "all-linear"),
                              ("qwen2_moe", "down_proj,shared_expert_gate,gate.weight,experts.down_proj")):
            base = os.path.join(HERE, "fixtures", "qwen2", name)
            ad = os.path.join(tmp, name + "_adapter" + str(len(targets)))
            subprocess.run([helper, "mkadapter", base, targets, ad], check=True)
            ok &= compare(f"{name} (random adapter, {targets})", base, ad, tokens, helper)

        # qwen3 / OLMoE: q's and k's adapters act before the q/k norm (per head; OLMoE's over the whole rows)
        for name, targets in (("qwen3", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"),
                              ("qwen3_moe", "q_proj,k_proj,v_proj,o_proj"), ("olmoe", "q_proj,k_proj,v_proj,o_proj"),
                              ("qwen3_moe", "v_proj,gate.weight,gate_up_proj,down_proj"),
                              ("olmoe", "o_proj,gate.weight,gate_up_proj,down_proj"),
                              ("qwen3_moe", "all-linear"), ("olmoe", "all-linear")):
            base = os.path.join(HERE, "fixtures", "qwen3", name)
            ad = os.path.join(tmp, name + "_adapter" + str(len(targets)))
            subprocess.run([helper, "mkadapter", base, targets, ad], check=True)
            ok &= compare(f"{name} (random adapter, {targets})", base, ad, tokens, helper)

        # phi3: one A over the fused qkv_proj (q, k, v) and gate_up_proj (gate, up)
        phi3 = os.path.join(HERE, "fixtures", "phi3", "phi3")
        for targets in ("qkv_proj", "all-linear"):
            ad = os.path.join(tmp, "phi3_adapter" + str(len(targets)))
            subprocess.run([helper, "mkadapter", phi3, targets, ad], check=True)
            ok &= compare(f"phi3 (random adapter, {targets})", phi3, ad, [1, 5, 9, 17, 33, 2, 40, 47, 0, 12, 7, 21],
                          helper)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

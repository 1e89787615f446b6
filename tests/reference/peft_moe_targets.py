"""What PEFT makes of LoRA targets on a mixture of experts, and PEFT's own all-linear adapter over the tiny Mixtral.

Run by hand (the output is recorded in docs/moe.md, "LoRA on the experts: PEFT's definition"):

    /work/venv-peft/bin/python tests/reference/peft_moe_targets.py [--write-fixture]

It prints, for a tiny random MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM and OlmoeForCausalLM
built here, every nn.Linear outside the attention (what all-linear can reach: on Qwen2-MoE the shared expert's
gate_proj, up_proj, down_proj and shared_expert_gate; on the others only lm_head), what `all-linear` and explicit
`target_parameters` resolve to (adapter_config.json's target_modules / target_parameters / rank_pattern /
alpha_pattern), the saved tensor names and shapes outside the attention, each ParamWrapper's in / out / experts and
scaling, and whether lora_dropout 0.1 is accepted; then it checks the expert layout docs/moe.md states (A_e = A's
rows [e r, (e + 1) r), B_e = B's columns j E + e) against PEFT's logits with random A and B. lmforge's refusals (src/model/lora.c, src/model/lora_io.c) say
what these facts are, so a change in PEFT shows here first.

--write-fixture also saves PEFT's all-linear adapter (r 2, alpha 4, lora_dropout 0, init_lora_weights as PEFT's
default) over the committed tiny Mixtral (tests/reference/fixtures/moe/mixtral) to
tests/reference/fixtures/lora/mixtral_all_linear_peft/, which test_lora_io reads to check that lmforge refuses it
by name (target_parameters) rather than misreading it. make_lora_fixtures.py and its fixtures are untouched.
Versions used: torch 2.15, transformers 5.24, peft 0.21.2.
"""
import json
import os
import sys
import tempfile
import warnings

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import (AutoModelForCausalLM, MixtralConfig, MixtralForCausalLM, OlmoeConfig, OlmoeForCausalLM,
                          Qwen2MoeConfig, Qwen2MoeForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM)

warnings.filterwarnings("ignore")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def tiny_mixtral():
    torch.manual_seed(0)
    return MixtralForCausalLM(MixtralConfig(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
                                            num_experts_per_tok=2))


def tiny_qwen2_moe():
    torch.manual_seed(0)
    return Qwen2MoeForCausalLM(Qwen2MoeConfig(vocab_size=64, hidden_size=16, intermediate_size=24,
                                              moe_intermediate_size=8, shared_expert_intermediate_size=12,
                                              num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                              num_experts=4, num_experts_per_tok=2))


def tiny_qwen3_moe():
    torch.manual_seed(0)
    return Qwen3MoeForCausalLM(Qwen3MoeConfig(vocab_size=64, hidden_size=16, intermediate_size=24,
                                              moe_intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                                              num_key_value_heads=1, head_dim=8, num_experts=4,
                                              num_experts_per_tok=2))


def tiny_olmoe():
    torch.manual_seed(0)
    return OlmoeForCausalLM(OlmoeConfig(vocab_size=64, hidden_size=16, intermediate_size=8, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, num_experts=4,
                                        num_experts_per_tok=2))


def linears(name, make):
    """Every nn.Linear of the model outside the attention, and each module's class: what all-linear can reach."""
    m = make()
    lin = sorted({n.split("layers.0.", 1)[-1] for n, mod in m.named_modules()
                  if isinstance(mod, torch.nn.Linear) and "self_attn" not in n})
    print(f"{name} nn.Linear outside the attention: {lin}; mlp.gate is {type(m.model.layers[0].mlp.gate).__name__}, "
          f"mlp.experts is {type(m.model.layers[0].mlp.experts).__name__}")


def report(name, make):
    cases = [("all-linear", None), (["q_proj"], ["experts.gate_up_proj"]),
             (["q_proj"], ["experts.down_proj", "experts.gate_up_proj"]), (["q_proj"], ["gate.weight"])]
    for modules, params in cases:
        pm = get_peft_model(make(), LoraConfig(r=2, lora_alpha=4, target_modules=modules, target_parameters=params))
        d = tempfile.mkdtemp()
        pm.save_pretrained(d)
        cfg = json.load(open(os.path.join(d, "adapter_config.json")))
        tm = cfg["target_modules"]
        tm = tm if isinstance(tm, str) else sorted(t.rsplit(".", 1)[-1] if "self_attn" in t else t for t in tm)
        print(f"{name} target_modules={modules} target_parameters={params}")
        print(f"  saved: target_modules {tm} target_parameters {cfg['target_parameters']} "
              f"rank_pattern {cfg['rank_pattern']} alpha_pattern {cfg['alpha_pattern']}")
        for k, v in load_file(os.path.join(d, "adapter_model.safetensors")).items():
            if "self_attn" not in k:
                print(f"  {k} {list(v.shape)}")
        for n, mod in pm.named_modules():
            if hasattr(mod, "parameter_name"):
                print(f"  ParamWrapper {n.replace('base_model.model.', '')} on {mod.parameter_name}: in "
                      f"{mod.in_features} out {mod.out_features} experts {mod.num_experts} scaling "
                      f"{mod.scaling['default']}")
    try:
        get_peft_model(make(), LoraConfig(r=2, target_modules="all-linear", lora_dropout=0.1))
        print(f"{name} all-linear with lora_dropout 0.1: accepted")
    except ValueError as e:
        print(f"{name} all-linear with lora_dropout 0.1: ValueError: {e}")


def check_layout():
    """PEFT's expert LoRA as lmforge would compute it: with random A and B, the PeftModel's logits equal a plain
    Mixtral whose expert weights are W_e + s B_e A_e, where (for transformers' (E, out, in) layout) A_e is rows
    [e r, (e + 1) r) of A (r E, in) and B_e column j is B's column j E + e (B is (out, r E): the experts interleaved)."""
    torch.manual_seed(1)
    base = tiny_mixtral()
    pm = get_peft_model(tiny_mixtral(), LoraConfig(r=2, lora_alpha=4, target_modules="all-linear"))
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn_like(p) * 0.3)
        for n, mod in pm.named_modules():
            if not hasattr(mod, "parameter_name") and not n.endswith(("q_proj", "k_proj", "v_proj", "o_proj")):
                continue
            A, B = mod.lora_A["default"].weight, mod.lora_B["default"].weight
            s, r = mod.scaling["default"], mod.r["default"]
            path = n.replace("base_model.model.", "").replace(".base_layer", "")
            target = base.get_submodule(path)
            if not hasattr(mod, "parameter_name"):
                target.weight += s * B @ A
                continue
            W = getattr(target, mod.parameter_name)
            if W.dim() == 2:  # the router: an ordinary (out, in) LoRA
                W += s * B @ A
                continue
            E = mod.num_experts
            for e in range(E):
                Ae = A[e * r:(e + 1) * r]                   # (r, in)
                Be = B[:, [j * E + e for j in range(r)]]    # (out, r)
                W[e] += s * Be @ Ae
    tok = torch.tensor([[1, 5, 9, 2, 33, 7, 61, 4]])
    a, b = pm(tok).logits, base(tok).logits
    err = (a - b).abs().max().item()
    print(f"mixtral all-linear, random A and B: PEFT's logits vs W_e + s B_e A_e with interleaved B: max |diff| {err:.2e}")
    assert err < 1e-5 * b.abs().max().item(), err


def write_fixture():
    base = os.path.join(ROOT, "tests/reference/fixtures/moe/mixtral")
    out = os.path.join(ROOT, "tests/reference/fixtures/lora/mixtral_all_linear_peft")
    torch.manual_seed(404)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    pm = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules="all-linear",
                                          task_type="CAUSAL_LM"))
    pm.save_pretrained(out)
    # the path PEFT records is this machine's; keep the committed file free of it
    path = os.path.join(out, "adapter_config.json")
    cfg = json.load(open(path))
    cfg["base_model_name_or_path"] = "tests/reference/fixtures/moe/mixtral"
    cfg["target_modules"] = sorted(cfg["target_modules"])
    cfg["target_parameters"] = sorted(cfg["target_parameters"])
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    readme = os.path.join(out, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    print("wrote", out)


if __name__ == "__main__":
    for name, make in [("mixtral", tiny_mixtral), ("qwen2_moe", tiny_qwen2_moe), ("qwen3_moe", tiny_qwen3_moe),
                       ("olmoe", tiny_olmoe)]:
        linears(name, make)
        report(name, make)
    check_layout()
    if "--write-fixture" in sys.argv:
        write_fixture()

"""make_generation_mask_fixtures.py — what transformers' apply_chat_template(return_assistant_tokens_mask=True) gives
for conversations rendered with a template that marks assistant text with {% generation %}: the token ids and the
assistant mask, which lmforge's fine-tuning must reproduce (tests/test_sft.c, test_generation_masks).

The template is chat_templates/qwen3_generation.jinja (Qwen3's own with generation blocks: not prefix-stable, as it
drops the reasoning of earlier turns); the tokenizer is SmolLM2-135M-Instruct's, built from its GGUF as
tokenizer/check_smollm2.py builds it (ChatML's special tokens are the same). Conversations: multi-turn with
reasoning, a tool round with tools, a system message, reasoning in the content.

Usage: /work/venv-peft/bin/python tests/reference/make_generation_mask_fixtures.py build/models/SmolLM2-135M-Instruct.Q4_1.gguf
Writes tests/reference/fixtures/chat/generation_masks.json (transformers 5.24 when made).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = "qwen3_generation.jinja"

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

CONVERSATIONS = {
    "single": ([{"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "Paris."}], None),
    "system_multi_turn": ([{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": "Capital of France?"},
                           {"role": "assistant", "content": "Paris.", "reasoning_content": "France: Paris."},
                           {"role": "user", "content": "And of Italy? Ünïcödé ✓"},
                           {"role": "assistant", "content": "Rome.", "reasoning_content": "Italy's capital is Rome."}],
                          None),
    "think_in_content": ([{"role": "user", "content": "2 + 2?"},
                          {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\n4"},
                          {"role": "user", "content": "3 + 3?"},
                          {"role": "assistant", "content": "<think>\nAgain.\n</think>\n\n6"}], None),
    "tool_round": ([{"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": "", "tool_calls": [
                        {"id": "call1", "type": "function",
                         "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                    {"role": "tool", "tool_call_id": "call1", "content": "{\"temperature\": 21.5}"},
                    {"role": "assistant", "content": "It is 21.5 degrees in Paris."}], TOOLS),
}


def main():
    from transformers import PreTrainedTokenizerFast
    import transformers
    sys.path.insert(0, os.path.join(HERE, "tokenizer"))
    import check_smollm2
    _, kv = check_smollm2.read_gguf_vocab(sys.argv[1])
    tok = PreTrainedTokenizerFast(tokenizer_object=check_smollm2.hf_from_gguf(kv), bos_token="<|im_start|>",
                                  eos_token="<|im_end|>")
    tok.chat_template = open(os.path.join(HERE, "chat_templates", TEMPLATE), encoding="utf-8").read()
    cases = []
    for name, (conv, tools) in CONVERSATIONS.items():
        out = tok.apply_chat_template(conv, tools=tools, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        cases.append({"name": name, "messages": conv, "tools": tools, "ids": list(out["input_ids"]),
                      "mask": list(out["assistant_masks"]),
                      "text": tok.apply_chat_template(conv, tools=tools, tokenize=False)})
    path = os.path.join(HERE, "fixtures", "chat", "generation_masks.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"template": TEMPLATE, "transformers": transformers.__version__, "cases": cases}, f,
                  ensure_ascii=False)
        f.write("\n")
    print(f"{path}: {len(cases)} conversations, {sum(sum(c['mask']) for c in cases)} assistant tokens")


main()

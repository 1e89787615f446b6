#!/usr/bin/env bash
# `lmforge finetune --chat-template FILE` on the tiny Hugging Face gpt2 fixture, with {"messages"} data that carries
# reasoning_content, tool calls, tool results and a top-level "tools" list (TRL's shape). A template that renders an
# earlier turn differently once later turns exist (it shows reasoning on the last assistant turn only, as Qwen3
# does) cannot be masked by rendering prefixes: refused naming FILE:LINE and what to do. The same template with
# {% generation %} blocks trains; so does the first with --train-on-prompt. A missing or broken template file is
# refused by name. (The masks themselves are held to transformers' in test_sft.)
# Usage: cli_finetune_template.sh path/to/lmforge
set -uo pipefail
LMF=$1
M="$(cd "$(dirname "$0")" && pwd)/reference/fixtures/hf/gpt2"
dir=$(mktemp -d /tmp/lmf_ft_tmpl_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# U:/A: turns; the last assistant turn shows its reasoning; tool calls and tools written out
body='{% if tools %}T{{ tools|length }}|{% endif %}{% for m in messages %}{% if m.role == "assistant" %}A:OPEN'
body+='{% if loop.last and m.reasoning_content %}({{ m.reasoning_content }}){% endif %}{{ m.content or "" }}'
body+='{% for c in m.tool_calls or [] %}<{{ c.function.name }} {{ c.function.arguments|tojson }}>{% endfor %}.CLOSE'
body+='{% else %}{{ m.role[0]|upper }}:{{ m.content }}|{% endif %}{% endfor %}{% if add_generation_prompt %}A:{% endif %}'
echo "${body//OPEN/}" | sed 's/CLOSE//' > "$dir/plain.jinja"
echo "${body//OPEN/{% generation %\}}" | sed 's/CLOSE/{% endgeneration %}|/' > "$dir/gen.jinja"
grep -q "{% generation %}.*{% endgeneration %}" "$dir/gen.jinja" || fail "the test's template"

for i in 0 1 2 3; do
  printf '{"messages": [{"role": "user", "content": "q%d"}, {"role": "assistant", "content": "a%d", "reasoning_content": "r"}, {"role": "user", "content": "w"}, {"role": "assistant", "content": "b", "reasoning_content": "s"}]}\n' $i $i
  printf '{"messages": [{"role": "user", "content": "x%d"}, {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{\\"k\\": %d}"}}]}, {"role": "tool", "content": "1"}, {"role": "assistant", "content": "ok"}], "tools": [{"type": "function", "function": {"name": "f"}}]}\n' $i $i
done > "$dir/data.jsonl"
common=(-m "$M" --data "$dir/data.jsonl" --batch-size 2 --seq-len 64 --max-steps 2 --threads 2 --eval-every 0 --lora-targets c_attn)

"$LMF" finetune "${common[@]}" --chat-template "$dir/plain.jinja" --out-dir "$dir/a" 2> "$dir/a.log" && fail "not refused"
grep -q "data.jsonl:1: message 1: the chat template does not render" "$dir/a.log" &&
  grep -q -- "--chat-template FILE" "$dir/a.log" && grep -q -- "--train-on-prompt" "$dir/a.log" ||
  { cat "$dir/a.log"; fail "the prefix method's refusal"; }
"$LMF" finetune "${common[@]}" --chat-template "$dir/gen.jinja" --out-dir "$dir/b" 2> "$dir/b.log" ||
  { cat "$dir/b.log"; fail "finetune with generation blocks"; }
[ -s "$dir/b/adapter.gguf" ] || fail "no adapter"
"$LMF" finetune "${common[@]}" --chat-template "$dir/plain.jinja" --train-on-prompt --out-dir "$dir/c" \
  2> "$dir/c.log" || { cat "$dir/c.log"; fail "--train-on-prompt"; }
"$LMF" finetune "${common[@]}" --chat-template "$dir/none.jinja" --out-dir "$dir/d" 2> "$dir/d.log" && fail "missing file"
grep -q "none.jinja" "$dir/d.log" || { cat "$dir/d.log"; fail "the missing file is not named"; }
printf '{%% for m in messages %%}\n{{ m.content }\n' > "$dir/broken.jinja"
"$LMF" finetune "${common[@]}" --chat-template "$dir/broken.jinja" --out-dir "$dir/e" 2> "$dir/e.log" && fail "broken"
grep -q "broken.jinja: chat template line 2" "$dir/e.log" || { cat "$dir/e.log"; fail "the broken template's line"; }
echo "cli_finetune_template: ok"

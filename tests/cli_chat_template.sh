#!/usr/bin/env bash
# `lmforge chat` runs the model's own chat template (docs/chat-templates.md) on the tiny Hugging Face gpt2 fixture
# given other templates in its tokenizer_config.json: a Gemma-shaped one renders as written (bos_token, trim,
# add_generation_prompt); --chat-template-kwargs reaches it; its raise_exception fails the chat with its message;
# --chat-format chatml renders with the built-in renderer instead; a template that does not compile is refused
# naming its line; --messages with tool calls and tools renders as transformers renders it (--chat-template FILE,
# on SmolLM2 when it has been fetched).
# Usage: cli_chat_template.sh path/to/lmforge
set -uo pipefail
LMF=$1
SRC="$(cd "$(dirname "$0")" && pwd)/reference/fixtures/hf/gpt2"
dir=$(mktemp -d /tmp/lmf_tmpl_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# a copy of the fixture with template $1
with_template() {
  rm -rf "$dir/m" && cp -r "$SRC" "$dir/m" || fail "copy"
  python3 - "$dir/m/tokenizer_config.json" "$1" <<'PY' || fail "write template"
import json, sys
c = json.load(open(sys.argv[1]))
c["chat_template"] = sys.argv[2]
json.dump(c, open(sys.argv[1], "w"))
PY
}

gemma="{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"\
"{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}"\
"{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + "\
"'<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"\
"{% if enable_thinking is defined and enable_thinking is false %}@@{% endif %}"
with_template "$gemma"

"$LMF" info "$dir/m" > "$dir/info.txt" 2>&1 || fail "info"
grep -q "chat template: .* template family, run as written" "$dir/info.txt" || fail "info: $(grep chat "$dir/info.txt")"

# 1. rendered as the template says: the content trimmed, the assistant called "model", the generation prompt last
"$LMF" chat -m "$dir/m" -p "  Hi there  " -n 0 --verbose-prompt > /dev/null 2> "$dir/vp.txt" || { cat "$dir/vp.txt"; fail "chat"; }
want="<start_of_turn>user
Hi there<end_of_turn>
<start_of_turn>model"
grep -qF "<start_of_turn>user" "$dir/vp.txt" || fail "no user turn in the prompt: $(head -5 "$dir/vp.txt")"
python3 - "$dir/vp.txt" "$want" <<'PY' || fail "the rendered prompt is not the template's"
import sys
text = open(sys.argv[1]).read()
assert sys.argv[2] in text, text[:300]
assert "@@" not in text
PY

# 2. keyword variables reach the template
"$LMF" chat -m "$dir/m" -p "Hi" -n 0 --verbose-prompt --chat-template-kwargs '{"enable_thinking": false}' \
  > /dev/null 2> "$dir/vp2.txt" || fail "chat --chat-template-kwargs"
grep -qF "@@" "$dir/vp2.txt" || fail "enable_thinking=false did not reach the template"
"$LMF" chat -m "$dir/m" -p "Hi" -n 0 --chat-template-kwargs '[1]' > /dev/null 2> "$dir/e0.txt" && fail "kwargs [1] accepted"
grep -q "expected a JSON object" "$dir/e0.txt" || fail "kwargs message: $(cat "$dir/e0.txt")"

# 3. the template's raise_exception is the chat's error
"$LMF" chat -m "$dir/m" -p "Hi" --system "Be brief." -n 0 > /dev/null 2> "$dir/e1.txt"
rc=$?
[ $rc -eq 2 ] || fail "raise_exception: exit $rc"
grep -q "the template raised: System role not supported" "$dir/e1.txt" || fail "raise message: $(cat "$dir/e1.txt")"

# 4. --chat-format chatml: the built-in renderer, not the template
"$LMF" chat -m "$dir/m" -p "Hi" -n 0 --verbose-prompt --chat-format chatml > /dev/null 2> "$dir/vp3.txt" \
  || fail "--chat-format chatml"
grep -qF "<|im_start|>user" "$dir/vp3.txt" || fail "--chat-format chatml did not render ChatML"
grep -qF "<start_of_turn>" "$dir/vp3.txt" && fail "--chat-format chatml still ran the template"

# 5. a template that does not compile (and of no known family) is refused, naming the line
with_template $'{% for m in messages %}\n{{ m.content + }}\n{% endfor %}'
"$LMF" chat -m "$dir/m" -p "Hi" -n 0 > /dev/null 2> "$dir/e2.txt" && fail "a broken template was accepted"
grep -q "chat template line 2" "$dir/e2.txt" || fail "broken template message: $(cat "$dir/e2.txt")"
"$LMF" info "$dir/m" > "$dir/info2.txt" 2>&1 || fail "info on a broken template"
grep -q "does not compile: chat template line 2" "$dir/info2.txt" || fail "info: $(grep chat "$dir/info2.txt")"
# 6. --messages with tool calls, a tool result and "tools" (OpenAI's shape, arguments as JSON text), rendered by
# --chat-template FILE (Qwen2.5's) on SmolLM2: the prompt is transformers' render of the same conversation
# (fixture qwen2.5/tool_round/gen=1); a malformed call is refused naming its field; a built-in renderer refuses tools
SMOL="${LMF_SMOLLM2_GGUF:-$(cd "$(dirname "$0")/.." && pwd)/build/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
REF="$(cd "$(dirname "$0")" && pwd)/reference"
if [ -f "$SMOL" ]; then
  python3 - "$REF/fixtures/chat/chat_fixtures.json" "$dir" <<'PY' || fail "writing the tool round"
import json, sys
c = next(c for c in json.load(open(sys.argv[1]))["cases"] if c["name"] == "qwen2.5/tool_round/gen=1")
msgs = c["vars"]["messages"]
for m in msgs:
    for t in m.get("tool_calls", []):
        t["function"]["arguments"] = json.dumps(t["function"]["arguments"])
json.dump({"messages": msgs, "tools": c["vars"]["tools"]}, open(sys.argv[2] + "/round.json", "w"))
open(sys.argv[2] + "/round.txt", "w").write(c["expected"])
msgs[1]["tool_calls"][0]["function"]["arguments"] = "{oops"
json.dump({"messages": msgs}, open(sys.argv[2] + "/bad.json", "w"))
PY
  "$LMF" chat -m "$SMOL" --chat-template "$REF/chat_templates/qwen2.5.jinja" --messages "$dir/round.json" -n 0 \
    --verbose-prompt > /dev/null 2> "$dir/vp4.txt" || { cat "$dir/vp4.txt"; fail "chat --messages with tool calls"; }
  python3 - "$dir/vp4.txt" "$dir/round.txt" <<'PY' || fail "the tool round's prompt is not transformers' render"
import sys
text, want = open(sys.argv[1]).read(), open(sys.argv[2]).read()
assert text.split("\n", 1)[1].startswith(want + "\n"), text[:400]
PY
  "$LMF" chat -m "$SMOL" --chat-template "$REF/chat_templates/qwen2.5.jinja" --messages "$dir/bad.json" -n 0 \
    > /dev/null 2> "$dir/e3.txt" && fail "bad arguments accepted"
  grep -q "bad.json: messages\[1\].tool_calls\[0\].function.arguments" "$dir/e3.txt" || fail "bad arguments: $(cat "$dir/e3.txt")"
  "$LMF" chat -m "$SMOL" --chat-format chatml --messages "$dir/round.json" -n 0 > /dev/null 2> "$dir/e4.txt" &&
    fail "a built-in renderer took tools"
  grep -q "no tool format" "$dir/e4.txt" || fail "built-in with tools: $(cat "$dir/e4.txt")"
else
  echo "note: $SMOL not found; --messages with tool calls not checked"
fi
echo "cli_chat_template: ok"

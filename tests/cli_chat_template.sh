#!/usr/bin/env bash
# `lmforge chat` runs the model's own chat template (docs/chat-templates.md) on the tiny Hugging Face gpt2 fixture
# given other templates in its tokenizer_config.json: a Gemma-shaped one renders as written (bos_token, trim,
# add_generation_prompt); --chat-template-kwargs reaches it; its raise_exception fails the chat with its message;
# --chat-format chatml renders with the built-in renderer instead; a template that does not compile is refused
# naming its line.
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
echo "cli_chat_template: ok"

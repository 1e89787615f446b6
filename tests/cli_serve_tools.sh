#!/usr/bin/env bash
# `lmforge serve` with tools: the real SmolLM2-135M-Instruct served with Qwen2.5's chat template (--chat-template),
# driven by tests/serve_tools_test.py through the official `openai` client (build/pyenv, as cli_serve.sh makes it):
# a tool round's prompt is transformers' render, the model's own <tool_call> reply is parsed into tool_calls (whole
# and streamed), the client's objects go back as history, tool_choice none / required / named (constrained). Also the
# flag refusals.
# Skipped (exit 0 with a note) when the model has not been fetched.
# Usage: cli_serve_tools.sh path/to/lmforge
set -uo pipefail
LMF=$1
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "$(dirname "$LMF")" && pwd)"
SMOL="${LMF_SMOLLM2_GGUF:-$ROOT/build/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
dir=$(mktemp -d /tmp/lmf_cli_serve_tools_XXXXXX)
. "$ROOT/tests/serve_util.sh"
TEMPLATE="$ROOT/tests/reference/chat_templates/qwen2.5.jinja"

"$LMF" serve -m x --reasoning-format maybe 2> "$dir/err.txt"; [ $? = 2 ] && grep -q "deepseek or none" "$dir/err.txt" ||
  fail "bad --reasoning-format"
"$LMF" serve -m x --chat-template "$TEMPLATE" --chat-format chatml 2> "$dir/err.txt"; [ $? = 2 ] &&
  grep -q "exclude each other" "$dir/err.txt" || fail "--chat-template with --chat-format"
if [ ! -f "$SMOL" ]; then
  echo "SKIP: $SMOL not found (scripts/fetch-smollm2.sh); only the refusals were checked"
  exit 0
fi
printf '{%% for m in messages %%}{{ m.content }\n' > "$dir/broken.jinja"
"$LMF" serve -m "$SMOL" --port 0 --chat-template "$dir/broken.jinja" 2> "$dir/err.txt"; [ $? = 1 ] &&
  grep -q "broken.jinja: chat template line 1" "$dir/err.txt" || { cat "$dir/err.txt"; fail "a broken --chat-template"; }

PY="$BUILD/pyenv/bin/python"
if ! "$PY" -c "import openai" 2>/dev/null; then
  python3 -m venv "$BUILD/pyenv" > "$dir/venv.log" 2>&1 || { cat "$dir/venv.log"; fail "python3 -m venv (Debian: python3-venv)"; }
  "$BUILD/pyenv/bin/pip" install -q --disable-pip-version-check openai > "$dir/pip.log" 2>&1 ||
    { tail -5 "$dir/pip.log"; fail "pip install openai"; }
fi

"$LMF" serve -m "$SMOL" --port 0 --chat-template "$TEMPLATE" --parallel 2 -c 2048 2> "$dir/server.log" &
pid=$!
serve_ready "$dir/server.log" 300 || fail "the server exited or did not become ready"
grep -q "<tool_call> parsed" "$dir/server.log" || fail "the ready line does not say tool calls are parsed"
LMF_URL="http://127.0.0.1:$port" LMF_FIXTURE="$ROOT/tests/reference/fixtures/chat/chat_fixtures.json" \
  timeout 300 "$PY" "$ROOT/tests/serve_tools_test.py" || fail "serve_tools_test.py"
kill -TERM "$pid"; wait "$pid"; rc=$?; pid=""
[ $rc = 0 ] || fail "the server exited with $rc on SIGTERM (a sanitizer report?)"
echo "cli_serve_tools: ok"

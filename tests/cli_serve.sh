#!/usr/bin/env bash
# `lmforge serve` end to end: refusals of bad flags, /health while the model loads, a second server on a port in use
# refused, a LoRA adapter served unmerged
# (on the tiny gpt2 fixture), then a server on a free port with the real
# SmolLM2-135M-Instruct (skipped, exit 0 with a note, when the model has not been fetched) exercised by
# tests/serve_openai_test.py through the official `openai` Python client (installed from PyPI into build/pyenv on
# first use) and raw sockets: chat and completions, streaming or not, usage, stops, seeds, logprobs, errors, 429,
# metrics, and hostile clients (broken JSON, a 100 MB body, a header flood, a stalled and a vanished stream, 500 idle
# connections). Finally SIGTERM with a stream in flight: the server ends it and exits 0.
# Usage: cli_serve.sh path/to/lmforge
set -uo pipefail
LMF=$1
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "$(dirname "$LMF")" && pwd)"
SMOL="${LMF_SMOLLM2_GGUF:-$ROOT/build/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
dir=$(mktemp -d /tmp/lmf_cli_serve_XXXXXX)
. "$ROOT/tests/serve_util.sh" # pid, cleanup on exit, fail

# refusals need no model
"$LMF" serve --help | grep -q "usage: lmforge serve" || fail "serve --help"
"$LMF" serve 2> "$dir/err.txt"; [ $? = 2 ] && grep -q "\-m MODEL is required" "$dir/err.txt" || fail "serve without -m"
"$LMF" serve -m x --port 70000 2> "$dir/err.txt"; [ $? = 2 ] && grep -q "\-\-port" "$dir/err.txt" || fail "bad --port"
"$LMF" serve -m x --bogus 1 2> "$dir/err.txt"; [ $? = 2 ] && grep -qx "lmforge serve: unknown option --bogus" "$dir/err.txt" || fail "unknown flag"
env -u LMF_API_KEY "$LMF" serve -m x --host 0.0.0.0 2> "$dir/err.txt"; rc=$?
[ $rc = 2 ] && grep -q "no API key is set" "$dir/err.txt" || { cat "$dir/err.txt"; fail "open non-loopback bind (rc $rc)"; }
"$LMF" serve -m x --api-key k --no-auth 2> "$dir/err.txt"; [ $? = 2 ] && grep -q "contradict" "$dir/err.txt" || fail "--no-auth with a key"
"$LMF" serve -m "$dir/none.gguf" --port 0 2> "$dir/err.txt"; rc=$?
[ $rc = 1 ] && grep -q "none.gguf" "$dir/err.txt" || { cat "$dir/err.txt"; fail "missing model file (rc $rc)"; }

# while the model loads (here: a FIFO nobody writes, so the load blocks) the port answers: /health 503 "loading"
# (open), the API 401 without the key ($LMF_API_KEY here) and 503 with it; a signal ends the process
mkfifo "$dir/slow.gguf"
LMF_API_KEY=envkey "$LMF" serve -m "$dir/slow.gguf" --port 0 2> "$dir/load.log" &
pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$dir/load.log" && break; sleep 0.05; done
port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$dir/load.log")
[ -n "$port" ] || { cat "$dir/load.log"; fail "no listening line while loading"; }
[ "$(curl -s -o "$dir/h.json" -w '%{http_code}' "http://127.0.0.1:$port/health")" = 503 ] &&
  grep -q '"status":"loading"' "$dir/h.json" || fail "/health while loading"
# a second server on the port in use is refused (the kernel would otherwise share the connections between the two)
"$LMF" serve -m "$dir/none.gguf" --port "$port" 2> "$dir/busy.txt"; rc=$?
[ $rc = 1 ] && grep -q "cannot listen on 127.0.0.1:$port" "$dir/busy.txt" || { cat "$dir/busy.txt"; fail "port in use (rc $rc)"; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/models")" = 401 ] || fail "no key while loading"
[ "$(curl -s -o "$dir/m.json" -w '%{http_code}' -H "Authorization: Bearer envkey" "http://127.0.0.1:$port/v1/models")" = 503 ] &&
  grep -q '"code":"model_loading"' "$dir/m.json" || fail "/v1/models while loading"
kill -TERM "$pid"
for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "SIGTERM did not end a server that is loading"
wait "$pid"; pid=""

# a KV cache larger than the machine's memory is refused at start with the sizes, never left to the OOM killer
mem_mib=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
"$LMF" serve -m "$ROOT/tests/reference/fixtures/hf/gpt2" --port 0 --kv-size $((2 * mem_mib))MiB 2> "$dir/err.txt"; rc=$?
[ $rc = 2 ] && grep -q "KV cache (.* MiB) is larger than this machine's" "$dir/err.txt" ||
  { cat "$dir/err.txt"; fail "a KV cache over the machine's memory (rc $rc)"; }

# --lora: an adapter trained for a few steps on the tiny Hugging Face gpt2 fixture (it carries a tokenizer), served
# unmerged; the greedy completion equals `generate --lora`'s and differs from the base model's
FIX="$ROOT/tests/reference/fixtures/hf/gpt2"
for i in $(seq 0 7); do printf '{"prompt": "Q%d: %d plus %d?", "completion": " It is %d."}\n' $i $i $i $((2 * i)); done > "$dir/ft.jsonl"
"$LMF" finetune -m "$FIX" --data "$dir/ft.jsonl" --batch-size 2 --seq-len 32 --max-steps 8 --lr 1e-2 \
  --lora-targets c_attn,c_fc --threads 2 --out-dir "$dir/ft" > "$dir/ft.log" 2>&1 || { tail "$dir/ft.log"; fail "finetune"; }
prompt="Q3: 3 plus 3?"
"$LMF" generate -m "$FIX" -p "$prompt" -n 8 --temp 0 --lora "$dir/ft/adapter" > "$dir/ref.txt" 2>/dev/null || fail "generate --lora"
"$LMF" generate -m "$FIX" -p "$prompt" -n 8 --temp 0 > "$dir/base.txt" 2>/dev/null || fail "generate"
"$LMF" serve -m "$FIX" --lora "$dir/ft/adapter" --port 0 --parallel 1 -c 64 --kv-lazy 2> "$dir/lora.log" &
pid=$!
serve_ready "$dir/lora.log" 100 && grep -q "LoRA.*MiB, lazy)" "$dir/lora.log" ||
  { cat "$dir/lora.log"; fail "serve --lora"; }
curl -s "http://127.0.0.1:$port/v1/completions" -d "{\"prompt\": \"$prompt\", \"max_tokens\": 8, \"temperature\": 0}" \
  > "$dir/lora.json" || fail "completion with --lora"
python3 - "$dir" "$prompt" <<'PY' || fail "the served adapter's completion differs from generate --lora's"
import json, sys
d, prompt = sys.argv[1], sys.argv[2]
text = json.load(open(d + "/lora.json"))["choices"][0]["text"]
ref = open(d + "/ref.txt", "rb").read().decode("utf-8", "replace")[len(prompt):-1]  # generate: prompt, text, "\n"
base = open(d + "/base.txt", "rb").read().decode("utf-8", "replace")[len(prompt):-1]
print(repr(text), repr(ref), repr(base))
sys.exit(0 if text == ref and text != base else 1)
PY
kill -TERM "$pid"; wait "$pid"; pid=""

if [ ! -f "$SMOL" ]; then
  echo "SKIP: $SMOL not found (scripts/fetch-smollm2.sh); only the refusals were checked"
  exit 0
fi

# the official client, in a venv of the build (python3-venv; PyPI)
PY="$BUILD/pyenv/bin/python"
if ! "$PY" -c "import openai" 2>/dev/null; then
  python3 -m venv "$BUILD/pyenv" > "$dir/venv.log" 2>&1 || { cat "$dir/venv.log"; fail "python3 -m venv (Debian: python3-venv)"; }
  "$BUILD/pyenv/bin/pip" install -q --disable-pip-version-check openai > "$dir/pip.log" 2>&1 ||
    { tail -5 "$dir/pip.log"; fail "pip install openai"; }
fi

# a key from a file; 2 sequences at once and a queue of 2, so 12 concurrent requests must meet a 429
KEY="lmf-test-$RANDOM$RANDOM"
echo "$KEY" > "$dir/key"
"$LMF" serve -m "$SMOL" --port 0 --api-key-file "$dir/key" --parallel 2 --max-queue 2 --max-connections 600 \
  --timeout 5 -c 1024 2> "$dir/server.log" &
pid=$!
serve_ready "$dir/server.log" 300 || fail "the server exited or did not become ready"

LMF_URL="http://127.0.0.1:$port" LMF_KEY="$KEY" LMF_BIN="$LMF" LMF_MODEL="$SMOL" LMF_PID="$pid" \
  timeout 120 "$PY" "$ROOT/tests/serve_openai_test.py" || fail "serve_openai_test.py"

# SIGTERM with a stream in flight: the client sees the stream end, the server exits 0 promptly
curl -sN "http://127.0.0.1:$port/v1/completions" -H "Authorization: Bearer $KEY" \
  -d '{"prompt": "Once upon a time", "max_tokens": 900, "stream": true}' > "$dir/stream.txt" &
cpid=$!
sleep 1
kill -TERM "$pid"
t0=$(date +%s)
wait "$pid"; rc=$?
pid=""
wait "$cpid"
[ $rc = 0 ] || fail "the server exited with $rc on SIGTERM"
[ $(( $(date +%s) - t0 )) -le 5 ] || fail "the server took more than 5 s to stop"
grep -q "SIGTERM: stopping" "$dir/server.log" || fail "no stop message"
grep -q "^data: " "$dir/stream.txt" || { head -c 300 "$dir/stream.txt"; fail "the in-flight stream got nothing"; }
echo "cli_serve: ok"

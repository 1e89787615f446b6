#!/usr/bin/env bash
# Soak test of `lmforge serve` (issue 13): tests/serve_soak.py's 64 clients, ~10% malformed requests, on the tiny
# Hugging Face gpt2 fixture for 10 s (always, so the sanitizer build runs it too: `make test-asan`), then on the real
# SmolLM2-135M-Instruct for SOAK_SECONDS (default 60; skipped with a note when the model has not been fetched) with
# the resident memory held under what was resident once the model was ready (the KV pool, --kv-size, is committed
# by then: checked) + 128 MiB (per-request state: up to --parallel + --max-queue requests of ~0.5 MiB each,
# sampler and logits rows, and the HTTP threads' buffers).
# Usage: cli_serve_soak.sh path/to/lmforge
set -uo pipefail
LMF=$1
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SMOL="${LMF_SMOLLM2_GGUF:-$ROOT/build/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
dir=$(mktemp -d /tmp/lmf_cli_soak_XXXXXX)
. "$ROOT/tests/serve_util.sh" # pid, cleanup on exit, fail

# starts a server (flags in "$@"), sets pid and port
start() {
  "$LMF" serve --port 0 --max-connections 600 --max-queue 256 "$@" 2> "$dir/server.log" &
  pid=$!
  serve_ready "$dir/server.log" 600 || fail "the server exited or did not become ready"
}

stop() {
  kill -TERM "$pid"; wait "$pid"; rc=$?; pid=""
  [ $rc = 0 ] || fail "the server exited with $rc after the soak"
}

start -m "$ROOT/tests/reference/fixtures/hf/gpt2" --parallel 8 -c 64
python3 "$ROOT/tests/serve_soak.py" "http://127.0.0.1:$port" "$pid" --clients 64 --seconds 10 --max-tokens 8 \
  --max-words 4 --no-chat || fail "soak on the tiny model" # 64 positions: no room for a chat template
stop

if [ ! -f "$SMOL" ]; then
  echo "SKIP: $SMOL not found (scripts/fetch-smollm2.sh); the soak ran on the tiny model only"
  exit 0
fi
KV_MIB=256
start -m "$SMOL" --parallel 16 --kv-size ${KV_MIB}MiB -c 1024
ready_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
[ $(( ready_kib / 1024 )) -ge $KV_MIB ] ||
  fail "ready at $(( ready_kib / 1024 )) MiB resident: the ${KV_MIB} MiB KV pool is not committed"
limit=$(( ready_kib / 1024 + 128 ))
python3 "$ROOT/tests/serve_soak.py" "http://127.0.0.1:$port" "$pid" --clients 64 --seconds "${SOAK_SECONDS:-60}" \
  --rss-limit-mib "$limit" || fail "soak on SmolLM2"
stop
echo "cli_serve_soak: ok"

#!/usr/bin/env bash
# llama.cpp loads a mixture-of-experts GGUF written by `lmforge export` and continues a prompt greedily as lmforge
# does (issue 14; once, outside CI: it needs a llama.cpp build, see bench/llamacpp_ref.sh).
#
# MODEL is an lmforge MoE run folder (or checkpoint) with a BPE tokenizer, e.g. bench/moe_bench.sh's
# $MOE_BENCH_DIR/moe; it is exported to GGUF (f32, and q8_0), llama-server loads each, and for each prompt
# /completion (temperature 0, top_k 1, N tokens) is compared with `lmforge generate --temp 0 -n N` on the same GGUF.
#
# With LORA=ADAPTER.gguf (a GGUF adapter `lmforge finetune` wrote for MODEL, e.g. on the router and the experts:
# llama.cpp's ffn_*_exps stacks), both sides run with it unmerged (llama-server --lora, lmforge generate --lora).
#
# usage: bench/moe_llamacpp_check.sh MODEL
# env:   BUILD=build  LLAMA_CPP_DIR=/work/ref/llama.cpp/build/bin  WORK=/tmp/lmforge-moe-llamacpp  PORT=18094
#        N=32  THREADS=2  LORA=
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-/work/ref/llama.cpp/build/bin}
WORK=${WORK:-/tmp/lmforge-moe-llamacpp}
PORT=${PORT:-18094} N=${N:-32} THREADS=${THREADS:-2} LORA=${LORA:-}
lora=()
[ -n "$LORA" ] && lora=(--lora "$LORA")
LMF=$BUILD/lmforge LLS=$LLAMA_CPP_DIR/llama-server
MODEL=${1:?usage: bench/moe_llamacpp_check.sh MODEL}
[ -x "$LLS" ] || { echo "no llama-server in $LLAMA_CPP_DIR" >&2; exit 2; }
mkdir -p "$WORK"
. bench/server_util.sh # SRV_PID, stop_server on exit

prompts=("And God said" "In the beginning" "And the LORD spake unto Moses, saying")
status=0
for type in f32 q8_0; do
  gguf=$WORK/moe.$type.gguf
  "$LMF" export "$MODEL" --to gguf --type "$type" -o "$gguf" > /dev/null
  LD_LIBRARY_PATH="$LLAMA_CPP_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$LLS" -m "$gguf" "${lora[@]}" -t "$THREADS" -tb "$THREADS" \
    --parallel 1 -c 512 --host 127.0.0.1 --port "$PORT" --no-webui > "$WORK/server.$type.log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 600); do
    kill -0 "$SRV_PID" 2> /dev/null || { echo "llama-server exited at start:" >&2; tail -5 "$WORK/server.$type.log" >&2; exit 1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health" 2> /dev/null)" = 200 ] && break
    sleep 0.1
  done
  grep -m1 -o 'n_expert *= *[0-9]*' "$WORK/server.$type.log" || true
  for p in "${prompts[@]}"; do
    body=$(python3 -c 'import json,sys; print(json.dumps({"prompt": sys.argv[1], "n_predict": int(sys.argv[2]),
      "temperature": 0, "top_k": 1, "cache_prompt": False}))' "$p" "$N")
    theirs=$(curl -s "http://127.0.0.1:$PORT/completion" -d "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["content"], end="")')
    ours=$("$LMF" generate -m "$gguf" "${lora[@]}" -p "$p" -n "$N" --temp 0 2> /dev/null)
    ours=${ours#"$p"}
    if [ "$ours" = "$theirs" ]; then
      printf '%-5s same %d tokens: %s|%s\n' "$type" "$N" "$p" "$ours"
    else
      printf '%-5s DIFFER: %s\n  lmforge:   %s\n  llama.cpp: %s\n' "$type" "$p" "$ours" "$theirs"
      status=1
    fi
  done
  stop_server
done
exit $status

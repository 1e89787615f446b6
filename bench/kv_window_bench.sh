#!/usr/bin/env bash
# The sliding-window layers' KV blocks (lmf_kv_pool_create_windows, docs/serving.md): `lmforge serve` on a model with
# windowed layers (Gemma 2 / 3, Mistral) and the same KV budget in MiB, run twice: as it comes (windowed layers keep
# their last window) and with --kv-window-full (every layer keeps every position, as before). The same load each
# time: CONC streams of long prompts (bench/serve_bench.py, WORDS words of the KJV each, MAX_TOKENS generated,
# temperature 0). Prints the CPU and per run: the positions the budget buys, the cache's MiB, the server's peak
# resident memory, the sequences preempted for want of blocks, then serve_bench.py's row (throughput, TTFT, TPOT).
#
# usage: bench/kv_window_bench.sh MODEL.gguf [THREADS=2]
# env:   BUILD=build  KV=192MiB  CONC=4  REQUESTS=8  WORDS=1500 (~2000 tokens)  MAX_TOKENS=32  CTX=4096
#        PORT=18094  OUT=build/kv_window_bench (logs)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
MODEL=$1 THREADS=${2:-2} BUILD=${BUILD:-build} KV=${KV:-192MiB} CONC=${CONC:-4} REQUESTS=${REQUESTS:-8}
WORDS=${WORDS:-1500} MAX_TOKENS=${MAX_TOKENS:-32} CTX=${CTX:-4096} PORT=${PORT:-18094}
OUT=${OUT:-build/kv_window_bench}
mkdir -p "$OUT"
. bench/server_util.sh
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p'), model $(lscpu | sed -n 's/^Model: *//p')); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "model $MODEL, --kv-size $KV, --parallel $CONC, -c $CTX, $REQUESTS requests of $WORDS words, $MAX_TOKENS tokens each, $THREADS threads"
rows=()
for mode in windowed full; do
  log="$OUT/$mode.log"
  extra=()
  [ $mode = full ] && extra=(--kv-window-full)
  "$BUILD/lmforge" serve -m "$MODEL" -t "$THREADS" --parallel "$CONC" --kv-size "$KV" -c "$CTX" --port "$PORT" \
    "${extra[@]}" > "$log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 600); do
    grep -q "ready in" "$log" && break
    kill -0 "$SRV_PID" 2> /dev/null || { tail -3 "$log" >&2; exit 1; }
    sleep 0.2
  done
  ready=$(grep "ready in" "$log")
  blocks=$(sed 's/.*KV cache \([0-9]*\) blocks of \([0-9]*\) positions.*/\1 \2/' <<< "$ready")
  positions=$(( ${blocks% *} * ${blocks#* } ))
  mib=$(sed 's/.*, \([0-9.]*\) MiB.*/\1/' <<< "$ready")
  row=$(python3 bench/serve_bench.py --port "$PORT" --conc "$CONC" --requests "$REQUESTS" --prompt-words "$WORDS" \
        --max-tokens "$MAX_TOKENS" --label "$mode" --no-header | grep '^|' | tail -1)
  preempted=$(curl -s "http://127.0.0.1:$PORT/metrics" | sed -n 's/^lmforge_preempted_total \([0-9]*\)/\1/p')
  rss=$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$SRV_PID/status")
  stop_server
  rows+=("| $mode | $positions | $mib | $rss | $preempted $row")
done
python3 -c "import sys; sys.path.insert(0, 'bench'); import serve_bench; print(serve_bench.HEADER)" |
  sed '1s/^/| run | positions | KV MiB | peak RSS MiB | preempted /; 2s/^/|---|---|---|---|---/' 
for r in "${rows[@]}"; do echo "$r"; done

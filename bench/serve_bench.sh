#!/usr/bin/env bash
# Serving benchmark of issue 13, lmforge serve against llama.cpp's llama-server in the same run: for each GGUF file
# and each concurrency C in CONC, both servers are started on the same file with the same threads and C slots,
# bench/serve_bench.py sends them the same requests (C streams in flight, ~100-token KJV prompts, 128 generated
# tokens, temperature 0) and each server is stopped again. The order of the two alternates from level to level
# (llama first at the 1st, 3rd, 5th level) so a change of load on the shared host does not always hit the same one.
# Prints the CPU, one row per (server, level) as it goes, then the side-by-side table with the lmforge / llama-server
# ratios (output throughput; TTFT p99: below 1 is better), then the single-stream check: `lmforge generate` on
# request 0's prompt (-n 128 --temp 0 -v, median of GEN_REPS runs) against 1 / TPOT p50 of lmforge serve at C = 1.
#
# usage: bench/serve_bench.sh [THREADS=2] FILE.gguf...
# env:   BUILD=build           the lmforge build folder ($BUILD/lmforge); skipped, with a note, when that binary
#                              has no `serve` command yet
#        LLAMA_CPP_DIR=/work/ref/llama.cpp/build/bin   holds llama-server (see bench/llamacpp_ref.sh: this project
#                              never builds or ships llama.cpp); skipped, with a note, when missing
#        CONC="1 4 8 16 32"    REQUESTS=0 (per level; 0 = max(2 C, 16))   PORT=18090 (and PORT+1)
#        OUT=build/serve_bench (logs, results.jsonl)   GEN_REPS=3
#        MAX_PSI=25 RETRIES=2: a level during which some task waited for a core more than MAX_PSI % of the wall
#                              time (/proc/pressure/cpu) is run again, up to RETRIES times; the least-disturbed
#                              run of each level goes into the table
#        WARMUP=0              untimed requests sent to each freshly started server at the level's concurrency
#                              before the timed ones, on prompts that share no prefix with them: a long-running
#                              server has touched its KV memory already (llama-server commits its cache at start;
#                              lmforge's pool is committed as sequences first grow into it, which costs a fresh
#                              server ~14% of a C = 16 run on these VMs: docs/benchmarks.md, session 16)
#        LMFORGE_EXTRA / LLAMA_EXTRA: JSON objects of extra request fields (serve_bench.py --extra)
#        LLAMA_ARGS / LMFORGE_ARGS: extra server flags
#
# llama-server runs as `llama-server -m FILE -t T -tb T --parallel C -c C*512 --host 127.0.0.1 --port P --no-webui`
# (continuous batching is its default; --parallel without --kv-unified gives each slot c/C = 512 positions,
# enough for a prompt and 128 tokens), lmforge as `lmforge serve -m FILE -t T --parallel C --port P`.
# Both listen on loopback only; each load is bounded (REQUESTS per level) and the script stops its servers on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-/work/ref/llama.cpp/build/bin}
CONC=${CONC:-"1 4 8 16 32"}
REQUESTS=${REQUESTS:-0}
WARMUP=${WARMUP:-0}
PORT=${PORT:-18090}
OUT=${OUT:-build/serve_bench}
GEN_REPS=${GEN_REPS:-3}
MAX_PSI=${MAX_PSI:-25}
RETRIES=${RETRIES:-2}
LMFORGE_EXTRA=${LMFORGE_EXTRA:-"{}"}
LLAMA_EXTRA=${LLAMA_EXTRA:-"{}"}
THREADS=2
if [ $# -ge 1 ] && [[ "$1" =~ ^[0-9]+$ ]]; then THREADS=$1; shift; fi
[ $# -gt 0 ] || { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
for f in "$@"; do [ -f "$f" ] || { echo "serve_bench: no such file: $f" >&2; exit 2; }; done

LMF="$BUILD/lmforge" LLS="$LLAMA_CPP_DIR/llama-server"
have_lmf=1 have_llama=1
if [ ! -x "$LMF" ] || ! "$LMF" serve --help > /dev/null 2>&1; then
  have_lmf=0
  echo "serve_bench: NOTE: $LMF has no 'serve' command (not built, or lmforge serve not merged yet): lmforge skipped," \
       "its columns read 'pending'" >&2
fi
if [ ! -x "$LLS" ]; then
  have_llama=0
  echo "serve_bench: NOTE: no llama-server in $LLAMA_CPP_DIR (build one outside this repository, see" \
       "bench/llamacpp_ref.sh, and set LLAMA_CPP_DIR): llama-server skipped" >&2
fi
[ $have_lmf = 1 ] || [ $have_llama = 1 ] || { echo "serve_bench: neither server can run" >&2; exit 2; }

mkdir -p "$OUT"
RES="$OUT/results.jsonl"
: > "$RES"
. bench/server_util.sh # SRV_PID, stop_server on exit

# start_server KIND FILE C PORT LOG: starts it in the background and waits (120 s at most) for GET /health (or
# /v1/models) -> 200
start_server() {
  local kind=$1 file=$2 c=$3 port=$4 log=$5
  if [ "$kind" = llama ]; then
    # shellcheck disable=SC2086
    "$LLS" -m "$file" -t "$THREADS" -tb "$THREADS" --parallel "$c" -c $((c * 512)) --host 127.0.0.1 \
      --port "$port" --no-webui ${LLAMA_ARGS:-} > "$log" 2>&1 &
  else
    # shellcheck disable=SC2086
    "$LMF" serve -m "$file" -t "$THREADS" --parallel "$c" --port "$port" ${LMFORGE_ARGS:-} > "$log" 2>&1 &
  fi
  SRV_PID=$!
  for _ in $(seq 1200); do
    if ! kill -0 "$SRV_PID" 2> /dev/null; then
      echo "serve_bench: $kind server exited at start:" >&2; tail -5 "$log" >&2; SRV_PID=; return 1
    fi
    for ep in health v1/models; do  # /v1/models for a server without /health
      [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/$ep" 2> /dev/null)" = 200 ] && return 0
    done
    sleep 0.1
  done
  echo "serve_bench: $kind server not healthy after 120 s:" >&2; tail -5 "$log" >&2; stop_server; return 1
}

# run_one KIND FILE C: one server, one level; appends to $RES and prints the row
run_one() {
  local kind=$1 file=$2 c=$3 name port extra
  name=$(basename "$file" .gguf)
  port=$PORT extra=$LLAMA_EXTRA
  if [ "$kind" = lmforge ]; then port=$((PORT + 1)) extra=$LMFORGE_EXTRA; fi
  for ((try = 0; try <= RETRIES; try++)); do
    start_server "$kind" "$file" "$c" "$port" "$OUT/$kind-$name-c$c.log" || return 0
    if [ "$WARMUP" -gt 0 ]; then # untimed, on prompts no timed request shares a prefix with (request 400 on)
      python3 bench/serve_bench.py --port "$port" --server-kind "$kind" --conc "$c" --requests "$WARMUP" \
        --first-request 400 --extra "$extra" --no-header > /dev/null || true
    fi
    python3 bench/serve_bench.py --port "$port" --server-kind "$kind" --label "$kind $name" --file-label "$name" \
      --conc "$c" --requests "$REQUESTS" --extra "$extra" --json "$RES" --no-header || true
    stop_server
    # the host is shared: a level during which something waited for a core more than MAX_PSI % of the time is run
    # again (the report keeps each level's least-disturbed run)
    psi=$(tail -1 "$RES" | python3 -c 'import json, sys; print(int(json.load(sys.stdin).get("cpu_pressure_pct", 0)))')
    [ "$psi" -gt "$MAX_PSI" ] || break
    if [ "$try" -lt "$RETRIES" ]; then echo "serve_bench: $kind $name C=$c: CPU pressure $psi% > $MAX_PSI%, again" >&2; fi
  done
  return 0 # a level that stayed disturbed keeps its least-disturbed run; the next one still runs
}

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), family $(lscpu | sed -n 's/^CPU family: *//p')," \
     "model $(lscpu | sed -n 's/^Model: *//p'), $(nproc) cores; threads $THREADS;" \
     "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
[ $have_llama = 0 ] || echo "llama-server: $("$LLS" --version 2>&1 | grep -m1 -i 'version' || echo '?')"
echo
python3 - <<'EOF'
import sys; sys.path.insert(0, "bench"); import serve_bench as s; print(s.HEADER)
EOF
for f in "$@"; do
  i=0
  for c in $CONC; do
    if [ $((i % 2)) = 0 ]; then order="llama lmforge"; else order="lmforge llama"; fi
    for kind in $order; do
      if [ "$kind" = llama ] && [ $have_llama = 0 ]; then continue; fi
      if [ "$kind" = lmforge ] && [ $have_lmf = 0 ]; then continue; fi
      run_one "$kind" "$f" "$c"
    done
    i=$((i + 1))
  done
done
echo
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 bench/serve_bench.py --report "$RES"

# single stream: lmforge generate against lmforge serve at C = 1 (both decode one sequence through the KV cache)
if [ $have_lmf = 1 ]; then
  echo
  echo "| model | lmforge generate gen tok/s (median of $GEN_REPS) | lmforge serve C=1: 1000 / TPOT p50 | ratio serve / generate |"
  echo "|---|---|---|---|"
  prompt=$(python3 bench/serve_bench.py --print-prompt 0)
  for f in "$@"; do
    name=$(basename "$f" .gguf) g=()
    for ((r = 0; r < GEN_REPS; r++)); do
      g+=("$("$LMF" generate -m "$f" -t "$THREADS" -p "$prompt" -n 128 --temp 0 -v 2>&1 > /dev/null |
             sed -n 's/.*generation: [0-9]* tokens in [0-9.]* s, \([0-9.]*\) tok\/s.*/\1/p')")
    done
    gm=$(printf '%s\n' "${g[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    sv=$(python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
r = [x for x in rows if x.get("file") == sys.argv[2] and x["server"] == "lmforge" and x["conc"] == 1]
tpot = r[-1]["tpot_p50_ms"] if r else 0
print("%.1f" % (1000 / tpot) if tpot > 0 else "nan")' "$RES" "$name")
    printf '| %s | %s | %s | %s |\n' "$name" "$gm" "$sv" \
      "$(awk -v a="$sv" -v b="$gm" 'BEGIN { if (b > 0 && a == a + 0) printf "%.2f", a / b; else print "n/a" }')"
  done
fi

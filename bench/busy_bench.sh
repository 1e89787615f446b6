#!/usr/bin/env bash
# Speed on a busy machine (issue 17 item 8): prompt processing (pp512), generation (tg128) and a training step, each
# with libgomp's default spinning (LMF_OMP_RESTARTED=1 keeps lmf_bound_omp_spin from acting) and as lmforge runs by
# itself (lmf_bound_omp_spin bounds the spin when it sees other work running at start-up), on an idle machine and
# with a busy loop pinned to one core (taskset -c 0). Rounds alternate the two settings, so host drift hits both
# alike; the table gives medians and lmforge/default ratios.
#
# usage: bench/busy_bench.sh [ROUNDS=3]
# env:   BUILD=build  MODEL=$BUILD/models/SmolLM2-135M-Instruct.Q8_0.gguf  THREADS=2
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MODEL=${MODEL:-$BUILD/models/SmolLM2-135M-Instruct.Q8_0.gguf}
THREADS=${THREADS:-2}
ROUNDS=${1:-3}
[ -f "$MODEL" ] || { echo "missing $MODEL" >&2; exit 2; }
cmake --build "$BUILD" -j"$(nproc)" --target bench_infer bench_train > /dev/null
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<< "$2"; }
busy_pid=
stop_busy() { [ -z "$busy_pid" ] || { kill "$busy_pid" 2> /dev/null || true; wait "$busy_pid" 2> /dev/null || true; busy_pid=; }; }
trap stop_busy EXIT

declare -A val
for load in idle busy; do
  [ $load = busy ] && { taskset -c 0 bash -c 'while :; do :; done' & busy_pid=$!; }
  for ((r = 1; r <= ROUNDS; r++)); do
    for spin in default bounded; do
      envs=(); [ $spin = default ] && envs=(LMF_OMP_RESTARTED=1)
      out=$(env "${envs[@]}" "$BUILD/bench_infer" "$MODEL" "$THREADS" 512 128 1)
      val[$load,$spin,pp,$r]=$(field pp_tok_s "$out") val[$load,$spin,tg,$r]=$(field tg_tok_s "$out")
      out=$(env "${envs[@]}" "$BUILD/bench_train" llama 6 384 6 2 1024 8192 4 256 "$THREADS" 4)
      val[$load,$spin,train,$r]=$(field ms_per_step "$out")
    done
  done
  stop_busy
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
FAM=$(lscpu | sed -n 's/^CPU family: *//p' | head -1) MOD=$(lscpu | sed -n 's/^Model: *//p' | head -1)
echo "| load | row | libgomp default spin | lmforge (spin bounded when busy) | lmforge/default speed |"
echo "|---|---|---|---|---|"
for load in idle busy; do
  for row in pp tg train; do
    d=() b=()
    for ((r = 1; r <= ROUNDS; r++)); do d+=("${val[$load,default,$row,$r]}"); b+=("${val[$load,bounded,$row,$r]}"); done
    md=$(med "${d[@]}") mb=$(med "${b[@]}")
    case $row in
      pp) name="pp512 tok/s"; ratio=$(awk -v a="$mb" -v b="$md" 'BEGIN{printf "%.2fx", a/b}') ;;
      tg) name="tg128 tok/s"; ratio=$(awk -v a="$mb" -v b="$md" 'BEGIN{printf "%.2fx", a/b}') ;;
      train) name="train step ms (llama 6x384, B4 T256)"; ratio=$(awk -v a="$mb" -v b="$md" 'BEGIN{printf "%.2fx", b/a}') ;;
    esac
    echo "| $load | $name | $md | $mb | $ratio |"
  done
done
echo
echo "CPU: $CPU (family $FAM model $MOD, $(nproc) cores); $THREADS threads; $(basename "$MODEL"); busy = one shell"
echo "loop pinned to core 0; medians of $ROUNDS alternating rounds; lmforge $(git rev-parse --short HEAD)."

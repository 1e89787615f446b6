#!/usr/bin/env bash
# Training speed: lmforge against PyTorch CPU on the same models, batch, sequence length and threads, AdamW step
# included. Prints a markdown table: ms/step, tokens/s, MFU against the FP32 peak measured in the same run, peak RSS.
#
# usage: bench/train_bench.sh [STEPS] [ROWS...]   rows: gpt2-T64, gpt2-T256, small (default: all)
# env:   BUILD=build  PYTHON=/usr/bin/python3 (with torch; Debian python3-torch)
#
# MFU counts 6 * (matmul parameters, the tied head included) + 12 * L * C * T FLOPs per token (forward+backward),
# the PaLM convention.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PYTHON:-/usr/bin/python3}
STEPS=${1:-5}
shift || true
ROWS=("$@")
[ ${#ROWS[@]} -gt 0 ] || ROWS=(gpt2-T64 gpt2-T256 small)
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
cmake --build "$BUILD" -j"$(nproc)" --target bench_train bench_peak > /dev/null
"$PY" -c "import torch" 2>/dev/null || scripts/install-deps.sh python3-torch

declare -A peak
while read -r _ t _ g; do peak[${t#threads=}]=${g#gflops=}; done < <("$BUILD/bench_peak" 2)

field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<< "$2"; }
echo "| model | B | T | threads | impl | ms/step | tokens/s | MFU | peak RSS MiB | speed-up |"
echo "|---|---|---|---|---|---|---|---|---|---|"
run_row() { # name arch L C H KVH F V B T threads
  local name=$1; shift
  local args=("$@") threads=${10}
  local L=$2 C=$3 F=$6 V=$7 T=$9 KVH=$5 H=$4
  local hs=$((C / H))
  local mm=$(( L * (C * (C + 2 * KVH * hs) + C * C + 2 * C * F) + V * C ))
  [ "$1" = llama ] && mm=$(( L * (C * (C + 2 * KVH * hs) + C * C + 3 * C * F) + V * C ))
  local flops_tok=$(( 6 * mm + 12 * L * C * T ))
  local lm pt
  lm=$("$BUILD/bench_train" "${args[@]}" "$STEPS")
  pt=$("$PY" bench/torch_train.py "${args[@]}" "$STEPS")
  local lt=$(field tok_per_s "$lm") tt=$(field tok_per_s "$pt")
  for impl in lmforge torch; do
    local line=$lm; [ $impl = torch ] && line=$pt
    local tps=$(field tok_per_s "$line")
    local mfu=$(awk -v f=$flops_tok -v t="$tps" -v p="${peak[$threads]}" 'BEGIN{printf "%.1f%%", 100*f*t/(p*1e9)}')
    local sp=$(awk -v a="$tps" -v b="$tt" 'BEGIN{printf "%.2fx", a/b}')
    echo "| $name | $8 | $T | $threads | $impl | $(field ms_per_step "$line") | $tps | $mfu | $(field peak_rss_mib "$line") | $sp |"
  done
}
for row in "${ROWS[@]}"; do
  case $row in
    gpt2-T64)  for th in 1 2; do run_row "GPT-2 124M" gpt2 12 768 12 12 3072 50257 4 64 $th; done ;;
    gpt2-T256) for th in 1 2; do run_row "GPT-2 124M" gpt2 12 768 12 12 3072 50257 4 256 $th; done ;;
    small)     run_row "small L6 C384" gpt2 6 384 6 6 1536 8192 8 256 2 ;;
    *) echo "unknown row $row" >&2; exit 2 ;;
  esac
done
echo
echo "FP32 peak measured in this run: 1 thread ${peak[1]} GFLOP/s, 2 threads ${peak[2]} GFLOP/s"

#!/usr/bin/env bash
# Training speed: lmforge against PyTorch CPU on the same models, batch, sequence length and threads, AdamW step
# included. Prints a markdown table: ms/step, tokens/s, MFU against the FP32 peak measured in the same run, peak RSS.
#
# usage: bench/train_bench.sh [STEPS] [ROWS...]   rows: gpt2-T64, gpt2-T256, small (default: all)
# env:   BUILD=build  PYTHON=/usr/bin/python3 (with torch; Debian python3-torch)
#        PRECISION=bf16: four lines per row, lmforge fp32 and bf16 (train --precision bf16), torch fp32 and under bf16
#        autocast; MFU of the bf16 lines against the BF16 peak (bench_peak's second line); speed-up is lmforge
#        bf16's tokens/s over the line's
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

declare -A peak bpeak
while read -r _ t isa g; do
  case $isa in isa=bf16*) bpeak[${t#threads=}]=${g#gflops=} ;; *) peak[${t#threads=}]=${g#gflops=} ;; esac
done < <("$BUILD/bench_peak" 2)

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
  local -A line
  line[lmforge]=$("$BUILD/bench_train" "${args[@]}" "$STEPS")
  line[torch]=$("$PY" bench/torch_train.py "${args[@]}" "$STEPS")
  local impls=(lmforge torch) ref=torch
  if [ "${PRECISION:-fp32}" = bf16 ]; then
    line[lmforge-bf16]=$(LMF_BENCH_PRECISION=bf16 "$BUILD/bench_train" "${args[@]}" "$STEPS")
    line[torch-autocast]=$(TORCH_AUTOCAST=bf16 "$PY" bench/torch_train.py "${args[@]}" "$STEPS")
    impls=(lmforge-bf16 lmforge torch-autocast torch) ref=lmforge-bf16
  fi
  local rt=$(field tok_per_s "${line[$ref]}")
  for impl in "${impls[@]}"; do
    local l=${line[$impl]} p=${peak[$threads]}
    case $impl in *bf16|*autocast) p=${bpeak[$threads]:-$p} ;; esac
    local tps=$(field tok_per_s "$l")
    local mfu=$(awk -v f=$flops_tok -v t="$tps" -v p="$p" 'BEGIN{printf "%.1f%%", 100*f*t/(p*1e9)}')
    local sp
    if [ $ref = torch ]; then sp=$(awk -v a="$tps" -v b="$rt" 'BEGIN{printf "%.2fx", a/b}')
    else sp=$(awk -v a="$rt" -v b="$tps" 'BEGIN{printf "%.2fx", a/b}'); fi
    echo "| $name | $8 | $T | $threads | $impl | $(field ms_per_step "$l") | $tps | $mfu | $(field peak_rss_mib "$l") | $sp |"
  done
}
for row in "${ROWS[@]}"; do
  case $row in
    gpt2-T64)  for th in 1 2; do run_row "GPT-2 124M" gpt2 12 768 12 12 3072 50257 4 64 $th; done ;;
    gpt2-T256) for th in 1 2; do run_row "GPT-2 124M" gpt2 12 768 12 12 3072 50257 4 256 $th; done ;;
    small)     for th in 1 2; do run_row "small L6 C384" gpt2 6 384 6 6 1536 8192 8 256 $th; done ;;
    *) echo "unknown row $row" >&2; exit 2 ;;
  esac
done
echo
echo "FP32 peak measured in this run: 1 thread ${peak[1]} GFLOP/s, 2 threads ${peak[2]} GFLOP/s"
[ -z "${bpeak[1]:-}" ] || echo "BF16 peak (lmf_sgemm_bf16's instruction): 1 thread ${bpeak[1]} GFLOP/s, 2 threads ${bpeak[2]} GFLOP/s"
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p') model $(lscpu | sed -n 's/^Model: *//p')), AMX: $(grep -q amx_bf16 /proc/cpuinfo && echo yes || echo no)"

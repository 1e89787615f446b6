#!/usr/bin/env bash
# Generation with K-quant matrices: lmforge against llama.cpp on a dense llama whose widths are multiples of 256
# (SmolLM2's 576 are not, so its K-quant files hold Q4_0 / Q5_0 / Q8_0 fallbacks for all but ffn_down). A random-
# weight model from bench/moe_random_gguf.py --experts 0 (12 layers, C 1024, 16/4 heads, ffn 2816, vocab 32000:
# 201M parameters), quantized by `lmforge quantize` into llama-quantize's mixes (the same bytes as llama-quantize),
# then bench/decode_ratio.sh (tg128, the two programs alternating, median of the per-round ratios) and, with PP=1,
# pp512 through llama-bench's and bench_infer's own repetitions.
#
# usage: bench/kquant_decode_bench.sh [ROUNDS=5] [THREADS="1 2"] [TYPES="q2_k q3_k_m q4_k_m q5_k_m q6_k"]
# env:   BUILD=build  LLAMA_CPP_DIR=/work/ref/llama.cpp/build/bin  WORK=/tmp/lmforge-kquant-speed  PP=0
#        PY=/work/venv-torch/bin/python (numpy; gguf-py comes from $LLAMA_CPP_DIR/../..)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-/work/ref/llama.cpp/build/bin}
WORK=${WORK:-/tmp/lmforge-kquant-speed}
PY=${PY:-/work/venv-torch/bin/python}
ROUNDS=${1:-5}
THREADS=${2:-"1 2"}
TYPES=${3:-"q2_k q3_k_m q4_k_m q5_k_m q6_k"}
mkdir -p "$WORK"
cmake --build "$BUILD" -j2 --target lmforge bench_infer > /dev/null
[ -f "$WORK/dense.f32.gguf" ] ||
  LLAMA_CPP=$LLAMA_CPP_DIR/../.. "$PY" bench/moe_random_gguf.py "$WORK/dense.f32.gguf" --experts 0 --ffn 2816
files=()
for t in $TYPES; do
  f="$WORK/dense-201M.${t^^}.gguf"
  [ -f "$f" ] || "$BUILD/lmforge" quantize "$WORK/dense.f32.gguf" "$f" --type "$t" > /dev/null
  files+=("$f")
done
echo "CPU: $(lscpu | grep -m1 'Model name' | sed 's/.*: *//') (family $(lscpu | grep -m1 'CPU family' | awk '{print $3}'), model $(lscpu | grep -m1 '^Model:' | awk '{print $2}')); load average $(cut -d' ' -f1-3 /proc/loadavg)"
BUILD=$BUILD LLAMA_CPP_DIR=$LLAMA_CPP_DIR bench/decode_ratio.sh "$ROUNDS" "$THREADS" "${files[@]}"
[ "${PP:-0}" = 1 ] || exit 0
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<< "$2"; }
echo
echo "| model | threads | lmforge pp512 tok/s | llama.cpp pp512 | ratio |"
echo "|---|---|---|---|---|"
for f in "${files[@]}"; do
  for th in $THREADS; do
    lpp=$(field pp_tok_s "$("$BUILD/bench_infer" "$f" "$th" 512 0 3)")
    cpp=$(LD_LIBRARY_PATH="$LLAMA_CPP_DIR" "$LLAMA_CPP_DIR/llama-bench" -m "$f" -t "$th" -p 512 -n 0 -r 3 -o csv \
      2> /dev/null | tail -n +2 | awk -F, '{gsub(/"/, "", $0); print $(NF-1)}')
    printf "| %s | %s | %.1f | %.1f | %.2fx |\n" "$(basename "$f" .gguf)" "$th" "$lpp" "$cpp" "$(echo "$lpp / $cpp" | bc -l)"
  done
done

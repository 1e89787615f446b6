#!/usr/bin/env bash
# Inference speed of a mixture of experts: lmforge against llama.cpp's llama-bench on the same random-weight MoE
# GGUF (bench/moe_random_gguf.py: llama architecture, 12 layers, C 1024, 16/4 heads, 8 experts of 1024 top-2,
# vocab 32000: 399M parameters, ~100M active per token), in Q8_0 and Q4_1 made by `lmforge quantize` from the F32
# file; pp512 and tg128 like llama-bench, at 1 and 2 threads, the two programs alternating.
#
# usage: bench/moe_infer_bench.sh [REPS=3] [THREADS="1 2"]
# env:   BUILD=build  LLAMA_CPP_DIR=/work/ref/llama.cpp/build/bin  WORK=/tmp/lmforge-moe-speed
#        PY=/work/venv-peft/bin/python (numpy; gguf-py comes from $LLAMA_CPP_DIR/../..)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-/work/ref/llama.cpp/build/bin}
WORK=${WORK:-/tmp/lmforge-moe-speed}
PY=${PY:-/work/venv-peft/bin/python}
REPS=${1:-3}
THREADS=${2:-"1 2"}
mkdir -p "$WORK"
cmake --build "$BUILD" -j2 --target lmforge bench_infer > /dev/null
[ -f "$WORK/moe.f32.gguf" ] || LLAMA_CPP=$LLAMA_CPP_DIR/../.. "$PY" bench/moe_random_gguf.py "$WORK/moe.f32.gguf"
for t in q8_0 q4_1; do
  [ -f "$WORK/moe.$t.gguf" ] || "$BUILD/lmforge" quantize "$WORK/moe.f32.gguf" "$WORK/moe.$t.gguf" --type $t > /dev/null
done
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<< "$2"; }
llama() { # file threads test -> tokens/s
  LD_LIBRARY_PATH="$LLAMA_CPP_DIR" "$LLAMA_CPP_DIR/llama-bench" -m "$1" -t "$2" -p "$3" -n "$4" -r "$REPS" -o csv \
    2> /dev/null | tail -n +2 | awk -F, '{gsub(/"/, "", $0); print $(NF-1)}' | paste -sd' '
}
echo "CPU: $(lscpu | grep -m1 'Model name' | sed 's/.*: *//') (family $(lscpu | grep -m1 'CPU family' | awk '{print $3}'), model $(lscpu | grep -m1 '^Model:' | awk '{print $2}')); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| model | threads | lmforge pp512 tok/s | llama.cpp pp512 | ratio | lmforge tg128 tok/s | llama.cpp tg128 | ratio |"
echo "|---|---|---|---|---|---|---|---|"
for t in q8_0 q4_1; do
  for th in $THREADS; do
    lm=$("$BUILD/bench_infer" "$WORK/moe.$t.gguf" "$th" 512 128 "$REPS")
    lpp=$(field pp_tok_s "$lm") ltg=$(field tg_tok_s "$lm")
    cpp=$(llama "$WORK/moe.$t.gguf" "$th" 512 0) ctg=$(llama "$WORK/moe.$t.gguf" "$th" 0 128)
    printf "| MoE 8x top-2 399M %s | %s | %s | %s | %.2f | %s | %s | %.2f |\n" "${t^^}" "$th" "$lpp" "$cpp" \
      "$(echo "$lpp / $cpp" | bc -l)" "$ltg" "$ctg" "$(echo "$ltg / $ctg" | bc -l)"
  done
done

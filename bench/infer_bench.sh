#!/usr/bin/env bash
# Inference speed: lmforge against llama.cpp on the same GGUF files and threads, measured like llama-bench
# (pp = prompt processing of 512 tokens in one batch, tg = generation of 128 tokens one at a time, both from an
# empty context). Prints a markdown table with tokens/s, the lmforge/llama.cpp ratio and lmforge's peak RSS.
#
# usage: bench/infer_bench.sh [REPS=3] [THREADS="1 2"]
# env:   BUILD=build  MODELS_DIR=build/models  LLAMA_CPP_DIR=/work/ref/llama.cpp/build/bin (optional: without a
#        llama.cpp build only the lmforge columns are printed; bench/llamacpp_ref.sh says how to build one)
#
# The Q8_0, F16 and F32 files are made from the real Q4_1 SmolLM2 by `lmforge quantize` (dequantize, then
# requantize), so both programs read byte-identical weights.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MODELS_DIR=${MODELS_DIR:-build/models}
REPS=${1:-3}
THREADS=${2:-"1 2"}
LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-/work/ref/llama.cpp/build/bin}
cmake --build "$BUILD" -j"$(nproc)" --target lmforge bench_infer > /dev/null
scripts/fetch-smollm2.sh > /dev/null
SRC="$MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
declare -A FILE=([Q4_1]="$SRC")
for t in Q8_0 F16 F32; do
  FILE[$t]="$MODELS_DIR/SmolLM2-135M-Instruct.$t.gguf"
  [ -f "${FILE[$t]}" ] || "$BUILD/lmforge" quantize "$SRC" "${FILE[$t]}" --type "${t,,}" > /dev/null
done

have_llama=0
[ -x "$LLAMA_CPP_DIR/llama-bench" ] && have_llama=1
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<< "$2"; }
echo "| model | threads | lmforge pp512 tok/s | llama.cpp pp512 | ratio | lmforge tg128 tok/s | llama.cpp tg128 | ratio | lmforge peak RSS MiB | file MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for t in Q4_1 Q8_0 F16 F32; do
  f=${FILE[$t]}
  mib=$(( $(stat -c %s "$f") / 1048576 ))
  for th in $THREADS; do
    lm=$("$BUILD/bench_infer" "$f" "$th" 512 128 "$REPS")
    lpp=$(field pp_tok_s "$lm") ltg=$(field tg_tok_s "$lm") rss=$(field peak_rss_mib "$lm")
    rpp="-" rtg="-" cpp="-" ctg="-"
    if [ $have_llama = 1 ]; then
      line=$(LLAMA_CPP_DIR="$LLAMA_CPP_DIR" bench/llamacpp_ref.sh "$th" "$REPS" "$f" | tail -1)
      cpp=$(awk '{print $4}' <<< "$line") ctg=$(awk '{print $5}' <<< "$line")
      rpp=$(awk -v a="$lpp" -v b="$cpp" 'BEGIN { printf "%.2fx", a / b }')
      rtg=$(awk -v a="$ltg" -v b="$ctg" 'BEGIN { printf "%.2fx", a / b }')
    fi
    echo "| SmolLM2-135M $t | $th | $lpp | $cpp | $rpp | $ltg | $ctg | $rtg | $rss | $mib |"
  done
done

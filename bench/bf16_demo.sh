#!/usr/bin/env bash
# Mixed precision against fp32 on the demo's pretraining run (issue 16 item 2): configs/demo.toml (300 steps of the
# 3.3M-parameter gpt2 on the King James Bible, `make demo`'s data) once with --precision fp32 and once with
# --precision bf16, same seed, data order and schedule. Prints a markdown table: final validation loss, its
# difference from fp32's (the bar: within 1%), median tokens/s over each run's steps, with the CPU and the bf16
# product rate lmforge measured on it (lmf_sgemm_bf16_rate). The runs take minutes one after the other, so drift on
# a shared host lands on one of them; the speed ratio to read comes after the table: ROUNDS alternating rounds of
# bench_train on the demo's model and batch (fp32, then LMF_BENCH_PRECISION=bf16), medians.
#
# usage: bench/bf16_demo.sh [STEPS=300] [ROUNDS=5]
# env:   BUILD=build  DIR=out/bf16-demo (data and the two runs)  THREADS=2
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DIR=${DIR:-out/bf16-demo}
THREADS=${THREADS:-2}
STEPS=${1:-300}
ROUNDS=${2:-5}
cmake --build "$BUILD" -j"$(nproc)" --target lmforge bench_train > /dev/null
LMF=$BUILD/lmforge
mkdir -p "$DIR"
if [ ! -f "$DIR/data/val.bin" ]; then # the data `make demo` makes
  bible gen1:1-rev22:21 > "$DIR/kjv.txt"
  "$LMF" tokenizer train --vocab-size 4096 --special "<|endoftext|>" -o "$DIR/tokenizer.json" "$DIR/kjv.txt" 2> /dev/null
  "$LMF" data shard --tokenizer "$DIR/tokenizer.json" --out "$DIR/data" "$DIR/kjv.txt" 2> /dev/null
fi

declare -A val tps log
for p in fp32 bf16; do
  rm -rf "$DIR/run-$p"
  "$LMF" train --config configs/demo.toml --train-data "$DIR/data/train.bin" --val-data "$DIR/data/val.bin" \
    --out-dir "$DIR/run-$p" --max-steps "$STEPS" --sample-tokens 0 --threads "$THREADS" --precision "$p" \
    2> "$DIR/run-$p.log"
  m=$DIR/run-$p/metrics.jsonl
  val[$p]=$(grep val_loss "$m" | tail -1 | sed 's/.*"val_loss":\([^}]*\)}.*/\1/')
  tps[$p]=$(grep tok_per_s "$m" | sed 's/.*"tok_per_s":\([^}]*\)}.*/\1/' | sort -g |
            awk '{a[NR] = $1} END {print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
done
rate=$(tr '\r' '\n' < "$DIR/run-bf16.log" | sed -n 's/.*bf16 products run at \([0-9.]*\)x.*/\1/p' | head -1)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
fam=$(sed -n 's/^cpu family[[:space:]]*: //p' /proc/cpuinfo | head -1)
mod=$(sed -n 's/^model[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "CPU: $cpu (family $fam model $mod), $(nproc) cores, threads=$THREADS; bf16 products at ${rate}x the fp32 rate"
echo
echo "| precision | final val loss | vs fp32 | median tokens/s | speed vs fp32 |"
echo "|---|---|---|---|---|"
for p in fp32 bf16; do
  awk -v p="$p" -v v="${val[$p]}" -v v0="${val[fp32]}" -v t="${tps[$p]}" -v t0="${tps[fp32]}" \
    'BEGIN {printf "| %s | %.4f | %+.3f%% | %.0f | %.2fx |\n", p, v, 100 * (v - v0) / v0, t, t / t0}'
done
# alternating rounds on the demo's shape: gpt2 L4 C256 H4 F1024 V4096, B16 x T128 (configs/demo.toml)
med() { sort -g | awk '{a[NR] = $1} END {print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
for ((r = 1; r <= ROUNDS; r++)); do
  for p in fp32 bf16; do
    LMF_BENCH_PRECISION=$p "$BUILD/bench_train" gpt2 4 256 4 4 1024 4096 16 128 "$THREADS" 5 |
      sed -n 's/.*tok_per_s=\([^ ]*\).*/\1/p' >> "$DIR/rounds-$p.txt"
  done
done
f=$(med < "$DIR/rounds-fp32.txt") b=$(med < "$DIR/rounds-bf16.txt")
rm -f "$DIR/rounds-fp32.txt" "$DIR/rounds-bf16.txt"
awk -v f="$f" -v b="$b" -v n="$ROUNDS" 'BEGIN {printf "\nalternating bench_train rounds (%d, 5 steps each, medians): fp32 %.0f tokens/s, bf16 %.0f: bf16 %.2fx\n", n, f, b, b / f}'
awk -v v="${val[bf16]}" -v v0="${val[fp32]}" 'BEGIN {d = (v - v0) / v0; if (d < 0) d = -d; exit !(d <= 0.01)}' ||
  { echo "bf16's final validation loss is more than 1% from fp32's" >&2; exit 1; }

#!/usr/bin/env bash
# Data-parallel fine-tuning speed (docs/distributed.md "Fine-tuning over MPI"): `lmforge finetune` on
# SmolLM2-135M-Instruct, one global batch of K micro-batches of B x T tokens a step, run as 1 rank x 1 thread and as
# D ranks x 1 thread (mpirun, each rank K / D micro-batches), rounds alternated. Prints a markdown table: ms/step
# (median over the timed steps of every round), tokens/s, the speed-up over one rank and the scaling efficiency
# (speed-up / D: N ranks x 1 thread against 1 rank x 1 thread, times N), and checks that both runs end on the same
# checkpoint bytes. LoRA r 16 on q_proj,v_proj (FULL=1: every weight). OVERLAP=1 adds a D-rank run with
# --overlap-grad-reduce to every round (its checkpoint compared too).
#
# usage: bench/finetune_dp_bench.sh [ROUNDS] [RANKS]        (default: 3 rounds, 2 ranks)
# env:   BUILD=build  MODEL=$BUILD/models/SmolLM2-135M-Instruct.Q8_0.gguf  B=4 T=256 K=4 STEPS=8 (the first 2 of
#        them not timed)  FULL=0  OVERLAP=0  BTL=self,tcp (Open MPI's
#        transports; self,vader: shared memory)  WORK=/tmp/lmforge-finetune-dp-bench
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MODEL=${MODEL:-$BUILD/models/SmolLM2-135M-Instruct.Q8_0.gguf}
ROUNDS=${1:-3} D=${2:-2}
B=${B:-4} T=${T:-256} K=${K:-4} STEPS=${STEPS:-8}
WORK=${WORK:-/tmp/lmforge-finetune-dp-bench}
[ -f "$MODEL" ] || { echo "missing $MODEL (scripts/fetch-smollm2.sh)" >&2; exit 2; }
command -v mpirun > /dev/null || { echo "mpirun not found (scripts/install-deps.sh)" >&2; exit 2; }
cmake --build "$BUILD" -j"$(nproc)" --target lmforge > /dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p "$WORK"
DATA=$WORK/data.jsonl
if [ ! -s "$DATA" ]; then # ~1500-character {"text"} chunks of the King James Bible, else of this repository's docs
  if command -v bible > /dev/null; then bible gen1:1-exo40:38 > "$WORK/text.txt"; else cat docs/*.md > "$WORK/text.txt"; fi
  awk 'BEGIN{RS="[ \n]+"} {c = c (c ? " " : "") $0; if (length(c) >= 1500) {gsub(/["\\]/, "", c); printf "{\"text\": \"%s\"}\n", c; c = ""}}' \
    "$WORK/text.txt" | head -400 > "$DATA"
fi
flags=(-m "$MODEL" --data "$DATA" --val-fraction 0 --batch-size "$B" --seq-len "$T" --grad-accum "$K"
       --max-steps "$STEPS" --warmup-steps 2 --eval-every 0 --threads 1)
[ "${FULL:-0}" = 1 ] && flags+=(--full)
ms() { grep -o '"ms":[0-9.]*' "$1/metrics.jsonl" | cut -d: -f2 | tail -n +3; } # the timed steps
declare -a one all ovl
last=$(printf "ckpt-%08d.lmfc" "$STEPS")
ranks() { # OUT [FLAG]
  mpirun -np "$D" --oversubscribe --mca btl "${BTL:-self,tcp}" "$BUILD/lmforge" finetune "${flags[@]}" --out-dir "$WORK/$1" \
    ${2:+"$2"} 2> /dev/null
  cmp -s "$WORK/one/$last" "$WORK/$1/$last" || { echo "round $r: the $D-rank run's checkpoint differs ($1)" >&2; exit 1; }
}
for r in $(seq "$ROUNDS"); do
  rm -rf "$WORK/one" "$WORK/dp" "$WORK/ov"
  "$BUILD/lmforge" finetune "${flags[@]}" --out-dir "$WORK/one" 2> /dev/null
  ranks dp
  one+=($(ms "$WORK/one")) all+=($(ms "$WORK/dp"))
  if [ "${OVERLAP:-0}" = 1 ]; then ranks ov --overlap-grad-reduce; ovl+=($(ms "$WORK/ov")); fi
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
m1=$(median "${one[@]}") mD=$(median "${all[@]}")
tok=$((B * T * K))
echo "| ranks x threads | ms/step | tokens/s | speed-up | scaling efficiency |"
echo "|---|---|---|---|---|"
awk -v m="$m1" -v t="$tok" 'BEGIN{printf "| 1 x 1 | %.1f | %.0f | 1.00x | |\n", m, t / m * 1000}'
awk -v m="$mD" -v m1="$m1" -v t="$tok" -v d="$D" \
  'BEGIN{printf "| %d x 1 | %.1f | %.0f | %.2fx | %.0f%% |\n", d, m, t / m * 1000, m1 / m, 100 * m1 / m / d}'
[ "${OVERLAP:-0}" = 1 ] && awk -v m="$(median "${ovl[@]}")" -v m1="$m1" -v t="$tok" -v d="$D" \
  'BEGIN{printf "| %d x 1, --overlap-grad-reduce | %.1f | %.0f | %.2fx | %.0f%% |\n", d, m, t / m * 1000, m1 / m, 100 * m1 / m / d}'
echo
echo "$([ "${FULL:-0}" = 1 ] && echo "full fine-tuning" || echo "LoRA r 16 on q_proj,v_proj"), Open MPI btl ${BTL:-self,tcp}, $(basename "$MODEL"), B $B x T $T x $K micro-batches a step, $ROUNDS rounds x $((STEPS - 2)) timed steps; checkpoints equal bit for bit"
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p') model $(lscpu | sed -n 's/^Model: *//p')), $(nproc) cores"

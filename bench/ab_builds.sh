#!/usr/bin/env bash
# Speed of one build against another (a change against its parent), measured in interleaved rounds: each round
# runs every row with build A then build B back to back, and the table gives the median over rounds of the per-round
# ratio B/A (these hosts drift up to 1.5x within minutes; a ratio of neighbours does not). Rows: training steps
# (bench_train: ms/step of gpt2 and llama shapes), inference (bench_infer: pp512 and tg128 of SmolLM2 files) and the
# serving engine's decode step of many sequences (bench_batch_step, rows x cached positions, f32 / f16 cache; skipped
# when a build lacks it), and whole training steps of K micro-batches (`lmforge train --grad-accum K` on the demo
# shard, tok/s of the median of steps 3-6: the gradient accumulation's cost; group "accum"), and LoRA fine-tuning
# steps on supervised chat data (`lmforge finetune` on the Devil's Dictionary set of `make demo-finetune`, SmolLM2
# Q8_0, ms/step of the median of steps 2-6, the ratio A/B so that above 1 is faster; group "sft").
#
# usage: bench/ab_builds.sh BUILD_A BUILD_B [ROUNDS=5]
#   e.g. git worktree add /tmp/base HEAD~1 && cmake -S /tmp/base -B /tmp/base/build -DCMAKE_BUILD_TYPE=Release &&
#        cmake --build /tmp/base/build -j && bench/ab_builds.sh /tmp/base/build build
# env:   MODELS_DIR=build/models (the SmolLM2 files of bench/infer_bench.sh)
#        ONLY="train infer step" (which groups of rows to run; "accum" is opt-in)
#        TRAIN_DATA=out/demo/data/train.bin (the accum rows' tokens: make demo writes it)
#        SFT_DATA=out/demo-finetune/data/train.jsonl (the sft rows' conversations: scripts/devil-sft.py DIR writes it)
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1 B=$2 ROUNDS=${3:-5}
MODELS_DIR=${MODELS_DIR:-build/models}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<< "$2"; }

TRAIN_ROWS=("gpt2 12 768 12 12 3072 50257 4 64 2 4" "gpt2 6 384 6 6 1536 8192 8 256 2 4"
            "llama 6 384 6 2 1024 8192 8 256 2 4")
INFER_ROWS=("Q4_1 1" "Q4_1 2" "Q8_0 2" "F32 2")
STEP_ROWS=("Q8_0 16 200 f32" "Q8_0 16 200 f16" "Q8_0 4 300 f32" "Q8_0 1 1500 f32" "Q4_1 16 200 f32")
ACCUM_ROWS=("1 bf16" "2 bf16" "4 bf16" "8 bf16" "4 fp32")
SFT_ROWS=("8 256" "4 128")
TRAIN_DATA=${TRAIN_DATA:-out/demo/data/train.bin}
SFT_DATA=${SFT_DATA:-out/demo-finetune/data/train.jsonl}
ONLY=${ONLY:-"train infer step"}
# tok/s of a gpt2 L6 C384 model (B4 T256, 2 threads) over steps 3-6 of `lmforge train` with K micro-batches a step
accum_tok_s() {
  local out; out=$(mktemp -d)
  "$1/lmforge" train --arch gpt2 --n-layer 6 --n-embd 384 --n-head 6 --n-kv-head 6 --ffn-dim 1536 --vocab-size 8192 \
    --batch-size 4 --seq-len 256 --grad-accum "$2" --precision "$3" --max-steps 6 --warmup-steps 1 --eval-every 0 \
    --sample-tokens 0 --checkpoint-every 0 --threads 2 --train-data "$TRAIN_DATA" --out-dir "$out" > /dev/null 2>&1
  grep -o '"tok_per_s":[0-9.]*' "$out/metrics.jsonl" | cut -d: -f2 | tail -4 | sort -g | awk '{v[NR]=$1} END{print (v[2]+v[3])/2}'
  rm -rf "$out"
}
# ms/step of a LoRA fine-tune of SmolLM2 Q8_0 at B x T on SFT_DATA (2 threads), the median of steps 2-6
sft_ms() {
  local out; out=$(mktemp -d)
  "$1/lmforge" finetune -m "$MODELS_DIR/SmolLM2-135M-Instruct.Q8_0.gguf" --data "$SFT_DATA" --batch-size "$2" \
    --seq-len "$3" --max-steps 6 --eval-every 0 --threads 2 --out-dir "$out" > /dev/null 2>&1
  grep -o '"ms":[0-9.]*' "$out/metrics.jsonl" | cut -d: -f2 | tail -5 | sort -g | sed -n 3p
  rm -rf "$out"
}
has() { [[ " $ONLY " == *" $1 "* ]]; }
has step && { [ -x "$A/bench_batch_step" ] && [ -x "$B/bench_batch_step" ] || ONLY=${ONLY/step/}; }
declare -A ratios
for ((r = 1; r <= ROUNDS; r++)); do
  has train && for row in "${TRAIN_ROWS[@]}"; do
    a=$("$A/bench_train" $row) b=$("$B/bench_train" $row)
    key="train $(cut -d' ' -f1-3 <<< "$row") B$(cut -d' ' -f8 <<< "$row") T$(cut -d' ' -f9 <<< "$row") t$(cut -d' ' -f10 <<< "$row")"
    ratios[$key]+=" $(awk -v a="$(field tok_per_s "$a")" -v b="$(field tok_per_s "$b")" 'BEGIN{print b/a}')"
  done
  has infer && for row in "${INFER_ROWS[@]}"; do
    set -- $row
    f="$MODELS_DIR/SmolLM2-135M-Instruct.$1.gguf"
    a=$("$A/bench_infer" "$f" "$2" 512 128 2) b=$("$B/bench_infer" "$f" "$2" 512 128 2)
    ratios["pp512 $1 t$2"]+=" $(awk -v a="$(field pp_tok_s "$a")" -v b="$(field pp_tok_s "$b")" 'BEGIN{print b/a}')"
    ratios["tg128 $1 t$2"]+=" $(awk -v a="$(field tg_tok_s "$a")" -v b="$(field tg_tok_s "$b")" 'BEGIN{print b/a}')"
  done
  has step && for row in "${STEP_ROWS[@]}"; do
    set -- $row
    f="$MODELS_DIR/SmolLM2-135M-Instruct.$1.gguf"
    a=$("$A/bench_batch_step" "$f" 2 "$2" "$3" 40 "$4") b=$("$B/bench_batch_step" "$f" 2 "$2" "$3" 40 "$4")
    ratios["step $1 rows $2 depth $3 $4 t2 (tok/s)"]+=" $(awk -v a="$(field tok_s "$a")" -v b="$(field tok_s "$b")" 'BEGIN{print b/a}')"
  done
  has accum && for row in "${ACCUM_ROWS[@]}"; do
    set -- $row
    a=$(accum_tok_s "$A" "$1" "$2") b=$(accum_tok_s "$B" "$1" "$2")
    ratios["train steps gpt2 6 384 B4 T256 t2, $1 micro-batches, $2"]+=" $(awk -v a="$a" -v b="$b" 'BEGIN{print b/a}')"
  done
  has sft && for row in "${SFT_ROWS[@]}"; do
    set -- $row
    a=$(sft_ms "$A" "$1" "$2") b=$(sft_ms "$B" "$1" "$2")
    ratios["finetune LoRA SmolLM2 Q8_0 chat B$1 T$2 t2 (ms/step A/B)"]+=" $(awk -v a="$a" -v b="$b" 'BEGIN{print a/b}')"
  done
  echo "round $r of $ROUNDS done" >&2
done
echo "| row | B/A per round | median B/A |"
echo "|---|---|---|"
for key in "${!ratios[@]}"; do
  med=$(tr ' ' '\n' <<< "${ratios[$key]}" | sed '/^$/d' | sort -g | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
  echo "| $key |$(printf ' %.3f' ${ratios[$key]}) | $(printf '%.3f' "$med") |"
done | sort
echo
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p'), model $(lscpu | sed -n 's/^Model: *//p')), $(nproc) cores"

#!/usr/bin/env bash
# The demo fine-tune (make demo-finetune) against Hugging Face TRL + PEFT on the same data, weights,
# hyperparameters, steps, data order and loss masks (issue 12: final validation loss within 2% of lmforge's).
# Outside CI: it needs torch, transformers, peft and trl (+ datasets), and takes ~10 minutes on 2 idle cores
# (estimated from the LoRA step times in docs/benchmarks.md; it took 70 on the loaded, shared host recorded there).
#
#  1. data: scripts/devil-sft.py, exactly as make demo-finetune makes it (Debian dict-devil, 90/10 by entry);
#  2. base: the F32 GGUF for lmforge (the demo itself uses Q4_1) and its `lmforge export` HF folder for PEFT;
#  3. lmforge finetune with the demo's flags (B 4, T 128, lr 1e-3, warmup 5, FT_STEPS steps, eval every 40;
#     defaults: min lr 2e-5, weight decay 0, grad clip 1, LoRA r 16 alpha 32 dropout 0.1 on q_proj,v_proj);
#  4. bench/finetune_vs_trl.py: the same run in TRL's SFTTrainer + PEFT LoraConfig, then both adapters through one
#     evaluator; prints the table (see the .py for what is held equal and how).
#
# usage: bench/finetune_vs_trl.sh
# env:   BUILD=build  MODELS=$BUILD/models  PYTHON=/work/venv-peft/bin/python if it exists, else python3
#        WORK=/tmp/lmforge-finetune-vs-trl  FT_STEPS=120 (the Makefile's)  THREADS=2 (lmforge)  TRL_THREADS=$THREADS
#        (on a loaded host 1 is far faster for PyTorch: 13 s/step against 90 at 2)  TORCH_SEEDS=0 (comma list: one
#        TRL run each)  DICT=/usr/share/dictd/devil.dict.dz
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MODELS=${MODELS:-$BUILD/models}
if [ -z "${PYTHON:-}" ]; then
  if [ -x /work/venv-peft/bin/python ]; then PYTHON=/work/venv-peft/bin/python; else PYTHON=python3; fi
fi
WORK=${WORK:-/tmp/lmforge-finetune-vs-trl}
FT_STEPS=${FT_STEPS:-120}
THREADS=${THREADS:-2}
TRL_THREADS=${TRL_THREADS:-$THREADS}
TORCH_SEEDS=${TORCH_SEEDS:-0}
DICT=${DICT:-/usr/share/dictd/devil.dict.dz}
F32=$MODELS/SmolLM2-135M-Instruct.F32.gguf
[ -f "$F32" ] || { echo "missing $F32 (make models, then lmforge quantize --type f32)" >&2; exit 2; }
[ -f "$DICT" ] || { echo "missing $DICT (apt-get install dict-devil)" >&2; exit 2; }
"$PYTHON" -c "import torch, transformers, peft, trl, datasets" ||
  { echo "$PYTHON lacks torch / transformers / peft / trl / datasets" >&2; exit 2; }
cmake --build "$BUILD" -j2 --target lmforge > /dev/null
mkdir -p "$WORK"

python3 scripts/devil-sft.py "$WORK/data" --dict "$DICT" >&2
[ -f "$WORK/hf/model.safetensors" ] || "$BUILD/lmforge" export "$F32" --to safetensors -o "$WORK/hf" >&2

rm -rf "$WORK/lmforge"
echo "lmforge finetune: $FT_STEPS steps ..." >&2
start=$(date +%s)
"$BUILD/lmforge" finetune -m "$F32" --data "$WORK/data/train.jsonl" --val-data "$WORK/data/val.jsonl" \
  --out-dir "$WORK/lmforge" --batch-size 4 --seq-len 128 --max-steps "$FT_STEPS" --eval-every 40 --lr 1e-3 \
  --warmup-steps 5 --threads "$THREADS" 2> "$WORK/lmforge.log" || { cat "$WORK/lmforge.log" >&2; exit 1; }
echo "lmforge finetune: $(( $(date +%s) - start )) s" >&2

echo "TRL SFTTrainer + PEFT: $FT_STEPS steps per torch seed ($TORCH_SEEDS) ..." >&2
rc=0
OMP_NUM_THREADS=$TRL_THREADS "$PYTHON" bench/finetune_vs_trl.py --hf "$WORK/hf" --data "$WORK/data" --lmforge-run "$WORK/lmforge" \
  --lmforge "$BUILD/lmforge" --gguf "$F32" --lmforge-log "$WORK/lmforge.log" --out "$WORK/trl" \
  --steps "$FT_STEPS" --batch 4 --seq 128 --lr 1e-3 --min-lr 2e-5 --warmup 5 --seed 1337 \
  --threads "$TRL_THREADS" --torch-seeds "$TORCH_SEEDS" || rc=$?
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
FAM=$(lscpu | sed -n 's/^CPU family: *//p' | head -1)
MOD=$(lscpu | sed -n 's/^Model: *//p' | head -1)
echo "CPU: $CPU (family $FAM model $MOD), $(nproc) cores; threads: lmforge $THREADS, TRL $TRL_THREADS;" \
     "lmforge $(git rev-parse --short HEAD)."
exit $rc

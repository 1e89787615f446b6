#!/usr/bin/env bash
# LoRA fine-tuning step speed: `lmforge finetune` (GGUF base, F32 and Q8_0) against Hugging Face PEFT + PyTorch
# (F32 base) on SmolLM2-135M-Instruct, in one run: batch 4 x 512 tokens of {"text"} examples (every position in the
# loss), LoRA r=16 alpha=32 dropout=0.1 on q_proj,v_proj, AdamW, threads 1 and 2. Prints a markdown table: ms/step
# (median; a whole step, optimizer included), tokens/s, peak RSS of the process, lmforge's memory bound (base file +
# adapters + AdamW + activations + 64 MiB, from its log), lmforge/PEFT tokens/s ratio.
#
# Then full fine-tuning (every weight trains; FULL=0 skips it): `lmforge finetune --full` against plain PyTorch, the
# same batches, AdamW, clipping.
#
# Each lmforge row runs once per head loss in LOSSES (finetune --loss: fused, over vocabulary slabs; logits, kept
# whole), so the table shows what the B x T x V logits cost in memory and time.
#
# usage: bench/finetune_bench.sh [THREADS...]          (default: 1 2)
# env:   B=4 T=512 (the batch; examples are max(4000, 8 T) characters, so every row is full)  LOSSES="fused logits"
#        BUILD=build  MODELS=$BUILD/models  PYTHON=/work/venv-peft/bin/python if it exists, else python3
#        (with torch, transformers, peft)  WORK=/tmp/lmforge-finetune-bench  STEPS=6 (lmforge: median of 2..STEPS;
#        PEFT: 1 warm-up + STEPS-1 timed)  F32=... Q8=...: another model's F32 and Q8_0 GGUFs (SmolLM2's by default;
#        the PEFT side runs the F32 one's Hugging Face export)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MODELS=${MODELS:-$BUILD/models}
if [ -z "${PYTHON:-}" ]; then
  if [ -x /work/venv-peft/bin/python ]; then PYTHON=/work/venv-peft/bin/python; else PYTHON=python3; fi
fi
WORK=${WORK:-/tmp/lmforge-finetune-bench}
STEPS=${STEPS:-6}
THREADS=("$@")
[ ${#THREADS[@]} -gt 0 ] || THREADS=(1 2)
B=${B:-4} T=${T:-512} R=16 ALPHA=32 DROP=0.1
read -r -a LOSSES <<< "${LOSSES:-fused logits}"
CHARS=$((T * 8 > 4000 ? T * 8 : 4000))
F32=${F32:-$MODELS/SmolLM2-135M-Instruct.F32.gguf}
Q8=${Q8:-$MODELS/SmolLM2-135M-Instruct.Q8_0.gguf}
for f in "$F32" "$Q8"; do [ -f "$f" ] || { echo "missing $f" >&2; exit 2; }; done
"$PYTHON" -c "import torch, transformers, peft" || { echo "$PYTHON lacks torch / transformers / peft" >&2; exit 2; }
cmake --build "$BUILD" -j"$(nproc)" --target lmforge > /dev/null
mkdir -p "$WORK"

# The PEFT side's Hugging Face folder, written by lmforge from the same F32 GGUF.
[ -f "$WORK/hf/model.safetensors" ] || "$BUILD/lmforge" export "$F32" --to safetensors -o "$WORK/hf" > /dev/null
# Data: 48 chunks of ~CHARS characters (> T tokens each) of the King James Bible (Debian bible-kjv), else of
# this repository's docs.
DATA=$WORK/data.jsonl
[ "$CHARS" = 4000 ] || DATA=$WORK/data-$CHARS.jsonl
if [ ! -s "$DATA" ]; then
  if command -v bible > /dev/null; then bible gen1:1-rev22:21 > "$WORK/text.txt"; else cat docs/*.md > "$WORK/text.txt"; fi
  "$PYTHON" - "$WORK/text.txt" "$DATA" "$CHARS" << 'EOF'
import json, sys
words = open(sys.argv[1], encoding="utf-8", errors="replace").read().split()
out, cur = [], []
for w in words:
    cur.append(w)
    if sum(len(x) + 1 for x in cur) >= int(sys.argv[3]):
        out.append(" ".join(cur)); cur = []
    if len(out) == 48:
        break
with open(sys.argv[2], "w") as f:
    for t in out:
        f.write(json.dumps({"text": t}) + "\n")
EOF
fi

field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<< "$2"; }
lmforge_row() { # model threads [finetune flags...] -> "ms tok_s rss_mib bound_mib"
  local dir m=$1 th=$2
  shift 2
  dir=$WORK/run-$(basename "$m" .gguf)-t$th
  rm -rf "$dir"
  /usr/bin/time -f %M -o "$WORK/rss" "$BUILD/lmforge" finetune -m "$m" --data "$DATA" --out-dir "$dir" \
    --batch-size $B --seq-len $T --max-steps "$STEPS" --eval-every 0 --val-fraction 0 --threads "$th" "$@" \
    > "$WORK/log" 2>&1 ||
    { cat "$WORK/log" >&2; exit 1; }
  local ms
  ms=$(sed -n 's/.*"step":\([0-9]*\),.*"ms":\([0-9.]*\).*/\1 \2/p' "$dir/metrics.jsonl" |
       awk '$1 >= 2 {print $2}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$ms $(awk -v m="$ms" -v n=$((B * T)) 'BEGIN{printf "%.0f", n*1000/m}') $(( $(cat "$WORK/rss") / 1024 ))" \
    "$(sed -n 's/.*bound \([0-9]*\) MiB.*/\1/p' "$WORK/log")"
}

CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "| impl | base | loss | threads | ms/step | tokens/s | peak RSS MiB | RSS bound MiB | lmforge/PEFT tokens/s |"
echo "|---|---|---|---|---|---|---|---|---|"
for th in "${THREADS[@]}"; do
  pt=$("$PYTHON" bench/peft_finetune.py "$WORK/hf" "$DATA" "$th" $B $T $((STEPS - 1)) $R $ALPHA $DROP)
  pms=$(field ms_per_step "$pt") ptps=$(field tok_per_s "$pt") prss=$(field peak_rss_mib "$pt")
  vers="torch $(field torch "$pt"), transformers $(field transformers "$pt"), peft $(field peft "$pt"), attn $(field attn "$pt")"
  for base in F32 Q8_0; do
    m=$F32; [ $base = Q8_0 ] && m=$Q8
    for loss in "${LOSSES[@]}"; do
      read -r ms tps rss bound <<< "$(lmforge_row "$m" "$th" --lora-r $R --lora-alpha $ALPHA --lora-dropout $DROP \
                                      --lora-targets q_proj,v_proj --loss "$loss")"
      echo "| lmforge | $base | $loss | $th | $ms | $tps | $rss | $bound |" \
           "$(awk -v a="$tps" -v b="$ptps" 'BEGIN{printf "%.2fx", a/b}') |"
    done
  done
  echo "| PEFT + PyTorch | F32 | logits | $th | $pms | ${ptps%.*} | $prss | | 1.00x |"
done
echo
echo "CPU: $CPU ($(nproc) cores). B=$B T=$T, LoRA r=$R alpha=$ALPHA dropout=$DROP on q_proj,v_proj; $vers;"
echo "lmforge $(git rev-parse --short HEAD). lmforge: median of steps 2..$STEPS from metrics.jsonl, peak RSS by"
echo "/usr/bin/time; PEFT: 1 warm-up + $((STEPS - 1)) timed steps, median, ru_maxrss. RSS bound: the fine-tuning"
echo "issue's base file + adapters + AdamW + activations + 64 MiB, as lmforge finetune reports it."

# Full fine-tuning (every weight, fp32, AdamW; FULL=0 skips): lmforge finetune --full against plain PyTorch
if [ "${FULL:-1}" != 0 ]; then
  echo
  echo "| full fine-tuning | loss | threads | ms/step | tokens/s | peak RSS MiB | RSS bound MiB | lmforge/PyTorch tokens/s |"
  echo "|---|---|---|---|---|---|---|---|"
  for th in "${THREADS[@]}"; do
    pt=$("$PYTHON" bench/peft_finetune.py "$WORK/hf" "$DATA" "$th" $B $T $((STEPS - 1)) 0)
    pms=$(field ms_per_step "$pt") ptps=$(field tok_per_s "$pt") prss=$(field peak_rss_mib "$pt")
    for loss in "${LOSSES[@]}"; do
      read -r ms tps rss bound <<< "$(lmforge_row "$F32" "$th" --full --loss "$loss")"
      echo "| lmforge (F32) | $loss | $th | $ms | $tps | $rss | $bound |" \
           "$(awk -v a="$tps" -v b="$ptps" 'BEGIN{printf "%.2fx", a/b}') |"
    done
    echo "| PyTorch | logits | $th | $pms | ${ptps%.*} | $prss | | 1.00x |"
  done
fi

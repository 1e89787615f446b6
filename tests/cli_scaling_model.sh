#!/usr/bin/env bash
# bench/scaling_model.py (docs/distributed.md "Scaling model"):
#  1. its formulas give the closed-form values (ring all-reduce, ZeRO-1, 1F1B bubble, GPT-2 124M's 124,439,808
#     parameters, a DP2 and a PP4 step on trivial models): --selftest;
#  2. its parameter count is lmforge's for the same shape (the FLOPs and the gradient bytes rest on it);
#  3. the default run prints the calibration and a table for each model and link with every rank count;
#  4. bad flags are refused with a message naming the flag.
# Skips (exit 77) only without python3. Usage: cli_scaling_model.sh path/to/lmforge
set -uo pipefail
LMF=$1
here=$(cd "$(dirname "$0")" && pwd)
model=$here/../bench/scaling_model.py
command -v python3 > /dev/null || { echo "SKIP: no python3"; exit 77; }
dir=$(mktemp -d /tmp/lmf_scaling_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

python3 "$model" --selftest > "$dir/self.txt" 2>&1 || { cat "$dir/self.txt"; fail "selftest"; }
grep -q "selftest ok" "$dir/self.txt" || fail "selftest did not finish"

# 2. lmforge's own count for a small gpt2 (bytes tokenizer: vocabulary 257)
head -c 20000 "$here/../README.md" > "$dir/text.txt"
"$LMF" data shard --out "$dir/data" --block 4096 "$dir/text.txt" > /dev/null 2>&1 || fail "data shard"
"$LMF" train --train-data "$dir/data/train.bin" --n-layer 2 --n-embd 64 --n-head 4 --n-kv-head 4 --ffn-dim 96 \
  --batch-size 1 --seq-len 32 --max-steps 1 --warmup-steps 0 --eval-every 0 --sample-tokens 0 --checkpoint-every 0 \
  --threads 1 --out-dir "$dir/run" > "$dir/train.txt" 2>&1 || { cat "$dir/train.txt"; fail "train"; }
want=$(sed -n 's/.*gpt2, \([0-9]*\) parameters.*/\1/p' "$dir/train.txt" | head -1)
[ -n "$want" ] || { cat "$dir/train.txt"; fail "lmforge train printed no parameter count"; }
got=$(python3 "$model" --model custom --shape 2,64,4,257,32,96 --ranks 2 --bw-gbps 25 --no-calibration |
      sed -n 's/^## custom (\([0-9,]*\) parameters.*/\1/p' | tr -d ,)
[ "$got" = "$want" ] || fail "scaling model counts $got parameters, lmforge $want"

# 3. the default tables
python3 "$model" > "$dir/out.md" 2>&1 || { cat "$dir/out.md"; fail "default run"; }
grep -q "^## Calibration" "$dir/out.md" || fail "no calibration section"
calib="^| accum [0-9]* .* | [0-9.]* ms, [0-9.]* GB/s | [0-9]* ms (compute .*), eff [0-9]*% | .*, eff [0-9]*% |$"
[ "$(grep -c "$calib" "$dir/out.md")" = 4 ] ||
  fail "not 4 calibration rows (2 runs x 2 paths)"
for m in "GPT-2 124M (124,439,808 parameters" "GPT-2 1.3B"; do
  for l in "25 Gb/s" "100 Gb/s"; do
    grep -q "^## $m.*, $l," "$dir/out.md" || fail "no table for $m at $l"
  done
done
for n in 8 16 64 256 1024; do
  [ "$(grep -c "^| $n best grid | [0-9]*x[0-9]*x[0-9]* | .* | [0-9]*% | " "$dir/out.md")" = 4 ] ||
    fail "not 4 best-grid rows with an efficiency for $n ranks"
done
grep -q "^| GPT-2 1.3B | 100 Gb/s | [0-9.]*% |" "$dir/out.md" || fail "no weak-scaling row"

# 4. refusals
for bad in "--overlap 1.5" "--ranks 0" "--flops -3" "--model custom" "--model custom --shape 2,64,3,257,32"; do
  # shellcheck disable=SC2086
  python3 "$model" $bad > "$dir/bad.txt" 2>&1 && fail "accepted $bad"
  grep -q "error: --" "$dir/bad.txt" || { cat "$dir/bad.txt"; fail "no message naming the flag for $bad"; }
done
echo "cli_scaling_model: ok"

#!/usr/bin/env bash
# bench/scaling_model.py (docs/distributed.md "Scaling model"):
#  1. its formulas give the closed-form values (ring all-reduce, ZeRO-1, 1F1B bubble, GPT-2 124M's 124,439,808
#     parameters, a DP2 and a PP4 step on trivial models): --selftest;
#  2. its parameter count is lmforge's for the same shape (the FLOPs and the gradient bytes rest on it);
#  3. the default run prints the calibration and a table for each model and link with every rank count;
#  4. the measured grids (DP2, TP2, PP2 on the bench shape, TP2 with and without the vocabulary-parallel head on a
#     V=50257 shape) beside the model's predictions, each within 25% of the measured step (--calibration-only);
#  5. --as-built (whole buffers on every rank): GPT-2 1.3B fits no grid in 12 GiB, while the default layout fits;
#  6. bad flags are refused with a message naming the flag.
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

# 4. the grids' calibration: 2 one-rank rows (they set the FLOP rate) and 5 grids, each with its measured and
# predicted step; the prediction within 25% of the measurement (it was 0.82-0.97 when calibrated: a change to the
# FLOP count, the collectives or the 1F1B formula that moves it further has to be explained in the docs)
grep -q "^## Calibration: the measured grids" "$dir/out.md" || fail "no grid calibration in the default run"
python3 "$model" --calibration-only > "$dir/cal.md" 2>&1 || { cat "$dir/cal.md"; fail "--calibration-only"; }
grep -q "^## GPT-2" "$dir/cal.md" && fail "--calibration-only printed the prediction tables"
[ "$(grep -c "^| bench .* | 1 rank x 1 thread | [0-9]*, 100% | [0-9]*: sets the rate" "$dir/cal.md")" = 2 ] ||
  fail "not 2 one-rank rows in the grid calibration"
grid="^| bench [^|]* | \(DP2\|TP2\|PP2\)[^|]* | [0-9]* ([^|]*), [0-9]*% | "
grid+="[0-9]* ([0-9]* + [0-9]*), [0-9]*% | [0-9.]* | "
[ "$(grep -c "$grid" "$dir/cal.md")" = 5 ] || { cat "$dir/cal.md"; fail "not 5 grid rows (DP2, TP2, PP2, TP2 x 2)"; }
for g in "| DP2 |" "| TP2 |" "| PP2 |" "| TP2, vocabulary-parallel head |" "| TP2, whole head on every rank |"; do
  grep -qF "$g" "$dir/cal.md" || fail "no calibration row $g"
done
grep -F "| TP2 |" "$dir/cal.md" | grep -q "loss all-reduces [0-9.]*" || fail "TP2's prediction has no loss exchange"
grep -F "| PP2 |" "$dir/cal.md" | grep -q "fill and drain [0-9.]*" || fail "PP2's prediction has no fill and drain"
grep "$grid" "$dir/cal.md" | awk -F'|' '{ r = $6 + 0; if (r < 0.75 || r > 1.25) { print "ratio " r ": " $0; bad = 1 } }
  END { exit bad }' || fail "a grid's predicted step is more than 25% off the measured one"

# 5. lmforge's layout today against Megatron's
python3 "$model" --model gpt2-1.3b --bw-gbps 25 --ranks 8 64 --no-calibration --as-built > "$dir/built.md" 2>&1 ||
  { cat "$dir/built.md"; fail "--as-built"; }
[ "$(grep -c "^| [0-9]* best grid | - |" "$dir/built.md")" = 2 ] || { cat "$dir/built.md"; fail "1.3B fits as built"; }
python3 "$model" --model gpt2-1.3b --bw-gbps 25 --ranks 8 64 --no-calibration > "$dir/megatron.md" 2>&1 ||
  fail "1.3B, default layout"
[ "$(grep -c "^| [0-9]* best grid | [0-9]*x[0-9]*x[0-9]* | " "$dir/megatron.md")" = 2 ] ||
  fail "1.3B fits no grid in Megatron's layout"

# 6. refusals
for bad in "--overlap 1.5" "--ranks 0" "--flops -3" "--model custom" "--model custom --shape 2,64,3,257,32" \
           "--calibration-only --no-calibration"; do
  # shellcheck disable=SC2086
  python3 "$model" $bad > "$dir/bad.txt" 2>&1 && fail "accepted $bad"
  grep -q "error: --" "$dir/bad.txt" || { cat "$dir/bad.txt"; fail "no message naming the flag for $bad"; }
done
echo "cli_scaling_model: ok"

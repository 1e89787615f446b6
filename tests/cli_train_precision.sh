#!/usr/bin/env bash
# `lmforge train --precision` through the CLI: the choice is printed at the start (auto's resolved, with the bf16
# rate measured on this CPU), stored in the run's config, kept by --resume without the flag and refused against it;
# a bad value is named. (Bit-exact bf16 resume and the numerics: test_train_bf16, test_bf16_reference.)
# Usage: cli_train_precision.sh path/to/lmforge
set -uo pipefail
LMF=$1
dir=$(mktemp -d /tmp/lmf_prec_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cat "$(dirname "$0")"/../src/model/*.c > "$dir/text.txt"
"$LMF" data shard --out "$dir/data" --val-fraction 0.1 --block 4096 "$dir/text.txt" 2> /dev/null || fail "data shard"
common=(--train-data "$dir/data/train.bin" --n-layer 1 --n-embd 32 --n-head 2 --n-kv-head 2 --ffn-dim 64
        --batch-size 2 --seq-len 16 --warmup-steps 1 --checkpoint-every 2 --sample-tokens 0)

"$LMF" train "${common[@]}" --max-steps 2 --out-dir "$dir/a" 2> "$dir/a.log" || { cat "$dir/a.log"; fail "auto"; }
grep -Eq "precision (bf16|fp32) \(auto\): bf16 products run (at [0-9.]+x the fp32 rate|at the fp32 rate|the scalar)" \
    "$dir/a.log" || fail "auto not reported"
"$LMF" train "${common[@]}" --max-steps 2 --precision bf16 --out-dir "$dir/b" 2> "$dir/b.log" || { cat "$dir/b.log"; fail "bf16"; }
grep -q "precision bf16:" "$dir/b.log" || fail "bf16 not reported"
grep -qx 'precision = "bf16"' "$dir/b/train.conf" || fail "train.conf lacks the precision"
"$LMF" train --resume "$dir/b" --max-steps 4 2> "$dir/r.log" || { cat "$dir/r.log"; fail "resume"; }
grep -q "precision bf16 (the checkpoint's)" "$dir/r.log" || fail "resume did not keep bf16"
"$LMF" train --resume "$dir/b" --max-steps 6 --precision fp32 2> "$dir/m.log" && fail "fp32 resume of a bf16 run"
grep -q "precision: the checkpoint was trained in bf16 but this run asks for fp32" "$dir/m.log" || { cat "$dir/m.log"; fail "mismatch message"; }
"$LMF" train "${common[@]}" --max-steps 2 --precision half --out-dir "$dir/x" 2> "$dir/x.log" && fail "--precision half"
grep -q "precision: expected auto, bf16 or fp32, got 'half'" "$dir/x.log" || { cat "$dir/x.log"; fail "bad value message"; }
echo "cli_train_precision: OK"

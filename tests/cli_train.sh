#!/usr/bin/env bash
# End-to-end through the CLI: shard a real text, train, interrupt with SIGINT, resume, and reject bad input
# with messages that name the problem. Usage: cli_train.sh path/to/lmforge
set -uo pipefail
LMF=$1
dir=$(mktemp -d /tmp/lmf_cli_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# Real text: the King James Bible when installed (bible-kjv), else this repository's sources.
if command -v bible >/dev/null; then bible gen1:1-gen50:26 > "$dir/text.txt"; else cat "$(dirname "$0")"/../src/*/*.c > "$dir/text.txt"; fi
"$LMF" data shard --out "$dir/data" --val-fraction 0.1 --block 4096 "$dir/text.txt" || fail "data shard"
[ -s "$dir/data/train.bin" ] && [ -s "$dir/data/val.bin" ] || fail "shards missing"

common=(--train-data "$dir/data/train.bin" --val-data "$dir/data/val.bin" --n-layer 2 --n-embd 64 --n-head 4
        --n-kv-head 4 --ffn-dim 128 --batch-size 4 --seq-len 32 --warmup-steps 2 --eval-every 5 --eval-batches 2
        --checkpoint-every 5 --sample-tokens 20)

# 1. a short run completes: checkpoint, metrics, sample, falling loss
"$LMF" train "${common[@]}" --max-steps 12 --out-dir "$dir/run" > "$dir/out.txt" 2> "$dir/err.txt" || { cat "$dir/err.txt"; fail "train"; }
[ -f "$dir/run/ckpt-00000012.lmfc" ] || fail "final checkpoint missing"
[ "$(grep -c '"loss"' "$dir/run/metrics.jsonl")" = 12 ] || fail "metrics should have 12 step lines"
grep -q '"val_loss"' "$dir/run/metrics.jsonl" || fail "no validation loss in metrics"
grep -q "final val loss" "$dir/err.txt" || fail "no final validation line"
[ -s "$dir/run/sample.txt" ] || fail "no sample"
ls "$dir/run"/*.tmp 2>/dev/null && fail "temporary files left behind"
[ "$(ls "$dir/run"/ckpt-*.lmfc | wc -l)" -le 2 ] || fail "keep_checkpoints=2 not honoured"

# 2. SIGINT writes a checkpoint and exits 130; --resume finishes the run
"$LMF" train "${common[@]}" --max-steps 100000 --checkpoint-every 0 --eval-every 0 --out-dir "$dir/int" 2> "$dir/int.txt" &
pid=$!
for _ in $(seq 100); do grep -q '"loss"' "$dir/int/metrics.jsonl" 2>/dev/null && break; sleep 0.1; done
kill -INT $pid
wait $pid
rc=$?
[ $rc = 130 ] || { cat "$dir/int.txt"; fail "SIGINT exit status $rc, expected 130"; }
grep -q "resume with --resume" "$dir/int.txt" || fail "interrupt message does not say how to resume"
ls "$dir/int"/ckpt-*.lmfc > /dev/null || fail "no checkpoint after SIGINT"
steps=$(grep -c '"loss"' "$dir/int/metrics.jsonl")
"$LMF" train --resume "$dir/int" --max-steps $((steps + 3)) --sample-tokens 0 2> "$dir/res.txt" || { cat "$dir/res.txt"; fail "resume"; }
grep -q "resuming from" "$dir/res.txt" || fail "resume not announced"
[ -f "$dir/int/ckpt-$(printf %08d $((steps + 3))).lmfc" ] || fail "resumed run did not reach step $((steps + 3))"

# 3. bad input: clear errors naming the culprit, non-zero exit, nothing written
expect_error() { # expected-substring command...
  local want=$1; shift
  "$@" > "$dir/e.out" 2> "$dir/e.err" && fail "expected failure: $*"
  grep -q -- "$want" "$dir/e.err" || { cat "$dir/e.err"; fail "error for '$*' lacks '$want'"; }
}
expect_error "unknown option --bogus" "$LMF" train "${common[@]}" --bogus 1
expect_error "n_layer expects an integer" "$LMF" train "${common[@]}" --n-layer x
expect_error "no training shard" "$LMF" train
echo "lr = oops" > "$dir/bad.conf"
expect_error "bad.conf:1" "$LMF" train --config "$dir/bad.conf"
printf '[optimizer]\nlr = "oops"\n' > "$dir/bad.toml"
expect_error "bad.toml:2:1: lr expects a number" "$LMF" train --config "$dir/bad.toml"
printf 'seed = 99\n[optimizer]\nweight_decay = 0.05\n' > "$dir/ok.toml"
"$LMF" train --config "$dir/ok.toml" "${common[@]}" --max-steps 2 --out-dir "$dir/toml" 2> "$dir/toml.txt" \
  || { cat "$dir/toml.txt"; fail "train --config ok.toml"; }
grep -q '^weight_decay = 0.0500000007$' "$dir/toml/train.conf" || fail "TOML config not applied"
grep -q '^seed = 99$' "$dir/toml/train.conf" || fail "TOML config not applied (seed)"
head -c 100 "$dir/data/train.bin" > "$dir/trunc.bin"
expect_error "trunc.bin" "$LMF" train "${common[@]}" --train-data "$dir/trunc.bin" --out-dir "$dir/x"
expect_error "bad magic" "$LMF" train "${common[@]}" --train-data "$dir/text.txt" --out-dir "$dir/x"
ck=$(ls "$dir/run"/ckpt-*.lmfc | tail -1)
printf 'garbage' | dd of="$ck" bs=1 seek=5000 conv=notrunc 2>/dev/null
# a damaged newest checkpoint is set aside and the previous one resumes, saying so
"$LMF" train --resume "$dir/run" --sample-tokens 0 2> "$dir/fb.txt" || { cat "$dir/fb.txt"; fail "resume past a damaged checkpoint"; }
grep -q "skipped damaged checkpoint: .*checksum mismatch" "$dir/fb.txt" || { cat "$dir/fb.txt"; fail "fallback not reported"; }
[ -f "$ck.corrupt" ] && [ -f "$ck" ] || fail "damaged checkpoint not set aside, or the run not finished"
# with no good one left, the error names the file and what to do
for f in "$dir/run"/ckpt-*.lmfc; do printf 'garbage' | dd of="$f" bs=1 seek=5000 conv=notrunc 2>/dev/null; done
expect_error "checksum mismatch" "$LMF" train --resume "$dir/run"
grep -q "remove" "$dir/e.err" || fail "no advice when every checkpoint is damaged"
expect_error "no checkpoint" "$LMF" train --resume "$dir/empty"
expect_error "n_layer" "$LMF" train --resume "$dir/int" --n-layer 3 --max-steps 200000
# through a file: with pipefail, `lmforge --help | grep -q` fails whenever grep exits before the help is written
"$LMF" train --help > "$dir/help.txt" && grep -q -- "--warmup-steps" "$dir/help.txt" || fail "train --help lacks flags"
grep -q -- "--dp N" "$dir/help.txt" || fail "train --help lacks the distributed flags"
"$LMF" --help > "$dir/help.txt" && grep -q "train" "$dir/help.txt" || fail "--help lacks commands"
echo "1 passed, 0 failed"

# 4. a head size apart from n_embd / n_head (--head-dim: 4 heads of 32 on 64, q 128 wide) trains from flags, is
#    kept in the run's config, exported with it (GGUF key_length, HF head_dim), and a resume cannot change it
hd=(--train-data "$dir/data/train.bin" --arch llama --n-layer 2 --n-embd 64 --n-head 4 --n-kv-head 2 --head-dim 32
    --ffn-dim 128 --batch-size 4 --seq-len 32 --warmup-steps 1 --eval-every 0 --checkpoint-every 0 --sample-tokens 5)
"$LMF" train "${hd[@]}" --max-steps 4 --out-dir "$dir/hd" 2> "$dir/hd.txt" || { cat "$dir/hd.txt"; fail "train --head-dim"; }
grep -q '^head_dim = 32$' "$dir/hd/train.conf" || fail "head_dim not in train.conf"
grep -q "H4/2 hs32 F128" "$dir/hd.txt" || fail "the banner does not give the head size"
[ -s "$dir/hd/sample.txt" ] || fail "no sample from the head_dim model"
"$LMF" export "$dir/hd" --to gguf -o "$dir/hd.gguf" 2> "$dir/e.err" || { cat "$dir/e.err"; fail "export head_dim gguf"; }
"$LMF" info "$dir/hd.gguf" > "$dir/hd_info.txt" 2>&1 || { cat "$dir/hd_info.txt"; fail "info head_dim gguf"; }
grep -q "attention.key_length  *32" "$dir/hd_info.txt" || { cat "$dir/hd_info.txt"; fail "GGUF lacks key_length"; }
"$LMF" export "$dir/hd" --to safetensors -o "$dir/hd_hf" 2> "$dir/e.err" || { cat "$dir/e.err"; fail "export head_dim hf"; }
grep -qE '"head_dim":[[:space:]]*32' "$dir/hd_hf/config.json" || fail "HF export lacks head_dim"
"$LMF" info "$dir/hd_hf" > "$dir/hd_info.txt" 2>&1 || { cat "$dir/hd_info.txt"; fail "info head_dim hf"; }
grep -q "head_dim  *32 (q 128 wide)" "$dir/hd_info.txt" || { cat "$dir/hd_info.txt"; fail "info lacks head_dim"; }
expect_error "head size (head_dim) 32 but this run has 16" "$LMF" train --resume "$dir/hd" --head-dim 16 --max-steps 6
expect_error "head_dim: gpt2 heads are n_embd / n_head (16) wide, got 32" "$LMF" train "${hd[@]}" --arch gpt2 \
  --n-kv-head 4 --max-steps 1 --out-dir "$dir/x"

# 5. grad_sum: tree (default: each micro-batch's gradient on its own, added in grad_sum.h's tree) or inline (each
# product adds into the gradients); the two add in other orders, so their weights differ in some bit; an inline run
# resumes bit for bit, keeping its choice from the checkpoint; anything else is refused
gs=("${common[@]}" --grad-accum 4 --max-steps 10 --eval-every 0 --sample-tokens 0)
"$LMF" train "${gs[@]}" --out-dir "$dir/gtree" 2> /dev/null || fail "grad_sum tree"
"$LMF" train "${gs[@]}" --grad-sum inline --out-dir "$dir/ginl" 2> /dev/null || fail "grad_sum inline"
grep -q '^grad_sum = "inline"' "$dir/ginl/train.conf" || fail "train.conf lacks grad_sum = inline"
params() { python3 "$(dirname "$0")/ckpt_params.py" "$@" > /dev/null; } # A B 0: the parameters bit for bit
params "$dir/gtree/ckpt-00000010.lmfc" "$dir/ginl/ckpt-00000010.lmfc" 0 && fail "tree and inline gave the same bits"
mkdir "$dir/ginl2" && cp "$dir/ginl/ckpt-00000005.lmfc" "$dir/ginl/train.conf" "$dir/ginl2/"
"$LMF" train --resume "$dir/ginl2" 2> "$dir/ginl2.txt" || { cat "$dir/ginl2.txt"; fail "grad_sum inline resume"; }
params "$dir/ginl/ckpt-00000010.lmfc" "$dir/ginl2/ckpt-00000010.lmfc" 0 || fail "resumed inline run differs"
expect_error "grad_sum: expected tree or inline, got 'sorted'" "$LMF" train "${gs[@]}" --grad-sum sorted --out-dir "$dir/x"
echo "ok: grad_sum tree and inline"

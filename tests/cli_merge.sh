#!/usr/bin/env bash
# `lmforge export --merge-lora`: PEFT's own adapter over the tiny HF gpt2 fixture (tests/reference/fixtures/lora/
# gpt2_attn) merged into a GGUF and into a Hugging Face folder; greedy generation from each equals greedy generation
# from the base with the adapter applied unmerged (`generate --lora`). Bad adapters are refused with clear messages.
# Usage: cli_merge.sh path/to/lmforge [workdir to keep]
set -uo pipefail
LMF=$1
if [ $# -ge 2 ]; then dir=$2; mkdir -p "$dir"; else dir=$(mktemp -d /tmp/lmf_merge_XXXXXX); trap 'rm -rf "$dir"' EXIT; fi
fail() { echo "FAIL: $*"; exit 1; }
FIX=$(cd "$(dirname "$0")"/reference/fixtures && pwd)
M=$FIX/hf/gpt2 A=$FIX/lora/gpt2_attn
p="hello world"

gen() { "$LMF" generate "$@" -p "$p" -n 16 --temp 0 2> "$dir/err.txt" | od -An -c || { cat "$dir/err.txt"; fail "generate $*"; }; }
want=$(gen -m "$M" --lora "$A")
base=$(gen -m "$M")
[ -n "$want" ] || fail "no text from the base with the adapter"
[ "$want" != "$base" ] || fail "the adapter does not change the greedy continuation: the check would prove nothing"

"$LMF" export "$M" --merge-lora "$A" --to gguf -o "$dir/merged.gguf" 2> "$dir/err.txt" || { cat "$dir/err.txt"; fail "export --merge-lora gguf"; }
grep -q "merged" "$dir/err.txt" || { cat "$dir/err.txt"; fail "export did not report the merge"; }
got=$(gen -m "$dir/merged.gguf")
[ "$got" = "$want" ] || { echo "merged: $got"; echo "--lora: $want"; fail "merged GGUF generates differently from base --lora"; }

"$LMF" export "$M" --merge-lora "$A" --to safetensors -o "$dir/merged_hf" 2> "$dir/err.txt" || { cat "$dir/err.txt"; fail "export --merge-lora safetensors"; }
got=$(gen -m "$dir/merged_hf")
[ "$got" = "$want" ] || fail "merged HF folder generates differently from base --lora"

expect_error() { # expect_error WANT CMD...: CMD fails and its stderr contains WANT
  local want=$1; shift
  "$@" > /dev/null 2> "$dir/e.err" && fail "'$*' succeeded"
  grep -q -- "$want" "$dir/e.err" || { cat "$dir/e.err"; fail "error for '$*' lacks '$want'"; }
}
expect_error "no such adapter" "$LMF" export "$M" --merge-lora "$dir/nothing" --to gguf -o "$dir/x.gguf"
expect_error "adapter_config.json" "$LMF" export "$M" --merge-lora "$dir" --to gguf -o "$dir/x.gguf"
expect_error "needs a value" "$LMF" export "$M" --to gguf -o "$dir/x.gguf" --merge-lora
[ -e "$dir/x.gguf" ] && fail "a failed export left a file"
echo "cli_merge: OK ($(printf '%s' "$want" | tr -s ' ' | head -c 80))"

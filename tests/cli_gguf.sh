#!/usr/bin/env bash
# End-to-end through the CLI on GGUF files: `lmforge info` on the committed tiny GGUF (and on SmolLM2 when
# present), `lmforge tokenize -t model.gguf`, and clear refusals of broken files. Usage: cli_gguf.sh path/to/lmforge
set -uo pipefail
LMF=$1
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TINY="$ROOT/tests/reference/fixtures/tiny_vocab.gguf"
dir=$(mktemp -d /tmp/lmf_cli_gguf_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# 1. info
"$LMF" info "$TINY" > "$dir/info.txt" 2>&1 || { cat "$dir/info.txt"; fail "info on the tiny GGUF"; }
for want in "GGUF v3" "architecture: llama (tiny)" "block_count  *2" "context_length  *64" "model  *gpt2" \
            "vocab size  *264" "bos  *261 \"<|im_start|>\"" "token types  *normal 260 control 2 user-defined 1 unused 1" \
            "general.languages  *array  \[3 x string\] \[\"en\", \"\", \"fr\"\]" "tokenizer.ggml.tokens .*\[264 x string\].*\.\.\.\]" \
            "e.q4_k  *Q4_K  *\[256\]" "f.i32  *I32  *\[1, 1, 1, 2\]" "by type:"; do
  grep -q -- "$want" "$dir/info.txt" || { cat "$dir/info.txt"; fail "info lacks /$want/"; }
done
"$LMF" info --help | grep -q "usage: lmforge info" || fail "info --help"
"$LMF" info 2> "$dir/err.txt"; [ $? = 2 ] || fail "info without a file should exit 2"

# 2. tokenize with the GGUF's vocabulary
[ "$(printf ' the thin' | "$LMF" tokenize -t "$TINY")" = "[258, 256, 104, 259]" ] || fail "tokenize -t tiny.gguf"
[ "$(printf 'x<|endoftext|>' | "$LMF" tokenize -t "$TINY" --allow-special)" = "[120, 260]" ] || fail "GGUF special token"
[ "$(echo '[258, 256, 104, 259]' | "$LMF" tokenize -t "$TINY" --decode)" = " the thin" ] || fail "decode with the GGUF vocabulary"

# 3. broken files: exit 1, the file and the offset named
head -c 1000 "$TINY" > "$dir/cut.gguf"
"$LMF" info "$dir/cut.gguf" 2> "$dir/err.txt"; rc=$?
[ $rc = 1 ] && grep -q "cut.gguf: offset [0-9]*: .*truncated" "$dir/err.txt" || { cat "$dir/err.txt"; fail "truncated GGUF (rc $rc)"; }
echo x | "$LMF" tokenize -t "$dir/cut.gguf" 2> "$dir/err.txt"; rc=$?
[ $rc = 1 ] && grep -q "cut.gguf: offset" "$dir/err.txt" || { cat "$dir/err.txt"; fail "tokenize -t truncated GGUF (rc $rc)"; }
printf 'GGUF\001\000\000\000' > "$dir/v1.gguf"; head -c 40 /dev/zero >> "$dir/v1.gguf"
"$LMF" info "$dir/v1.gguf" 2> "$dir/err.txt"; rc=$?
[ $rc = 1 ] && grep -q "v1.gguf: offset 4: GGUF version 1" "$dir/err.txt" || { cat "$dir/err.txt"; fail "GGUF v1 (rc $rc)"; }

# 4. the real model, when fetched (scripts/fetch-smollm2.sh)
SMOL="${LMF_SMOLLM2_GGUF:-$ROOT/build/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
if [ -f "$SMOL" ]; then
  "$LMF" info "$SMOL" > "$dir/smol.txt" || fail "info on SmolLM2"
  grep -q "134515008 parameters" "$dir/smol.txt" || fail "SmolLM2 parameter count"
  [ "$(printf '<|im_start|>user\nHi<|im_end|>' | "$LMF" tokenize -t "$SMOL" --allow-special)" = "[1, 4093, 198, 26843, 2]" ] \
    || fail "SmolLM2 chat tokens"
else
  echo "note: $SMOL absent, SmolLM2 checks skipped (scripts/fetch-smollm2.sh)"
fi
echo "cli_gguf: all passed"

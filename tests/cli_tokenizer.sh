#!/usr/bin/env bash
# End-to-end through the CLI: tokenize / decode with GPT-2's files, train a BPE and use it (tokenize, data shard),
# and refuse bad input with messages that name the problem. Usage: cli_tokenizer.sh path/to/lmforge
set -uo pipefail
LMF=$1
GPT2="$(cd "$(dirname "$0")" && pwd)/data/gpt2"
dir=$(mktemp -d /tmp/lmf_cli_tok_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# 1. GPT-2 ids, decode, specials
[ "$(printf 'Hello, world!' | "$LMF" tokenize -t "$GPT2")" = "[15496, 11, 995, 0]" ] || fail "GPT-2 ids of 'Hello, world!'"
[ "$(printf 'a<|endoftext|>' | "$LMF" tokenize -t "$GPT2" --allow-special)" = "[64, 50256]" ] || fail "--allow-special"
[ "$(printf 'a<|endoftext|>' | "$LMF" tokenize -t "$GPT2")" = "[64, 50256]" ] || fail "special tokens are matched by default"
[ "$(printf 'a<|endoftext|>' | "$LMF" tokenize -t "$GPT2" --no-special)" != "[64, 50256]" ] || fail "special matched with --no-special"
[ "$(echo '[15496, 11, 995, 0]' | "$LMF" tokenize -t "$GPT2" --decode)" = "Hello, world!" ] || fail "decode"
printf 'Ünïcödé — 数据 🙂\n\t x' > "$dir/u.txt"
"$LMF" tokenize -t "$GPT2" < "$dir/u.txt" | "$LMF" tokenize -t "$GPT2" --decode > "$dir/u2.txt" || fail "round trip"
cmp -s "$dir/u.txt" "$dir/u2.txt" || fail "decode(encode(x)) != x through the CLI"
"$LMF" tokenize -t "$GPT2" --stats < "$dir/u.txt" | grep -q "tokens/byte" || fail "--stats"

# 1b. a SentencePiece vocabulary (GGUF model "llama"): ids of llama.cpp's llama-tokenize, decode drops the space
# put before the text, and any text round-trips
PHI3="$(cd "$(dirname "$0")" && pwd)/data/phi3/vocab.gguf"
[ "$(printf 'Hello world' | "$LMF" tokenize -t "$PHI3")" = "[15043, 3186]" ] || fail "SentencePiece ids of 'Hello world'"
[ "$(printf '<s>Hi<|end|>' | "$LMF" tokenize -t "$PHI3")" = "[1, 6324, 32007]" ] || fail "SentencePiece special tokens"
[ "$(echo '[1, 15043, 3186]' | "$LMF" tokenize -t "$PHI3" --decode --skip-special)" = "Hello world" ] || fail "SentencePiece decode"
"$LMF" tokenize -t "$PHI3" < "$dir/u.txt" | "$LMF" tokenize -t "$PHI3" --decode > "$dir/u3.txt" || fail "SentencePiece round trip"
cmp -s "$dir/u.txt" "$dir/u3.txt" || fail "SentencePiece decode(encode(x)) != x through the CLI"
# written as a Hugging Face tokenizer.json (merges derived from the scores): the same ids
"$LMF" tokenize -t "$PHI3" --save "$dir/phi3.json" || fail "tokenize --save"
grep -q '"byte_fallback":[[:space:]]*true' "$dir/phi3.json" || fail "saved tokenizer.json is not byte_fallback BPE"
[ "$("$LMF" tokenize -t "$PHI3" < "$dir/u.txt")" = "$("$LMF" tokenize -t "$dir/phi3.json" < "$dir/u.txt")" ] || fail "saved tokenizer.json ids"

# 2. train on real text, then use the tokenizer
if command -v bible >/dev/null; then bible gen1:1-gen50:26 > "$dir/text.txt"; else cat "$(dirname "$0")"/../src/*/*.c > "$dir/text.txt"; fi
"$LMF" tokenizer train --vocab-size 1000 --special "<|endoftext|>" -o "$dir/tok.json" "$dir/text.txt" 2> "$dir/train.txt" \
  || { cat "$dir/train.txt"; fail "tokenizer train"; }
grep -q '"type":[[:space:]]*"BPE"' "$dir/tok.json" || fail "tokenizer.json has no BPE model"
"$LMF" tokenize -t "$dir/tok.json" < "$dir/text.txt" | "$LMF" tokenize -t "$dir/tok.json" --decode > "$dir/back.txt" || fail "trained round trip"
cmp -s "$dir/text.txt" "$dir/back.txt" || fail "trained tokenizer does not round-trip"
"$LMF" data shard --out "$dir/shards" --tokenizer "$dir/tok.json" "$dir/text.txt" 2> "$dir/shard.txt" || { cat "$dir/shard.txt"; fail "data shard --tokenizer"; }
grep -q "vocab 1000" "$dir/shard.txt" || fail "shard vocab"
# header: vocab_size at offset 24 (1000 = e8 03), eot 0, tokenizer kind 1 at offset 32
[ "$(od -An -tu4 -j24 -N12 "$dir/shards/train.bin" | tr -s ' ')" = " 1000 0 1" ] || fail "shard header (vocab, eot, kind)"

# 3. bad input
printf '{"model": {"type": "BPE", "vocab": {' > "$dir/broken.json"
echo x | "$LMF" tokenize -t "$dir/broken.json" 2> "$dir/err.txt"; rc=$?
[ $rc = 1 ] && grep -q "broken.json: not valid JSON" "$dir/err.txt" || { cat "$dir/err.txt"; fail "malformed tokenizer.json (rc $rc)"; }
echo '[1, 99999999]' | "$LMF" tokenize -t "$GPT2" --decode 2> "$dir/err.txt"; rc=$?
[ $rc = 2 ] && grep -q "99999999" "$dir/err.txt" || fail "out-of-range id (rc $rc)"
echo '[1, x]' | "$LMF" tokenize -t "$GPT2" --decode 2> "$dir/err.txt"; rc=$?
[ $rc = 2 ] && grep -q "byte 4" "$dir/err.txt" || fail "bad id array (rc $rc)"
echo x | "$LMF" tokenize 2> /dev/null; [ $? = 2 ] || fail "missing -t"
"$LMF" tokenizer train --vocab-size 10 -o "$dir/x.json" "$dir/text.txt" 2> "$dir/err.txt"; rc=$?
[ $rc = 2 ] && grep -q "vocab size 10" "$dir/err.txt" || fail "tiny vocab (rc $rc)"
echo "OK"

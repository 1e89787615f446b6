#!/usr/bin/env bash
# One flag parser for every command (src/cli/opts.c), checked from its own tables: LMF_CLI_LIST_OPTIONS=1 makes a
# command print the table it parses with ("LONG SHORT|- VALUE|-" per flag) instead of running, so the list below
# cannot drift from the code. For every command: an unknown option, leading or trailing, is refused with exactly
# "lmforge <cmd>: unknown option --bogus" (exit 2); every flag that takes a value, given last, "needs a value";
# --help lists every flag of the table (long and short names), and no command accepts a flag its --help omits.
# Also: options after positional inputs (`data shard --out D f.txt --block 256`), and generate refusing the
# chat-only --system / --chat-format it used to accept silently. No model is needed.
# Usage: cli_flags.sh path/to/lmforge
set -uo pipefail
LMF=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
dir=$(mktemp -d /tmp/lmf_cli_flags_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

commands=("generate" "chat" "perplexity" "imatrix" "tokenize" "tokenizer train" "info" "export" "quantize" "serve" "finetune"
          "train" "data shard" "data run" "data clean" "data dedup")
checked=0
for cmd in "${commands[@]}"; do
  read -r -a words <<< "$cmd"
  LMF_CLI_LIST_OPTIONS=1 "$LMF" "${words[@]}" > "$dir/opts.txt" || fail "$cmd: option listing"
  "$LMF" "${words[@]}" --help > "$dir/help.txt" || fail "$cmd --help"
  grep -q "^usage: lmforge $cmd" "$dir/help.txt" || fail "$cmd --help has no usage line"
  # unknown options: alone (so also trailing), before a value, after an accepted flag, and a short one
  flag0=$(awk '$3 == "-" { print $1; exit }' "$dir/opts.txt")
  for args in "--bogus" "--bogus x" "${flag0:---bogus} --bogus" "-Z"; do
    read -r -a a <<< "$args"
    "$LMF" "${words[@]}" "${a[@]}" > /dev/null 2> "$dir/err.txt"; rc=$?
    bad=$(grep -o -- '--bogus\|-Z' <<< "${a[*]}" | head -1)
    [ $rc = 2 ] && grep -qx "lmforge $cmd: unknown option $bad" "$dir/err.txt" \
      || { cat "$dir/err.txt"; fail "$cmd $args: rc $rc, expected 'lmforge $cmd: unknown option $bad'"; }
  done
  [ -s "$dir/opts.txt" ] || [ "$cmd" = info ] || fail "$cmd lists no options"
  while read -r long short value; do
    grep -q -- "$long\b" "$dir/help.txt" || fail "$cmd --help does not list $long"
    [ "$short" = - ] || grep -q -- "$short, $long" "$dir/help.txt" || fail "$cmd --help does not list $short with $long"
    if [ "$value" != - ]; then
      "$LMF" "${words[@]}" "$long" > /dev/null 2> "$dir/err.txt"; rc=$?
      [ $rc = 2 ] && grep -q "^lmforge $cmd: $long needs a value" "$dir/err.txt" \
        || { cat "$dir/err.txt"; fail "$cmd $long (no value): rc $rc"; }
      [ "$short" = - ] || { "$LMF" "${words[@]}" "$short" > /dev/null 2> "$dir/err.txt"; [ $? = 2 ] \
        && grep -q "needs a value" "$dir/err.txt" || fail "$cmd $short (no value)"; }
    fi
    checked=$((checked + 1))
  done < "$dir/opts.txt"
  # every "--flag" the help text shows is in the table (nothing documented but not parsed, or the reverse)
  grep -oP -- ' --[a-z0-9][a-z0-9-]*[a-z0-9](?![-A-Za-z0-9_])' "$dir/help.txt" | sed 's/^ //' | sort -u > "$dir/shown.txt"
  while read -r flag; do
    [ "$flag" = --help ] && continue
    grep -q -- "^$flag " "$dir/opts.txt" || fail "$cmd --help mentions $flag, which it does not accept"
  done < "$dir/shown.txt"
done
[ $checked -gt 150 ] || fail "only $checked flags checked"

# the old silent acceptance: generate has no chat template, so --system and --chat-format are refused
for f in --system --chat-format --messages; do
  "$LMF" generate -m x -p hi "$f" y 2> "$dir/err.txt"; [ $? = 2 ] && grep -qx "lmforge generate: unknown option $f" "$dir/err.txt" \
    || fail "generate $f"
done
# the commands with sub-commands name what they did not know before their usage
for c in "data --bogus:lmforge data: unknown option --bogus" "data bogus:lmforge data: unknown command 'bogus'" \
         "tokenizer --bogus:lmforge tokenizer: unknown option --bogus" "tokenizer bogus:lmforge tokenizer: unknown command 'bogus'"; do
  "$LMF" ${c%%:*} 2> "$dir/err.txt"; [ $? = 2 ] && grep -qx "${c#*:}" "$dir/err.txt" || { cat "$dir/err.txt"; fail "${c%%:*}"; }
done
# bad values name the flag; --name=value is the same as --name value
"$LMF" generate -m x -p hi --ctx=abc 2> "$dir/err.txt"; [ $? = 2 ] && grep -q "ctx expects an integer >= 1, got 'abc'" "$dir/err.txt" || fail "--ctx=abc"
"$LMF" generate -m x -p hi --logprobs 21 2> "$dir/err.txt"; [ $? = 2 ] && grep -q "logprobs expects 0..20" "$dir/err.txt" || fail "--logprobs 21"
"$LMF" info a b 2> "$dir/err.txt"; [ $? = 2 ] && grep -q "unexpected argument 'b'" "$dir/err.txt" || fail "info a b"

# options after the inputs: data shard --out D f.txt --block 256 (the block is a flag, not a file name)
printf 'In the beginning God created the heaven and the earth.\n' > "$dir/f.txt"
"$LMF" data shard --out "$dir/sh" "$dir/f.txt" --block 0 2> "$dir/err.txt"; [ $? = 2 ] && grep -q "block expects an integer >= 1, got '0'" "$dir/err.txt" \
  || { cat "$dir/err.txt"; fail "data shard: --block after the input not parsed as a flag"; }
"$LMF" data shard --out "$dir/sh" "$dir/f.txt" --block 256 --val-fraction 0 2> "$dir/err.txt" || { cat "$dir/err.txt"; fail "data shard with options after the input"; }
want=$(( $(wc -c < "$dir/f.txt") + 1 ))
grep -q "train.bin: $want tokens" "$dir/err.txt" || { cat "$dir/err.txt"; fail "data shard: expected $want byte tokens (the bytes + end of text)"; }
[ -s "$dir/sh/train.bin" ] && [ ! -e "$dir/--block" ] && [ ! -e 256 ] || fail "data shard outputs"
# "--model --ctx 5": the value of --model is missing, --ctx is not taken for a path
"$LMF" generate --model --ctx 5 -p hi 2> "$dir/err.txt"; [ $? = 2 ] && grep -qx "lmforge generate: --model needs a value (PATH)" "$dir/err.txt" || fail "--model --ctx"
# "--" ends the options: a file named like a flag
cp "$dir/f.txt" "$dir/--odd.txt"
(cd "$dir" && "$LMF" data shard --out sh2 -- --odd.txt 2> err2.txt) || { cat "$dir/err2.txt"; fail "data shard -- --odd.txt"; }
echo "cli_flags: ok ($checked flags over ${#commands[@]} commands)"

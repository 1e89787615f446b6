#!/usr/bin/env bash
# The library as a user gets it: install this build into a temporary prefix, compile examples/generate.c with only
# what pkg-config says (the installed lmforge.h and liblmforge.so), run it on the tiny gpt2 fixture (random weights,
# a 260-token tokenizer.json) and check it prints the prompt and its continuation, and that the continuation is the
# one `lmforge generate --temp 0` gives. Usage: cli_example.sh path/to/lmforge (the build folder is its folder)
set -uo pipefail
LMF=$1
BUILD="$(cd "$(dirname "$LMF")" && pwd)"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="$ROOT/tests/reference/fixtures/hf/gpt2"
dir=$(mktemp -d /tmp/lmf_cli_example_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cmake --install "$BUILD" --prefix "$dir/prefix" > "$dir/install.txt" 2>&1 \
  || { cat "$dir/install.txt"; fail "cmake --install"; }
export PKG_CONFIG_PATH="$dir/prefix/lib/pkgconfig"
flags=$(pkg-config --cflags --libs lmforge) || fail "pkg-config finds no lmforge in $PKG_CONFIG_PATH"
# A sanitized build's library needs the sanitizer runtimes in the program too.
[ "${LMF_SANITIZE:-OFF}" = ON ] && flags="-fsanitize=address,undefined $flags"
# shellcheck disable=SC2086  # the flags are words
${CC:-cc} -std=c11 -Wall -Wextra -Werror -o "$dir/generate" "$ROOT/examples/generate.c" $flags 2> "$dir/cc.txt" \
  || { cat "$dir/cc.txt"; fail "examples/generate.c does not build against the installed library"; }
export LD_LIBRARY_PATH="$dir/prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
libs=$(ldd "$dir/generate") # not piped into grep -q: ldd would die of SIGPIPE, failing the pipe (pipefail)
grep -q "$dir/prefix/lib/liblmforge.so" <<< "$libs" || { echo "$libs"; fail "not linked to the installed .so"; }

"$dir/generate" "$MODEL" "Hello, world" 12 > "$dir/out.txt" 2> "$dir/err.txt"; rc=$?
[ $rc = 0 ] || { cat "$dir/err.txt"; fail "generate exited $rc"; }
head -c 12 "$dir/out.txt" | grep -q "^Hello, world$" || { cat "$dir/out.txt"; fail "no prompt first"; }
[ "$(wc -c < "$dir/out.txt")" -gt 14 ] || { cat "$dir/out.txt"; fail "no tokens generated after the prompt"; }
"$LMF" generate -m "$MODEL" -p "Hello, world" -n 12 --temp 0 > "$dir/cli.txt" 2> "$dir/err.txt" \
  || { cat "$dir/err.txt"; fail "lmforge generate"; }
cmp -s "$dir/out.txt" "$dir/cli.txt" || { od -c "$dir/out.txt" "$dir/cli.txt"; fail "example and CLI differ"; }

# refusals: a missing model names the path and exits 1; bad usage exits 2
"$dir/generate" "$dir/none.gguf" hi 2> "$dir/err.txt"; rc=$?
[ $rc = 1 ] && grep -q "none.gguf" "$dir/err.txt" || { cat "$dir/err.txt"; fail "missing model (rc $rc)"; }
"$dir/generate" 2> /dev/null; [ $? = 2 ] || fail "usage without arguments"
echo "OK: examples/generate.c, built against the installed library, wrote $(wc -c < "$dir/out.txt") bytes"

#!/usr/bin/env bash
# liblmforge.so exports exactly the functions declared in include/lmforge.h: every dynamic symbol it defines is one
# of them (so none without the lmf_ prefix, and no internal lmf_ helper), and every one of them is defined (a
# declaration left without a definition fails here rather than at a user's link). The library is compiled with
# -fvisibility=hidden and the header wraps its declarations in `#pragma GCC visibility push(default)`.
# Usage: check_exports.sh path/to/liblmforge.so path/to/lmforge.h [C compiler]   (exit 77 = skipped: no nm)
set -uo pipefail
so=$1 header=$2 cc=${3:-cc}
command -v nm >/dev/null || { echo "SKIP: nm not found"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
[ -f "$so" ] || fail "$so not found"

# The header's functions: preprocessed (no comments or macros), statements split at ';', typedefs dropped (a
# function type or pointer typedef is not a function), then the identifier before '('.
declared=$("$cc" -E -P -x c "$header" 2>/dev/null) ||
  declared=$(sed 's://.*$::' "$header" | perl -0pe 's:/\*.*?\*/::gs')  # no compiler: comments stripped
declared=$(printf '%s\n' "$declared" | tr '\n' ' ' | tr ';' '\n' | grep -v '\btypedef\b' |
           grep -oE '\blmf_[A-Za-z0-9_]+[[:space:]]*\(' | tr -d '( \t' | sort -u)
[ -n "$declared" ] || fail "no function declarations found in $header"

# Defined dynamic symbols, less the ones the linker adds to every shared object.
exported=$(nm -D --defined-only "$so" | awk 'NF >= 3 { print $2, $3 }' |
           grep -vE ' (_init|_fini|_edata|_end|__bss_start)$') || true
functions=$(printf '%s\n' "$exported" | awk '$1 ~ /^[TtWi]$/ { print $2 }' | sort -u)
others=$(printf '%s\n' "$exported" | awk '$1 !~ /^[TtWi]$/ && NF { print $2 }' | sort -u)

bad=0
unprefixed=$(printf '%s\n' "$exported" | awk 'NF { print $2 }' | grep -v '^lmf_' | sort -u)
[ -z "$unprefixed" ] || { echo "exported without the lmf_ prefix:"; printf '  %s\n' $unprefixed; bad=1; }
[ -z "$others" ] || { echo "exported data (the API exports functions only):"; printf '  %s\n' $others; bad=1; }
extra=$(comm -13 <(printf '%s\n' "$declared") <(printf '%s\n' "$functions" | grep '^lmf_'))
[ -z "$extra" ] || { echo "exported but not declared in $header:"; printf '  %s\n' $extra; bad=1; }
missing=$(comm -23 <(printf '%s\n' "$declared") <(printf '%s\n' "$functions"))
[ -z "$missing" ] || { echo "declared in $header but not defined in $so:"; printf '  %s\n' $missing; bad=1; }
[ $bad = 0 ] || fail "$so does not export exactly the API of $header"
echo "OK: $so exports the $(printf '%s\n' "$declared" | wc -l) functions of $header and nothing else"

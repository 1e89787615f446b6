#!/usr/bin/env bash
# Generation speed of one lmforge binary against another (a change against its parent) on GGUF files, in
# alternated rounds: each round runs `generate -n 128 --temp 0 -v` with binary A then binary B back to back, and the
# table gives the median tok/s of each and the median of the per-round ratios B/A (these hosts drift within minutes;
# a ratio of neighbours does not). Prints the CPU first.
#
# usage: bench/ab_generate.sh LMFORGE_A LMFORGE_B [ROUNDS=5] [THREADS="1 2"] FILE.gguf...
#   e.g. git worktree add /tmp/base HEAD~1 && cmake -S /tmp/base -B /tmp/base/build -DCMAKE_BUILD_TYPE=Release &&
#        cmake --build /tmp/base/build -j --target lmforge &&
#        bench/ab_generate.sh /tmp/base/build/lmforge build/lmforge 5 "1 2" Q4_K_M.gguf
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
A=$1 B=$2; shift 2
ROUNDS=5 THREADS="1 2"
if [[ "$1" =~ ^[0-9]+$ ]]; then ROUNDS=$1; shift; fi
if [[ "$1" =~ ^[0-9\ ]+$ ]]; then THREADS=$1; shift; fi
for f in "$@"; do [ -f "$f" ] || { echo "ab_generate: no such file: $f" >&2; exit 2; }; done
PROMPT="The history of the world"
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p'), model $(lscpu | sed -n 's/^Model: *//p'))"
tok_s() { "$1" generate -m "$2" -t "$3" -n 128 --temp 0 -p "$PROMPT" -v 2>&1 | sed -n 's/.*generation: .* \([0-9.]*\) tok\/s.*/\1/p'; }
echo
echo "| file | threads | A tok/s (median) | B tok/s (median) | B / A (median of rounds) |"
echo "|---|---|---|---|---|"
for f in "$@"; do
  for t in $THREADS; do
    rows=""
    for r in $(seq "$ROUNDS"); do rows+="$(tok_s "$A" "$f" "$t") $(tok_s "$B" "$f" "$t")"$'\n'; done
    python3 -c '
import statistics as st, sys
r = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
print(f"| {sys.argv[1]} | {sys.argv[2]} | {st.median(a for a, _ in r):.1f} | {st.median(b for _, b in r):.1f} | "
      f"{st.median(b / a for a, b in r):.2f}x |")' "$(basename "$f" .gguf)" "$t" <<<"$rows"
  done
done

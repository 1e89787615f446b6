#!/usr/bin/env bash
# The KV cache's element type, f32 against f16 (--cache-type), on one long prompt: `lmforge generate` on the first
# CHARS characters of the King James Bible (Genesis), -n 64 greedy, the two types alternating ROUNDS times; prints
# the CPU and a table of prompt and generation tok/s per round (the -v timing line), then the medians.
#
# usage: bench/kv_cache_bench.sh MODEL.gguf [THREADS=2]
# env:   BUILD=build  CHARS=7000 (SmolLM2: ~1800 tokens)  ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
MODEL=$1 THREADS=${2:-2} BUILD=${BUILD:-build} CHARS=${CHARS:-7000} ROUNDS=${ROUNDS:-3}
command -v bible > /dev/null || { echo "kv_cache_bench: needs Debian's bible-kjv (scripts/install-deps.sh)" >&2; exit 2; }
prompt=$(bible gen1:1-gen10:32 | head -c "$CHARS")
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p'), model $(lscpu | sed -n 's/^Model: *//p')); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| round | cache | prompt tokens | prompt tok/s | generation tok/s |"
echo "|---|---|---|---|---|"
declare -A pp tg
for r in $(seq "$ROUNDS"); do
  for t in f32 f16; do
    line=$("$BUILD/lmforge" generate -m "$MODEL" -p "$prompt" -n 64 --temp 0 --cache-type $t -v -t "$THREADS" 2>&1 >/dev/null |
           grep -o 'prompt: .*tok/s\]')
    n=$(sed 's/prompt: \([0-9]*\) tokens.*/\1/' <<< "$line")
    p=$(sed 's/.*tokens in [0-9.]* s, \([0-9.]*\) tok\/s | gen.*/\1/' <<< "$line")
    g=$(sed 's/.*generation: .* s, \([0-9.]*\) tok\/s\]/\1/' <<< "$line")
    echo "| $r | $t | $n | $p | $g |"
    pp[$t]+="$p "; tg[$t]+="$g "
  done
done
med() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for t in f32 f16; do echo "median $t: prompt $(med <<< "${pp[$t]}") tok/s, generation $(med <<< "${tg[$t]}") tok/s"; done

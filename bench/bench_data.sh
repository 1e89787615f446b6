#!/usr/bin/env bash
# bench_data.sh — speed of the whole data pipeline (`lmforge data run`: normalize + length + Gopher quality +
# Gopher repetition + C4 + FineWeb + toxicity + PII + exact dedup + MinHash + BPE shard) on the real corpus: the
# King James Bible as one document per chapter (Debian bible-kjv) plus the Debian fortunes, one document each.
# Prints, for 1 thread and for all threads, wall-clock MB/s and MB per CPU-second (the per-core speed: robust on a
# shared machine), then each stage's MB per CPU-second from report.json.
#
# Usage: bench/bench_data.sh [path/to/lmforge] [repeat]    (repeat: copies of the corpus, default 4, so the run is
#        long enough to time; each copy is a distinct folder, so dedup removes the copies: it is work like any other)
set -euo pipefail
LMF=${1:-build/lmforge}
REPEAT=${2:-4}
dir=$(mktemp -d /tmp/lmf_bench_data_XXXXXX)
trap 'rm -rf "$dir"' EXIT
command -v bible >/dev/null || { echo "bench_data: needs bible-kjv (apt-get install bible-kjv)"; exit 1; }

bible gen1:1-rev22:21 > "$dir/kjv.txt"
mkdir -p "$dir/corpus/c0/kjv" "$dir/corpus/c0/fortunes"
awk -v d="$dir/corpus/c0/kjv" '/^([1-3] )?[A-Z][A-Za-z ]* [0-9]+$/ { if (f) close(f); n++; f = sprintf("%s/ch%04d.txt", d, n) }
     f { print > f }' "$dir/kjv.txt"
for f in /usr/share/games/fortunes/*; do case $f in *.dat|*.u8) ;; *) cp "$f" "$dir/corpus/c0/fortunes/";; esac; done
for i in $(seq 1 $((REPEAT - 1))); do cp -r "$dir/corpus/c0" "$dir/corpus/c$i"; done
"$LMF" tokenizer train --vocab-size 4096 --special "<|endoftext|>" -o "$dir/tok.json" "$dir/kjv.txt" > /dev/null 2>&1

cat > "$dir/pipeline.toml" <<EOF
[input]
paths = ["$dir/corpus"]
split = "separator"
separator = "%"
[run]
progress = false
[shard]
tokenizer = "$dir/tok.json"
EOF

mb=$(du -sb "$dir/corpus" | cut -f1)
printf "corpus: %.1f MB (%d copies of KJV chapters + fortunes), %s\n\n" "$(echo "$mb / 1000000" | bc -l)" "$REPEAT" \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
printf "%-9s %10s %12s %14s %10s\n" threads wall_s "MB/s" "MB/CPU-s" docs_out
nproc=$(nproc)
for t in 1 "$nproc"; do
  "$LMF" data run "$dir/pipeline.toml" --out "$dir/out$t" --threads "$t" --quiet
  python3 - "$dir/out$t/report.json" "$t" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
run = r["run"]
print("%-9s %10.2f %12.2f %14.2f %10d" % (sys.argv[2], run["wall_seconds"], run["mb_per_second"],
      run["mb_per_cpu_second"], r["output"]["docs"]))
EOF
done
echo
echo "per stage (1 thread): MB of the stage's input per CPU-second of the stage"
python3 - "$dir/out1/report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print("%-18s %10s %10s %10s %10s" % ("stage", "docs in", "MB in", "CPU s", "MB/CPU-s"))
for s in r["stages"]:
    print("%-18s %10d %10.2f %10.3f %10.1f" % (s["stage"], s["docs_in"], s["bytes_in"] / 1e6, s["cpu_seconds"],
                                             s["mb_per_cpu_second"]))
print("(dedup finish, reading, writing and the spill are outside the stage times: compare with the total above)")
EOF

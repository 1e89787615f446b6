#!/usr/bin/env bash
# bench_data.sh — speed of the whole data pipeline (`lmforge data run`: normalize + length + Gopher quality +
# Gopher repetition + C4 + FineWeb + toxicity + PII + exact dedup + MinHash + BPE shard) on two corpora:
#   real  - the King James Bible as one document per chapter (Debian bible-kjv) plus the Debian fortunes, one
#           document each: the text the filters were checked against datatrove on;
#   mixed - a held-out-like corpus the filters never saw (bench/mixed_corpus.py: man pages in English, German,
#           French, Spanish and Russian, Python's pydoc, Debian changelog entries, GNU info nodes; one document per
#           file), so the numbers are not those of one friendly text only.
# Prints the CPU (lscpu model name, family, model), then per corpus, for 1 thread and for all threads, wall-clock
# MB/s and MB per CPU-second (the per-core speed: robust on a shared machine) and each stage's MB per CPU-second
# from report.json; then build/bench_data_filters's per-stage table on each corpus, against datatrove on the same
# documents (one core, CPU time) when DATATROVE_PY names a Python with datatrove + spaCy (docs/data.md).
#
# Usage: [DATATROVE_PY=/work/venv-dt/bin/python] [MIXED_DIR=DIR] bench/bench_data.sh [path/to/lmforge] [repeat] [stride]
#   repeat: copies of the real corpus, default 4, so the run is long enough to time (each copy is a distinct folder,
#           so dedup removes the copies: it is work like any other);
#   stride: the per-stage tables use every K-th document (both sides the same ones), default 4: datatrove runs at
#           ~0.1-0.5 MB/s per core;
#   MIXED_DIR reuses a corpus built by bench/mixed_corpus.py (building one takes about a minute).
set -euo pipefail
LMF=${1:-build/lmforge}
REPEAT=${2:-4}
STRIDE=${3:-4}
here=$(cd "$(dirname "$0")" && pwd)
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

cat > "$dir/real.toml" <<EOF
[input]
paths = ["$dir/corpus"]
split = "separator"
separator = "%"
[run]
progress = false
[shard]
tokenizer = "$dir/tok.json"
EOF

MIXED=${MIXED_DIR:-}
if [ -z "$MIXED" ]; then
  MIXED="$dir/mixed"
  echo "building the mixed corpus (bench/mixed_corpus.py):"
  python3 "$here/mixed_corpus.py" "$MIXED"
  echo
fi
cat > "$dir/mixed.toml" <<EOF
[input]
paths = ["$MIXED"]
[run]
progress = false
[shard]
tokenizer = "$dir/tok.json"
EOF

printf "CPU: %s (family %s, model %s), %s cores; load average %s\n\n" \
  "$(lscpu | sed -n 's/^Model name: *//p')" "$(lscpu | sed -n 's/^CPU family: *//p')" \
  "$(lscpu | sed -n 's/^Model: *//p')" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
nproc=$(nproc)

cat > "$dir/row.py" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
run = r["run"]
print("%-9s %10.2f %12.2f %14.2f %10d" % (sys.argv[2], run["wall_seconds"], run["mb_per_second"],
      run["mb_per_cpu_second"], r["output"]["docs"]))
EOF
cat > "$dir/stages.py" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print("%-18s %10s %10s %10s %10s" % ("stage", "docs in", "MB in", "CPU s", "MB/CPU-s"))
for s in r["stages"]:
    print("%-18s %10d %10.2f %10.3f %10.1f" % (s["stage"], s["docs_in"], s["bytes_in"] / 1e6, s["cpu_seconds"],
                                             s["mb_per_cpu_second"]))
print("(dedup finish, reading, writing and the spill are outside the stage times: compare with the total above)")
EOF

whole() { # name pipeline.toml corpus-dir
  local mb
  mb=$(du -sb "$3" | cut -f1)
  printf "== whole pipeline, %s corpus: %.1f MB\n" "$1" "$(echo "$mb / 1000000" | bc -l)"
  printf "%-9s %10s %12s %14s %10s\n" threads wall_s "MB/s" "MB/CPU-s" docs_out
  for t in 1 "$nproc"; do
    "$LMF" data run "$2" --out "$dir/out-$1-$t" --threads "$t" --quiet
    python3 "$dir/row.py" "$dir/out-$1-$t/report.json" "$t"
  done
  echo
  echo "per stage (1 thread): MB of the stage's input per CPU-second of the stage"
  python3 "$dir/stages.py" "$dir/out-$1-1/report.json"
  echo
}
whole real "$dir/real.toml" "$dir/corpus"
whole mixed "$dir/mixed.toml" "$MIXED"

# each stage alone, one core, against datatrove on the same documents
FILTERS="$(dirname "$LMF")/bench_data_filters"
if [ -x "$FILTERS" ]; then
  py=()
  if [ -n "${DATATROVE_PY:-}" ]; then py=(--python "$DATATROVE_PY"); else echo "(DATATROVE_PY unset: lmforge only)"; fi
  echo "== each stage alone, real corpus"
  "$FILTERS" "${py[@]}" --repeat 3 --stride "$STRIDE"
  echo
  echo "== each stage alone, mixed corpus"
  "$FILTERS" "${py[@]}" --repeat 3 --stride "$STRIDE" --corpus-dir "$MIXED"
else
  echo "($FILTERS not built: no per-stage comparison)"
fi

#!/usr/bin/env bash
# End to end through the CLI on real text: the King James Bible split into chapters (one file each) plus the Debian
# fortunes ('%'-separated), a JSONL file with a malformed line, and an exact copy of one chapter
#   -> `lmforge tokenizer train` -> `lmforge data run PIPELINE.toml` (every stage) -> report, kept.jsonl, shards
#   -> the same bytes with 1 thread -> `lmforge train` a few steps on the shards;
# then `data clean` / `data dedup`, config errors naming file:line:column, and `data shard` unchanged.
# Usage: cli_data.sh path/to/lmforge
set -uo pipefail
LMF=$1
dir=$(mktemp -d /tmp/lmf_cli_data_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$dir/corpus/kjv"
if command -v bible >/dev/null; then
  bible gen1:1-rev22:21 > "$dir/kjv.txt"
else # no bible-kjv: this repository's docs stand in (same structure: one file per "chapter")
  cat "$(dirname "$0")"/../docs/*.md "$(dirname "$0")"/../README.md > "$dir/kjv.txt"
fi
# one file per chapter: a chapter starts at a line "Book N" ("1 Kings 3", "Song of Solomon 2")
awk -v d="$dir/corpus/kjv" '/^([1-3] )?[A-Z][A-Za-z ]* [0-9]+$/ { if (f) close(f); n++; f = sprintf("%s/ch%04d.txt", d, n) }
     f { print > f }' "$dir/kjv.txt"
n_ch=$(ls "$dir/corpus/kjv" | wc -l)
if [ "$n_ch" -lt 10 ]; then # the fallback text has no chapters: cut it into 100-line pieces
  rm -f "$dir/corpus/kjv"/*; split -l 100 -d -a 4 "$dir/kjv.txt" "$dir/corpus/kjv/ch"; n_ch=$(ls "$dir/corpus/kjv" | wc -l)
fi
cp "$dir/corpus/kjv/$(ls "$dir/corpus/kjv" | sed -n 3p)" "$dir/corpus/kjv/zz_copy_of_chapter_3.txt"
if [ -d /usr/share/games/fortunes ]; then
  mkdir -p "$dir/corpus/fortunes"
  for f in /usr/share/games/fortunes/*; do case $f in *.dat|*.u8) ;; *) cp "$f" "$dir/corpus/fortunes/";; esac; done
fi
printf '{"text": "A JSON document about the river and the city, and the people of the land who kept it."}\n{"text": oops}\n{"body": "no text"}\n' > "$dir/corpus/extra.jsonl"
echo "corpus: $n_ch chapters, $(du -sh "$dir/corpus" | cut -f1)"

"$LMF" tokenizer train --vocab-size 512 --special "<|endoftext|>" -o "$dir/tok.json" "$dir/kjv.txt" > /dev/null 2>&1 \
  || fail "tokenizer train"

cat > "$dir/pipeline.toml" <<EOF
# chapters are whole files, fortunes are '%'-separated: one separator rule reads both
[input]
paths = ["$dir/corpus"]
split = "separator"
separator = "%"
exclude = ["*.dat"]

[output]
dir = "$dir/out"
removed = true

[run]
progress = false

[gopher_quality]
min_doc_words = 10   # fortunes are short

[shard]
tokenizer = "$dir/tok.json"
val_fraction = 0.1
block = 1024
EOF

"$LMF" data run "$dir/pipeline.toml" > "$dir/table.txt" 2> "$dir/err.txt" || { cat "$dir/err.txt"; fail "data run"; }
for f in kept.jsonl removed.jsonl report.json train.bin val.bin; do [ -s "$dir/out/$f" ] || fail "out/$f missing"; done
ls -A "$dir/out" | grep -q -e '\.tmp$' -e '^\.lmf-spill' && fail "temporary files left in the output folder"
for s in normalize length gopher_quality gopher_repetition c4 fineweb toxicity pii exact_dedup minhash shard; do
  grep -q "^$s " "$dir/table.txt" || { cat "$dir/table.txt"; fail "stage $s missing from the table"; }
done
grep -q "exact_duplicate" "$dir/table.txt" || fail "the copied chapter was not removed as an exact duplicate"
grep -q "zz_copy_of_chapter_3.txt:1: duplicate of .*ch0003.txt:1" "$dir/table.txt" || { cat "$dir/table.txt"; fail "duplicate example does not name its twin"; }
grep -q "bad_json" "$dir/table.txt" && grep -q "extra.jsonl:2" "$dir/table.txt" || fail "the bad JSON line is not reported with file:line"
grep -q "missing_text_field" "$dir/table.txt" || fail "the missing text field is not reported"
python3 - "$dir/out/report.json" <<'EOF' || fail "report.json checks"
import json, sys
r = json.load(open(sys.argv[1]))
st = {s["stage"]: s for s in r["stages"]}
assert len(st) == 11, st.keys()
for name, s in st.items():
    assert s["docs_in"] == s["docs_kept"] + s["docs_removed"], name
    assert sum(x["docs"] for x in s["reasons"]) == s["docs_removed"], name
order = ["normalize", "length", "gopher_quality", "gopher_repetition", "c4", "fineweb", "toxicity", "pii",
         "exact_dedup", "minhash", "shard"]
for a, b in zip(order, order[1:]):
    assert st[a]["docs_kept"] == st[b]["docs_in"], (a, b)
assert st["exact_dedup"]["docs_removed"] >= 1
assert st["gopher_quality"]["docs_removed"] > 0
assert r["output"]["docs"] == st["shard"]["docs_kept"] > 1000
assert r["output"]["tokens_train"] > 0 and r["output"]["tokens_val"] > 0
assert r["input"]["malformed"] == 2
ex = st["gopher_quality"]["reasons"][0]["examples"][0]
assert ex["source"] and ex["text"]
print("report: %d docs in, %d out, %d tokens; %.1f MB/s" % (st["normalize"]["docs_in"], r["output"]["docs"],
      r["output"]["tokens_train"] + r["output"]["tokens_val"], r["run"]["mb_per_second"]))
EOF
n_kept=$(wc -l < "$dir/out/kept.jsonl")
n_removed=$(wc -l < "$dir/out/removed.jsonl")
python3 -c "import json,sys; [json.loads(l) for l in open(sys.argv[1])]" "$dir/out/kept.jsonl" || fail "kept.jsonl is not JSONL"

# the same output with one thread (and small batches)
"$LMF" data run "$dir/pipeline.toml" --out "$dir/out1" --threads 1 --set run.batch_kb=64 --quiet 2> "$dir/err1.txt" \
  || { cat "$dir/err1.txt"; fail "data run --threads 1"; }
for f in kept.jsonl removed.jsonl train.bin val.bin; do cmp -s "$dir/out/$f" "$dir/out1/$f" || fail "$f differs between 2 threads and 1"; done

# the shards train without conversion
"$LMF" train --train-data "$dir/out/train.bin" --val-data "$dir/out/val.bin" --tokenizer "$dir/tok.json" --n-layer 2 \
  --n-embd 64 --n-head 4 --n-kv-head 4 --ffn-dim 128 --batch-size 4 --seq-len 32 --warmup-steps 2 --eval-every 5 \
  --eval-batches 2 --checkpoint-every 0 --sample-tokens 8 --max-steps 10 --out-dir "$dir/run" > "$dir/train.txt" 2>&1 \
  || { tail -20 "$dir/train.txt"; fail "train on the pipeline's shards"; }
[ "$(grep -c '"loss"' "$dir/run/metrics.jsonl")" = 10 ] || fail "training did not run 10 steps"

# stage groups as commands
"$LMF" data clean --out "$dir/clean" --no-progress --quiet --split separator --exclude '*.dat' "$dir/corpus/fortunes" 2> "$dir/e.txt" \
  || { cat "$dir/e.txt"; fail "data clean"; }
[ -s "$dir/clean/kept.jsonl" ] && [ ! -e "$dir/clean/train.bin" ] || fail "data clean outputs"
python3 -c "
import json,sys; st=[s['stage'] for s in json.load(open(sys.argv[1]))['stages']]
assert st == ['normalize','length','gopher_quality','gopher_repetition','c4','fineweb','toxicity','pii'], st" "$dir/clean/report.json" \
  || fail "data clean ran the wrong stages"
"$LMF" data dedup --out "$dir/dedup" --no-progress --quiet "$dir/corpus/kjv" 2> "$dir/e.txt" || { cat "$dir/e.txt"; fail "data dedup"; }
[ "$(wc -l < "$dir/dedup/kept.jsonl")" = "$n_ch" ] || fail "data dedup should keep $n_ch of $((n_ch + 1)) chapters"
"$LMF" data dedup --out "$dir/dedupz" --no-progress --quiet --compress --tokenizer "$dir/tok.json" "$dir/out/kept.jsonl" 2> "$dir/e.txt" \
  || { cat "$dir/e.txt"; fail "data dedup on the pipeline's own JSONL output"; }
[ -s "$dir/dedupz/kept.jsonl.zst" ] && [ -s "$dir/dedupz/train.bin" ] || fail "data dedup --compress --tokenizer outputs"

# a --config file gives clean / dedup their options, never other stages (issue 17 item 10): the pipeline file
# enables every stage and a tokenizer, yet dedup runs the two dedup stages and clean the eight per-document ones
stages_of() { python3 -c "import json,sys; print(' '.join(s['stage'] for s in json.load(open(sys.argv[1]))['stages']))" "$1"; }
"$LMF" data dedup --config "$dir/pipeline.toml" --out "$dir/dedupcfg" --no-progress --quiet 2> "$dir/e.txt" \
  || { cat "$dir/e.txt"; fail "data dedup --config"; }
[ "$(stages_of "$dir/dedupcfg/report.json")" = "exact_dedup minhash" ] || fail "data dedup --config ran: $(stages_of "$dir/dedupcfg/report.json")"
[ ! -e "$dir/dedupcfg/train.bin" ] || fail "data dedup --config wrote shards without --tokenizer/--shard"
"$LMF" data clean --config "$dir/pipeline.toml" --out "$dir/cleancfg" --no-progress --quiet --no-c4 2> "$dir/e.txt" \
  || { cat "$dir/e.txt"; fail "data clean --config"; }
[ "$(stages_of "$dir/cleancfg/report.json")" = "normalize length gopher_quality gopher_repetition fineweb toxicity pii" ] \
  || fail "data clean --config --no-c4 ran: $(stages_of "$dir/cleancfg/report.json")"
printf '[exact_dedup]\nenabled = false\n[c4]\nenabled = true\n' > "$dir/exact_off.toml"
"$LMF" data dedup --config "$dir/exact_off.toml" --out "$dir/dedupmh" --no-progress --quiet "$dir/corpus/kjv" 2> "$dir/e.txt" \
  || { cat "$dir/e.txt"; fail "data dedup with exact_dedup off"; }
[ "$(stages_of "$dir/dedupmh/report.json")" = "minhash" ] || fail "data dedup, exact off in the file, ran: $(stages_of "$dir/dedupmh/report.json")"
"$LMF" data dedup --config "$dir/pipeline.toml" --out "$dir/dedupsh" --shard --no-progress --quiet 2> "$dir/e.txt" \
  || { cat "$dir/e.txt"; fail "data dedup --config --shard"; }
[ "$(stages_of "$dir/dedupsh/report.json")" = "exact_dedup minhash shard" ] && [ -s "$dir/dedupsh/train.bin" ] \
  || fail "data dedup --shard should add the shard stage (the file's tokenizer)"

# errors: name the file, line and column; exit 2; nothing half-written
expect_error() { # expected-substring command...
  local want=$1; shift
  "$@" > "$dir/e.out" 2> "$dir/e.err" && fail "expected failure: $*"
  grep -q -- "$want" "$dir/e.err" || { cat "$dir/e.err"; fail "error for '$*' lacks '$want'"; }
}
printf '[input]\npaths = ["x"]\n[gopher_quality]\nmin_doc_word = 3\n' > "$dir/bad1.toml"
expect_error "bad1.toml:4:1: unknown key 'min_doc_word' in \[gopher_quality\]" "$LMF" data run "$dir/bad1.toml" --out "$dir/x"
printf '[fineweb]\nshort_line_thr = "high"\n' > "$dir/bad2.toml"
expect_error "bad2.toml:2:18: fineweb.short_line_thr: expected a number" "$LMF" data run "$dir/bad2.toml" --out "$dir/x" "$dir/corpus"
printf '[c4]\nenabled = tru\n' > "$dir/bad3.toml"
expect_error "bad3.toml:2:11" "$LMF" data run "$dir/bad3.toml"
expect_error "no_such.toml: cannot open" "$LMF" data run "$dir/no_such.toml"
expect_error "unknown option --no-such-stage" "$LMF" data clean --out "$dir/x" --no-such-stage "$dir/corpus"
expect_error "--c4 is not one of this command's stages" "$LMF" data dedup --out "$dir/x" --c4 "$dir/corpus"
expect_error "need an output folder" "$LMF" data clean "$dir/corpus"
expect_error "tok_missing.json: cannot open" "$LMF" data dedup --out "$dir/x" --no-progress --tokenizer "$dir/tok_missing.json" "$dir/corpus"
[ "$("$LMF" data run "$dir/pipeline.toml" --print-config | grep -c '^\[')" = 14 ] || fail "--print-config should print 14 tables"
"$LMF" data --help | grep -q "run PIPELINE.toml" || fail "data --help lacks run"
"$LMF" data run --help | grep -q -- "--set TABLE.KEY=VALUE" || fail "data run --help lacks --set"

# `data shard` unchanged: the same tokens as before the pipeline existed (bytes + one end-of-text per file)
printf 'abc' > "$dir/s1.txt"; printf 'de' > "$dir/s2.txt"
"$LMF" data shard --out "$dir/sh" --val-fraction 0 "$dir/s1.txt" "$dir/s2.txt" 2> /dev/null || fail "data shard"
[ "$(od -An -tu2 -j64 "$dir/sh/train.bin" | tr -s ' ' | sed 's/^ //')" = "97 98 99 256 100 101 256" ] || fail "data shard tokens changed"

echo "kept $n_kept, removed $n_removed"
echo "1 passed, 0 failed"

#!/usr/bin/env bash
# `lmforge data run` commits its outputs as one set (issue 18, defect 7; src/data/output_set.h): whenever a run is
# killed (SIGKILL just before or just after the folder exchange, through the LMF_DATA_FAULT hook, and at random
# moments), the output folder holds either the previous run's complete set or the new run's, never a mix; the next
# run removes the dead run's staging folder; a folder holding other files is refused and left alone; an
# interrupted run leaves the folder as it was.
# Usage: cli_data_commit.sh path/to/lmforge
set -uo pipefail
LMF=$1
dir=$(mktemp -d /tmp/lmf_cli_commit_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$dir/corpus"
if command -v bible >/dev/null; then bible gen1:1-2ki25:30 > "$dir/corpus/kjv.txt" # a third: quick runs
else cat "$(dirname "$0")"/../docs/*.md > "$dir/corpus/kjv.txt"; fi
cp "$dir/corpus/kjv.txt" "$dir/corpus/copy.txt" # exact duplicates: both phases run
# two configurations that give different outputs: A keeps short blocks, B drops them and skips MinHash
A_ARGS=(data run /dev/null --out "$dir/out" --split blank_line --set gopher_quality.min_doc_words=5 --removed
        --no-progress --quiet "$dir/corpus")
B_ARGS=(data run /dev/null --out "$dir/out" --split blank_line --set gopher_quality.min_doc_words=40 --no-minhash
        --no-progress --quiet "$dir/corpus")
run_a() { "$LMF" "${A_ARGS[@]}"; }
run_b() { "$LMF" "${B_ARGS[@]}"; }
# a set's fingerprint: the names and bytes of its files (report.json without its timings and speeds)
fingerprint() {
  [ -d "$1" ] || { echo missing; return; }
  (cd "$1" && for f in $(ls -A | sort); do
     if [ "$f" = report.json ]; then
       python3 -c "import json,sys; r=json.load(open('report.json')); print('report', r['output'], [(s['stage'], s['docs_kept']) for s in r['stages']])"
     else echo "$f $(sha1sum < "$f")"; fi
   done)
}

run_a 2> "$dir/e.txt" || { cat "$dir/e.txt"; fail "run A"; }
A=$(fingerprint "$dir/out")
echo "$A" | grep -q "^removed.jsonl" || fail "set A should have removed.jsonl"
run_b 2> "$dir/e.txt" || { cat "$dir/e.txt"; fail "run B"; }
B=$(fingerprint "$dir/out")
[ "$A" != "$B" ] || fail "A and B should differ"
echo "$B" | grep -q "^removed.jsonl" && fail "set B has no removed.jsonl: the previous set's file stayed behind"
run_a 2> /dev/null || fail "run A again"
[ "$(fingerprint "$dir/out")" = "$A" ] || fail "A again gives another set"

stale() { ls -A "$dir" | grep -c '^\.out\.lmf-'; }
# killed just before the commit: the previous set, whole; the staging folder of the dead run is left over ...
LMF_DATA_FAULT=commit_before run_b 2> /dev/null; rc=$?
[ $rc = 137 ] || fail "commit_before: expected SIGKILL (137), got $rc"
[ "$(fingerprint "$dir/out")" = "$A" ] || fail "killed before the commit: the folder is not the previous set"
[ "$(stale)" = 1 ] || fail "expected the dead run's staging folder"
# ... and the next run removes it
run_b 2> /dev/null || fail "run B after the kill"
[ "$(fingerprint "$dir/out")" = "$B" ] || fail "B after the kill"
[ "$(stale)" = 0 ] || { ls -A "$dir"; fail "the dead run's staging folder was not removed"; }
# killed just after the commit: the new set, whole (the previous one waits in a hidden folder for the next run)
LMF_DATA_FAULT=commit_after run_a 2> /dev/null; rc=$?
[ $rc = 137 ] || fail "commit_after: expected SIGKILL (137), got $rc"
[ "$(fingerprint "$dir/out")" = "$A" ] || fail "killed after the commit: the folder is not the new set"
# killed at random moments (reading, dedup, writing, committing): always one whole set
for i in 1 2 3 4 5 6; do
  # lmforge itself in the background (not a function's subshell), so kill -9 hits the run
  if [ $((i % 2)) = 1 ]; then "$LMF" "${B_ARGS[@]}" 2> /dev/null & else "$LMF" "${A_ARGS[@]}" 2> /dev/null & fi
  pid=$!
  sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
  kill -9 $pid 2> /dev/null
  wait $pid 2> /dev/null
  f=$(fingerprint "$dir/out")
  [ "$f" = "$A" ] || [ "$f" = "$B" ] || { echo "$f"; fail "after kill -9 #$i the folder is neither set"; }
done
run_a 2> /dev/null || fail "run A after the kills"
[ "$(stale)" = 0 ] || { ls -A "$dir"; fail "staging folders of killed runs remain"; }

# an interrupted run (SIGINT) leaves the folder as it was, and no staging folder
"$LMF" "${B_ARGS[@]}" 2> /dev/null &
pid=$!
sleep 0.3
kill -INT $pid 2> /dev/null
wait $pid; rc=$?
if [ $rc != 0 ]; then
  [ "$(fingerprint "$dir/out")" = "$A" ] || fail "an interrupted run changed the folder"
fi
[ "$(stale)" = 0 ] || fail "an interrupted run left its staging folder"

# a folder with other files is refused and left alone
mkdir -p "$dir/mine" && echo keep > "$dir/mine/notes.txt"
"$LMF" data run /dev/null --out "$dir/mine" --no-progress --quiet "$dir/corpus" > /dev/null 2> "$dir/e.txt" && fail "a folder with other files was used"
grep -q "holds 1 file(s) a run does not write (notes.txt)" "$dir/e.txt" || { cat "$dir/e.txt"; fail "refusal message"; }
[ "$(ls -A "$dir/mine")" = notes.txt ] || fail "the refused folder was changed"
# the output folder itself (not its symlink) is replaced; its mode is an ordinary folder's
ln -s out "$dir/link"
"$LMF" data run /dev/null --out "$dir/link" --split blank_line --no-minhash --no-progress --quiet "$dir/corpus" 2> /dev/null \
  || fail "run through a symlink"
[ -L "$dir/link" ] && [ -s "$dir/out/report.json" ] || fail "the symlink should still point to the replaced folder"
[ "$(stat -c %a "$dir/out")" = 755 ] || fail "output folder mode $(stat -c %a "$dir/out")"
echo "1 passed, 0 failed"

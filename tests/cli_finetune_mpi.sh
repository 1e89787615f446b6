#!/usr/bin/env bash
# `lmforge finetune` data parallel over MPI (train/finetune.h), on the tiny Hugging Face gpt2 fixture, ranks
# oversubscribed on this machine's cores:
#  1. LoRA: DP2 and DP4 at one micro-batch a rank, DP2 at two and three (fp32 and bf16 products), equal the
#     single-process run bit for bit (the final checkpoint's bytes, every logged loss and validation loss), and
#     rank 0 alone writes the files;
#  2. --full and --packing under DP2: the same checkpoint bytes (and --full's model.gguf), with and without
#     --overlap-grad-reduce;
#  3. resume: a DP2 run resumed from a one-process checkpoint, and a one-process run resumed from a DP2 checkpoint,
#     end on the uninterrupted run's bytes;
#  4. --grad-accum not a multiple of the ranks, and --comm self under mpirun: clear errors, the job ends non-zero;
#  5. SIGKILL of rank 1 mid-run: the job ends non-zero within a bounded time; its last checkpoint resumes.
# Skips (exit 77) only when mpirun is missing or lmforge was built without MPI. Usage: cli_finetune_mpi.sh lmforge
set -uo pipefail
LMF=$1
M="$(cd "$(dirname "$0")" && pwd)/reference/fixtures/hf/gpt2"
dir=$(mktemp -d /tmp/lmf_ftmpi_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
command -v mpirun > /dev/null || { echo "SKIPPED: mpirun not found (scripts/install-deps.sh)"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Open MPI's own allocations read as leaks under ASan (tests/cli_mpi.sh): the ranks run with leak detection off
mpi_asan="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0"
mpi() { ASAN_OPTIONS="$mpi_asan" timeout 300 mpirun -np "$1" --oversubscribe --mca btl self,tcp -x ASAN_OPTIONS "${@:2}"; }
if OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=0 "$LMF" finetune -m "$M" --data /dev/null --out-dir "$dir/p" 2>&1 |
   grep -q "built without MPI"; then
  echo "SKIPPED: this lmforge was built without MPI"; exit 77
fi

for i in $(seq 0 15); do
  printf '{"prompt": "Question %d: what is %d plus %d?", "completion": " It is %d."}\n' $i $i $i $((2 * i))
done > "$dir/data.jsonl"
common=(-m "$M" --data "$dir/data.jsonl" --batch-size 1 --seq-len 64 --max-steps 8 --lr 5e-3 --lora-dropout 0.1
        --lora-targets c_attn,c_proj,c_fc --checkpoint-every 4 --eval-every 4 --val-fraction 0.3)
numbers() { grep -o '"[a-z_]*loss":[-0-9.e+]*\|"grad_norm":[-0-9.e+]*' "$1/metrics.jsonl"; }
one() { "$LMF" finetune "${common[@]}" --threads 1 "$@" 2> /dev/null || fail "one process: $*"; }
# same RANKS OUT ONE_OUT flags...: the DP run equals the one-process run bit for bit
same() {
  local np=$1 out=$2 ref=$3
  mpi "$np" "$LMF" finetune "${common[@]}" --out-dir "$out" "${@:4}" 2> "$out.log" || { cat "$out.log"; fail "DP$np ${*:4}"; }
  cmp "$ref/ckpt-00000008.lmfc" "$out/ckpt-00000008.lmfc" || fail "DP$np ${*:4}: final checkpoint differs"
  [ "$(numbers "$ref")" = "$(numbers "$out")" ] || fail "DP$np ${*:4}: logged losses differ"
}

# 1. LoRA at 1, 2 and 3 micro-batches a rank
one --grad-accum 4 --out-dir "$dir/a1"
same 2 "$dir/a2" "$dir/a1" --grad-accum 4
same 4 "$dir/a4" "$dir/a1" --grad-accum 4
grep -q "data parallel over 2 ranks, 2 micro-batches a step each" "$dir/a2.log" || fail "no data-parallel line"
[ "$(grep -c "validation loss before" "$dir/a2.log")" = 1 ] || fail "ranks other than 0 reported"
[ "$(wc -l < "$dir/a2/metrics.jsonl")" = "$(wc -l < "$dir/a1/metrics.jsonl")" ] || fail "metrics written twice"
cmp "$dir/a1/adapter/adapter_model.safetensors" "$dir/a2/adapter/adapter_model.safetensors" || fail "PEFT differs"
cmp "$dir/a1/adapter.gguf" "$dir/a2/adapter.gguf" || fail "GGUF adapter differs"
one --grad-accum 6 --out-dir "$dir/b1"
same 2 "$dir/b2" "$dir/b1" --grad-accum 6
for p in fp32 bf16; do # both precisions wherever this runs (auto picks one by the CPU)
  one --grad-accum 4 --precision $p --out-dir "$dir/c1$p"
  same 2 "$dir/c2$p" "$dir/c1$p" --grad-accum 4 --precision $p
done

# 2. every weight, and packed rows
one --full --grad-accum 2 --out-dir "$dir/f1"
same 2 "$dir/f2" "$dir/f1" --full --grad-accum 2
cmp "$dir/f1/model.gguf" "$dir/f2/model.gguf" || fail "--full: model.gguf differs"
# the gradients exchanged layer by layer during the backward: the same bits (1 and 2 micro-batches a rank, LoRA)
same 2 "$dir/o2" "$dir/f1" --full --grad-accum 2 --overlap-grad-reduce
grep -q "gradients reduced during the backward" "$dir/o2.log" || fail "no overlap in the data-parallel line"
one --full --grad-accum 4 --out-dir "$dir/g1"
same 2 "$dir/g2" "$dir/g1" --full --grad-accum 4 --overlap-grad-reduce
same 2 "$dir/a2o" "$dir/a1" --grad-accum 4 --overlap-grad-reduce
one --packing --grad-accum 2 --out-dir "$dir/p1"
same 2 "$dir/p2" "$dir/p1" --packing --grad-accum 2

# 3. resume across the number of ranks
mkdir "$dir/r2" && cp "$dir/a1/ckpt-00000004.lmfc" "$dir/r2/"
mpi 2 "$LMF" finetune "${common[@]}" --grad-accum 4 --out-dir "$dir/r2" --resume 2> "$dir/r2.log" || fail "DP2 resume"
cmp "$dir/a1/ckpt-00000008.lmfc" "$dir/r2/ckpt-00000008.lmfc" || fail "DP2 resumed from one process differs"
grep -q "resuming from .*ckpt-00000004.lmfc (step 4)" "$dir/r2.log" || fail "DP2 resume message"
mkdir "$dir/r1" && cp "$dir/a2/ckpt-00000004.lmfc" "$dir/r1/"
one --grad-accum 4 --out-dir "$dir/r1" --resume
cmp "$dir/a1/ckpt-00000008.lmfc" "$dir/r1/ckpt-00000008.lmfc" || fail "one process resumed from DP2 differs"

# 4. what cannot run says why, and the job ends
mpi 2 "$LMF" finetune "${common[@]}" --grad-accum 3 --out-dir "$dir/x" 2> "$dir/x.log" && fail "--grad-accum 3 on 2 ranks"
grep -q "grad-accum 3 is not a multiple of the 2 ranks" "$dir/x.log" || { cat "$dir/x.log"; fail "grad-accum message"; }
mpi 2 "$LMF" finetune "${common[@]}" --comm self --out-dir "$dir/y" 2> "$dir/y.log" && fail "--comm self under mpirun"
grep -q "every rank would train alone" "$dir/y.log" || { cat "$dir/y.log"; fail "--comm self message"; }

# 5. SIGKILL of rank 1 mid-run: the job ends non-zero within a bounded time, and the last checkpoint resumes
for i in $(seq 0 199); do printf '{"prompt": "What is %d plus %d?", "completion": " %d."}\n' $i $i $((2 * i)); done \
  > "$dir/long.jsonl"
ASAN_OPTIONS="$mpi_asan" mpirun -np 2 --oversubscribe --mca btl self,tcp -x ASAN_OPTIONS "$LMF" finetune "${common[@]}" \
  --data "$dir/long.jsonl" --grad-accum 2 --max-steps 100000 --eval-every 0 --out-dir "$dir/kill" > "$dir/kill.log" 2>&1 &
job=$!
# polled once: the run prunes all but the newest two as it goes (hundreds of steps a second here), so a second look
# can find both gone between ls's listing and its stat
seen=
for _ in $(seq 600); do [ -n "$(ls "$dir/kill"/ckpt-*.lmfc 2> /dev/null)" ] && seen=1 && break; sleep 0.1; done
[ -n "$seen" ] || { kill -9 $job; cat "$dir/kill.log"; fail "no checkpoint"; }
victim=
for p in $(pgrep -P $job); do grep -qz '^OMPI_COMM_WORLD_RANK=1$' /proc/$p/environ 2> /dev/null && victim=$p; done
[ -n "$victim" ] || { kill -9 $job; fail "rank 1 not found among mpirun's children"; }
kill -KILL "$victim"
for _ in $(seq 300); do kill -0 $job 2> /dev/null || break; sleep 0.1; done
if kill -0 $job 2> /dev/null; then kill -9 $job; fail "the job still runs 30 s after rank 1 died"; fi
wait $job && fail "the job exited 0 after rank 1 was killed"
good=$(ls "$dir/kill"/ckpt-*.lmfc | tail -1); step=$(basename "$good" .lmfc); step=$((10#${step#ckpt-}))
mpi 2 "$LMF" finetune "${common[@]}" --data "$dir/long.jsonl" --grad-accum 2 --eval-every 0 --out-dir "$dir/kill" \
  --resume --max-steps $((step + 2)) 2> "$dir/kres.log" || { cat "$dir/kres.log"; fail "resume after the kill"; }
grep -q "resuming from $good" "$dir/kres.log" || { cat "$dir/kres.log"; fail "did not resume from $good"; }
echo "cli_finetune_mpi: all passed"

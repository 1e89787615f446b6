#!/usr/bin/env bash
# llama.cpp reference numbers for bench/infer_bench.sh: runs llama-bench (pp512 = one 512-token prompt batch,
# tg128 = 128 tokens generated one at a time, both from an empty context) on GGUF files and prints one line per
# (file, threads):
#
#   model type threads pp512_tok_s tg128_tok_s pp512_sd tg128_sd
#
# model = file name without .gguf, type = llama.cpp's file type (Q4_1, Q8_0, F16, F32, Q4_K_M, ...), the tok/s
# columns are llama-bench's mean over REPS repetitions and the _sd columns its standard deviation. A first line
# starting with '#' names the columns; `| tail -1` gives the last (file, threads) line.
#
# usage: bench/llamacpp_ref.sh [THREADS REPS] FILE.gguf...   (both or neither; defaults THREADS="1 2" REPS=3)
#        THREADS is a list separated by spaces or commas. env: LLAMA_CPP_DIR (default
#        /work/ref/llama.cpp/build/bin), the folder holding the llama-bench binary.
#
# This script only USES an existing llama.cpp build: the project never commits llama.cpp, a binary built from
# it, or a script that builds it. To make one yourself, outside this repository:
#
#   get the llama.cpp source (github.com/ggml-org/llama.cpp, formerly ggerganov/llama.cpp) into /work/ref/llama.cpp
#   cd /work/ref/llama.cpp
#   cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DGGML_CUDA=OFF -DCMAKE_BUILD_TYPE=Release
#   cmake --build build -j2 --target llama-bench llama-quantize llama-perplexity llama-cli llama-simple \
#         llama-tokenize llama-gguf
#   # binaries in build/bin; CPU backend built with -march=native and OpenMP
#
# AMX: on a CPU with AMX (this machine: amx_int8/amx_bf16/avx512_fp16), GGML_NATIVE turns on ggml's AMX
# path, which copies Q4_0/Q4_1/Q8_0/Q4_K/Q5_K/Q6_K/IQ4_XS and F16 weights into an "AMX" buffer (so peak RSS is
# about file + copy) and, at the commit below, computes WRONG prompt logits for Q4_1 (llama-perplexity on the
# bible held-out text: 394 with AMX vs 23.2 without, first 8 windows; Q8_0, F16 are right; a known upstream bug,
# "AMX backend produces garbage with Q4_0 and Q4_1", llama.cpp PR #16315 of 2025-09, AMX reworked by later PRs).
# Its Q4_1 pp512 speed is therefore not a fair reference. A build without AMX, same instruction
# sets otherwise, gives right numbers for every type and is the one to compare against:
#
#   cmake -B build-noamx -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
#         -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON \
#         -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
#         -DLLAMA_CURL=OFF -DGGML_CUDA=OFF -DCMAKE_BUILD_TYPE=Release
#   cmake --build build-noamx -j2 --target llama-bench llama-cli llama-simple llama-perplexity
#   LLAMA_CPP_DIR=/work/ref/llama.cpp/build-noamx/bin bench/llamacpp_ref.sh "1 2" 5 FILE.gguf
#
# The reference numbers in docs were taken with llama.cpp commit c392e5094deaf2d1a7c18683214f007fad3fe42b
# (tag b4747-1, build 4748, 2025-02-20), gcc 12.2.0, cmake 3.25.1, Debian 12. With that build the converted
# files were made by:
#
#   B=/work/ref/llama.cpp/build/bin M=/work/ref/models/SmolLM2-135M-Instruct
#   $B/llama-quantize --allow-requantize build/models/SmolLM2-135M-Instruct.Q4_1.gguf $M.F32.gguf F32
#   $B/llama-quantize $M.F32.gguf $M.F16.gguf F16
#   $B/llama-quantize $M.F32.gguf $M.Q8_0.gguf Q8_0
#
# and measured by (llama-bench defaults otherwise: -b 2048 -ub 512 -fa 0 -mmp 1 --poll 50, f16 KV cache):
#
#   $B/llama-bench -m FILE -p 512 -n 128 -t 1,2 -r 5 -o json
#
# which is what this script runs (with -r REPS). llama-bench's threads busy-poll (--poll 50), so its 2-thread
# numbers collapse when anything else is using the 2 cores: check `uptime` / /proc/pressure/cpu first.
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
# THREADS and REPS may be left out when the first argument is a GGUF file
if [ $# -ge 1 ] && [[ "$1" == *.gguf ]]; then set -- "1 2" 3 "$@"; fi
[ $# -ge 3 ] || { usage >&2; echo "llamacpp_ref.sh: need THREADS REPS and at least one GGUF file" >&2; exit 2; }

LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-/work/ref/llama.cpp/build/bin}
BENCH="$LLAMA_CPP_DIR/llama-bench"
if [ ! -x "$BENCH" ]; then
  echo "llamacpp_ref.sh: no llama.cpp build: $BENCH is missing or not executable." >&2
  echo "  Build llama.cpp yourself outside this repository (see the header of $0) and set LLAMA_CPP_DIR" >&2
  echo "  to the folder holding llama-bench. This project never builds or ships llama.cpp." >&2
  exit 3
fi
command -v python3 > /dev/null || { echo "llamacpp_ref.sh: python3 is needed to parse llama-bench's JSON" >&2; exit 2; }

THREADS=$(tr ' ' ',' <<< "$1" | tr -s ',' | sed 's/^,//; s/,$//')
REPS=$2
shift 2
[[ "$THREADS" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "llamacpp_ref.sh: bad THREADS '$THREADS'" >&2; exit 2; }
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || { echo "llamacpp_ref.sh: bad REPS '$REPS'" >&2; exit 2; }
for f in "$@"; do [ -f "$f" ] || { echo "llamacpp_ref.sh: no such file: $f" >&2; exit 2; }; done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "# model type threads pp512_tok_s tg128_tok_s pp512_sd tg128_sd"
for f in "$@"; do
  if ! "$BENCH" -m "$f" -p 512 -n 128 -t "$THREADS" -r "$REPS" -o json > "$tmp/out.json" 2> "$tmp/err.txt"; then
    echo "llamacpp_ref.sh: llama-bench failed on $f:" >&2
    tail -5 "$tmp/err.txt" >&2
    exit 1
  fi
  python3 - "$f" "$tmp/out.json" <<'EOF'
import json, os, re, sys
path, out = sys.argv[1], sys.argv[2]
rows = json.load(open(out))
model = re.sub(r'\.gguf$', '', os.path.basename(path))
res = {}
for r in rows:
    # model_type is e.g. "llama ?B Q4_1", "llama ?B all F32", "llama ?B Q4_K - Medium"
    mt = re.sub(r'^\S+ \S+ ', '', r['model_type']).replace('all ', '')
    m = re.match(r'^(\S+) - (Small|Medium|Large)$', mt)
    typ = m.group(1) + '_' + m.group(2)[0] if m else mt.replace(' ', '_')
    test = 'pp' if r['n_prompt'] > 0 and r['n_gen'] == 0 else 'tg' if r['n_gen'] > 0 and r['n_prompt'] == 0 else None
    if test:
        res.setdefault(r['n_threads'], {'type': typ})[test] = (r['avg_ts'], r['stddev_ts'])
for th in sorted(res):
    d = res[th]
    pp, tg = d.get('pp', (float('nan'),) * 2), d.get('tg', (float('nan'),) * 2)
    print(f"{model} {d['type']} {th} {pp[0]:.2f} {tg[0]:.2f} {pp[1]:.2f} {tg[1]:.2f}")
EOF
done

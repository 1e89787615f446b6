#!/usr/bin/env bash
# What llama.cpp's llama-imatrix and `llama-quantize --imatrix` make of the real SmolLM2, for tests/test_imatrix.c
# and tests/cli_quantize.sh to hold `lmforge imatrix` and `lmforge quantize --imatrix` to.
#
#   LLAMA_CPP_DIR=/path/to/llama.cpp/build/bin PYTHON=/path/to/python tests/reference/imatrix_fixtures.sh \
#       build/lmforge [SMOLLM2.Q4_1.gguf]
#
# 1. llama-imatrix over tests/reference/fixtures/kjv_genesis_1-4.txt (`bible gen1:1-gen4:26`, Debian bible-kjv, public
#    domain), 6 windows of 256 tokens (one batch each: llama-imatrix batches several windows together by default and
#    then skips the rows of a split-off micro-batch under 16 rows), on SmolLM2's Q4_1 release dequantized to F32 by lmforge (exact). Of its 210
#    entries, those of layers 0, 14 and 29 are kept (the whole file is 630 KB):
#      fixtures/smollm2_imatrix.gguf   llama.cpp's GGUF imatrix format (as llama-imatrix writes it, fewer entries)
#      fixtures/smollm2_imatrix.dat    the same entries in the legacy format (values sum / count x calls)
#      fixtures/smollm2_imatrix.txt    every entry of the whole file: "name count" (what lmforge must collect)
# 2. llama-quantize --imatrix with the reduced file for every file type of llama_quantize_models.sh, and with the
#    .dat for Q4_K_M: fixtures/llama_quantize_smollm2_imatrix.txt, "TYPE digest" (lq_digest), "Q4_K_M.dat digest".
# Needs: a built lmforge, llama-imatrix and llama-quantize (any llama.cpp build), python3 with numpy and gguf.
set -euo pipefail
LMF=$(realpath "$1")
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SMOL="${2:-$ROOT/build/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
BIN="${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to the bin folder of a llama.cpp build}"
PY=${PYTHON:-python3}
OUT="$ROOT/tests/reference/fixtures"
dir=$(mktemp -d /tmp/lmf_imatrix_fix_XXXXXX)
trap 'rm -rf "$dir"' EXIT
. "$ROOT/tests/reference/llama_quantize_models.sh"

"$LMF" quantize "$SMOL" "$dir/smol.f32.gguf" --type f32 > /dev/null
"$BIN/llama-imatrix" -m "$dir/smol.f32.gguf" -f "$OUT/kjv_genesis_1-4.txt" -c 256 -b 256 -ub 256 --chunks 6 -t 2 \
  -o "$dir/full.gguf" > "$dir/imatrix.log" 2>&1 || { tail "$dir/imatrix.log"; exit 1; }
"$PY" - "$dir/full.gguf" "$OUT" <<'PYEOF'
import struct, sys
import numpy as np
from gguf import GGUFReader, GGUFWriter
src, out = sys.argv[1], sys.argv[2]
r = GGUFReader(src)
t = {x.name: np.array(x.data, dtype=np.float32).reshape(-1) for x in r.tensors}
names = sorted(n[:-len(".in_sum2")] for n in t if n.endswith(".in_sum2"))
with open(f"{out}/smollm2_imatrix.txt", "w") as f:
    for n in names:
        f.write(f"{n} {int(t[n + '.counts'][0])}\n")
keep = [n for n in names if n.split(".")[1] in ("0", "14", "29")]
w = GGUFWriter(f"{out}/smollm2_imatrix.gguf", arch=None)
w.add_string("general.type", "imatrix")
w.add_array("imatrix.datasets", ["kjv_genesis_1-4.txt"])
w.add_uint32("imatrix.chunk_count", 6)
w.add_uint32("imatrix.chunk_size", 256)
for n in keep:
    w.add_tensor(n + ".in_sum2", t[n + ".in_sum2"])
    w.add_tensor(n + ".counts", t[n + ".counts"])
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
with open(f"{out}/smollm2_imatrix.dat", "wb") as f:       # llama-imatrix's save_imatrix_legacy
    f.write(struct.pack("<i", len(keep)))
    for n in keep:
        c = float(t[n + ".counts"][0]); ncall = int(c) // 256
        v = (t[n + ".in_sum2"] / np.float32(c) * np.float32(ncall)).astype(np.float32)
        f.write(struct.pack("<i", len(n)) + n.encode() + struct.pack("<ii", ncall, v.size) + v.tobytes())
    f.write(struct.pack("<i", 6) + struct.pack("<i", len("kjv_genesis_1-4.txt")) + b"kjv_genesis_1-4.txt")
print(f"{len(names)} entries, {len(keep)} kept")
PYEOF
: > "$OUT/llama_quantize_smollm2_imatrix.txt"
for t in $LQ_TYPES; do
  "$BIN/llama-quantize" --imatrix "$OUT/smollm2_imatrix.gguf" "$dir/smol.f32.gguf" "$dir/q.gguf" "$t" 2 > /dev/null 2>&1
  echo "$t $(lq_digest "$LMF" "$dir/q.gguf")" >> "$OUT/llama_quantize_smollm2_imatrix.txt"
done
"$BIN/llama-quantize" --imatrix "$OUT/smollm2_imatrix.dat" "$dir/smol.f32.gguf" "$dir/q.gguf" Q4_K_M 2 > /dev/null 2>&1
echo "Q4_K_M.dat $(lq_digest "$LMF" "$dir/q.gguf")" >> "$OUT/llama_quantize_smollm2_imatrix.txt"
ls -la "$OUT"/smollm2_imatrix.* "$OUT/llama_quantize_smollm2_imatrix.txt"

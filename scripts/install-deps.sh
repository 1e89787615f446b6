#!/usr/bin/env bash
# Installs the Debian packages lmforge needs to build, test and run its demo, if any are missing.
# Usage: scripts/install-deps.sh [extra-package ...]
set -euo pipefail
pkgs=(build-essential cmake pkg-config libcjson-dev libcmocka-dev libpcre2-dev libutf8proc-dev libxxhash-dev libzstd-dev libmicrohttpd-dev python3-venv curl openmpi-bin libopenmpi-dev bible-kjv fortunes dict-devil
      chromium chromium-driver python3-selenium "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to apt-get install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

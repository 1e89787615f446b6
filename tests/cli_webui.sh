#!/usr/bin/env bash
# The chat page of `lmforge serve` (src/serve/webui.html, GET /) in headless Chromium: starts the server on a free
# port with the real SmolLM2-135M-Instruct and runs tests/serve_webui.py against it (a streamed answer, a second
# turn, Stop on a long generation; with --api-key when serve has it). Skipped, exit 0 with a note, when the binary
# has no serve command, when the model has not been fetched, or when chromium / chromedriver / python3-selenium are
# missing (scripts/install-deps.sh installs them).
# Usage: cli_webui.sh path/to/lmforge
#   LMF_SMOLLM2_GGUF=model.gguf          the model (default: build/models' SmolLM2 Q8_0, else its Q4_1)
#   LMF_WEBUI_SCREENSHOT=path.png        keep the screenshot there (docs/img/serve-chat.png is one)
set -uo pipefail
LMF=$1
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="${LMF_SMOLLM2_GGUF:-$ROOT/build/models/SmolLM2-135M-Instruct.Q8_0.gguf}"
[ -n "${LMF_SMOLLM2_GGUF:-}" ] || [ -f "$MODEL" ] || MODEL="$ROOT/build/models/SmolLM2-135M-Instruct.Q4_1.gguf"
dir=$(mktemp -d /tmp/lmf_cli_webui_XXXXXX)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$dir/server.log" ] && tail -20 "$dir/server.log"; exit 1; }

# the page stays one small file that loads nothing from elsewhere (checked even where serve cannot run)
page="$ROOT/src/serve/webui.html"
[ "$(wc -c < "$page")" -lt 20480 ] || fail "webui.html is over 20 KB"
grep -nE '(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/|<(link|img|iframe)\b|<script [^>]*src=|@import|url\(' "$page" && fail "webui.html refers to an external asset"

if ! "$LMF" serve --help > "$dir/help.txt" 2>&1; then
  grep -q "unknown command" "$dir/help.txt" && { echo "SKIP: this lmforge has no serve command yet"; exit 0; }
  cat "$dir/help.txt"; fail "serve --help"
fi
if [ ! -f "$MODEL" ]; then
  echo "SKIP: $MODEL not found (scripts/fetch-smollm2.sh)"
  exit 0
fi
# pyenv and virtualenvs may shadow the python3 that has Debian's selenium
PY=""
for p in python3 /usr/bin/python3; do
  command -v "$p" > /dev/null && "$p" -c "import selenium" 2> /dev/null && { PY=$p; break; }
done
if [ -z "$PY" ] || ! command -v chromedriver > /dev/null || ! { command -v chromium || command -v chromium-browser; } > /dev/null; then
  echo "SKIP: needs chromium, chromium-driver and python3-selenium (scripts/install-deps.sh)"
  exit 0
fi

port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
args=(serve -m "$MODEL" --port "$port")
key=""
if grep -q -- "--api-key" "$dir/help.txt"; then
  key="webui-test-$RANDOM$RANDOM"
  args+=(--api-key "$key")
fi
"$LMF" "${args[@]}" > "$dir/server.log" 2>&1 &
server=$!

url="http://127.0.0.1:$port"
t0=$SECONDS
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ]; do
  kill -0 "$server" 2> /dev/null || { server=""; fail "the server exited before /health answered"; }
  [ $((SECONDS - t0)) -lt 60 ] || fail "/health not 200 within 60 s"
  sleep 0.2
done
curl -s "$url/" > "$dir/page.html" && grep -q "<title>lmforge chat</title>" "$dir/page.html" || fail "GET / is not the chat page"

shot="${LMF_WEBUI_SCREENSHOT:-$dir/serve-chat.png}"
"$PY" "$ROOT/tests/serve_webui.py" "$url" "$shot" ${key:+--api-key "$key"} || fail "serve_webui.py"
kill -0 "$server" 2> /dev/null || { server=""; fail "the server died during the test"; }
echo "cli_webui: ok"

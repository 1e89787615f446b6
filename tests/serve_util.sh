# serve_util.sh — sourced by the `lmforge serve` tests (cli_serve.sh, cli_serve_soak.sh) once they have set $dir
# (their temporary folder): on exit it is removed and the server they started as $pid killed.
pid=""
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$dir/server.log" ] && tail -20 "$dir/server.log"; exit 1; }

# serve_ready LOG [TRIES]: waits until the server started in the background as $pid prints "ready in" to LOG (at most
# TRIES x 0.1 s, default 300) and sets port from its "listening on" line. Returns 1 when the server exits first or
# never gets ready.
serve_ready() {
  local log=$1 tries=${2:-300}
  for _ in $(seq 1 "$tries"); do
    grep -q "ready in" "$log" && break
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log")
  grep -q "ready in" "$log" && [ -n "$port" ]
}

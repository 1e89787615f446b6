# server_util.sh — sourced (from the repository root) by the bench scripts that start a server in the background
# (serve_bench.sh, lora_llamacpp_check.sh): they set SRV_PID; stop_server ends it (TERM, then KILL after 5 s), also
# on exit or interrupt.
SRV_PID=
stop_server() {
  if [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2> /dev/null; then
    kill "$SRV_PID" 2> /dev/null || true
    for _ in $(seq 50); do kill -0 "$SRV_PID" 2> /dev/null || break; sleep 0.1; done
    kill -9 "$SRV_PID" 2> /dev/null || true
    wait "$SRV_PID" 2> /dev/null || true
  fi
  SRV_PID=
}
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

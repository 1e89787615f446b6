#!/usr/bin/env bash
# llama.cpp's `--lora` with the GGUF adapter `lmforge finetune` writes (DIR/adapter.gguf) gives lmforge's greedy
# continuation (issue 12; once, outside CI: it needs a llama.cpp build, see bench/llamacpp_ref.sh).
#
# llama-server runs the base GGUF with `--lora ADAPTER` (and again with `--lora-scaled ADAPTER:SCALE`, and with no
# adapter); each prompt is sent as token ids (what `lmforge tokenize` makes of it, so both sides start from the same
# ids) to /completion with temperature 0, N tokens, return_tokens and the top-2 probabilities. lmforge runs the
# same prompt with `generate` (plain text) or `chat` (one user turn: the ChatML string SmolLM2's template renders,
# with its default system message), `--temp 0 -n N --lora ADAPTER [--lora-scale SCALE]`. The continuations must be
# the same text, and must differ from the base's (or the check proves nothing). A mismatch prints the first token
# where they part and llama.cpp's top-2 probabilities there.
#
# usage: bench/lora_llamacpp_check.sh [ADAPTER.gguf]
#   without ADAPTER: a 40-step LoRA fine-tune (the demo's data and flags) on BASE makes one in $WORK/run.
# env:   BUILD=build  MODELS=$BUILD/models  BASE=$MODELS/SmolLM2-135M-Instruct.F32.gguf  (Q8_0 works too)
#        LLAMA_CPP_DIR=/work/ref/llama.cpp/build/bin (holds llama-server)  WORK=/tmp/lmforge-lora-llamacpp
#        PORT=18093  N=32  SCALE=0.5  THREADS=2  DICT=/usr/share/dictd/devil.dict.dz
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MODELS=${MODELS:-$BUILD/models}
BASE=${BASE:-$MODELS/SmolLM2-135M-Instruct.F32.gguf}
LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-/work/ref/llama.cpp/build/bin}
WORK=${WORK:-/tmp/lmforge-lora-llamacpp}
PORT=${PORT:-18093} N=${N:-32} SCALE=${SCALE:-0.5} THREADS=${THREADS:-2}
DICT=${DICT:-/usr/share/dictd/devil.dict.dz}
LMF=$BUILD/lmforge LLS=$LLAMA_CPP_DIR/llama-server
[ -x "$LLS" ] || { echo "no llama-server in $LLAMA_CPP_DIR (build llama.cpp outside this repository, see" \
                        "bench/llamacpp_ref.sh, and set LLAMA_CPP_DIR)" >&2; exit 2; }
[ -f "$BASE" ] || { echo "missing $BASE" >&2; exit 2; }
cmake --build "$BUILD" -j2 --target lmforge > /dev/null
mkdir -p "$WORK"

ADAPTER=${1:-}
if [ -z "$ADAPTER" ]; then
  ADAPTER=$WORK/run/adapter.gguf
  if [ ! -f "$ADAPTER" ]; then
    python3 scripts/devil-sft.py "$WORK/data" --dict "$DICT" >&2
    echo "lmforge finetune: 40 steps on $(basename "$BASE") ..." >&2
    "$LMF" finetune -m "$BASE" --data "$WORK/data/train.jsonl" --val-data "$WORK/data/val.jsonl" \
      --out-dir "$WORK/run" --batch-size 4 --seq-len 128 --max-steps 40 --eval-every 0 --lr 1e-3 \
      --warmup-steps 5 --threads "$THREADS" 2> "$WORK/finetune.log" || { cat "$WORK/finetune.log" >&2; exit 1; }
  fi
fi
[ -f "$ADAPTER" ] || { echo "no such adapter: $ADAPTER" >&2; exit 2; }

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

# start_server LOG [llama-server adapter flags...]: waits (120 s at most) for GET /health -> 200
start_server() {
  local log=$1
  shift
  LD_LIBRARY_PATH="$LLAMA_CPP_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$LLS" -m "$BASE" "$@" -t "$THREADS" \
    -tb "$THREADS" --parallel 1 -c 512 --host 127.0.0.1 --port "$PORT" --no-webui > "$log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 1200); do
    kill -0 "$SRV_PID" 2> /dev/null || { echo "llama-server exited at start:" >&2; tail -5 "$log" >&2; exit 1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health" 2> /dev/null)" = 200 ] && return 0
    sleep 0.1
  done
  echo "llama-server not healthy after 120 s:" >&2; tail -5 "$log" >&2; exit 1
}

# llama_complete IDS_JSON OUT_JSON: greedy /completion of the token ids
llama_complete() {
  python3 - "$PORT" "$N" "$1" > "$2" << 'EOF'
import json, sys, urllib.request
port, n, ids = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
body = {"prompt": ids, "n_predict": n, "temperature": 0, "top_k": 1, "return_tokens": True, "n_probs": 2,
        "cache_prompt": False, "seed": 0}
req = urllib.request.Request(f"http://127.0.0.1:{port}/completion", json.dumps(body).encode(),
                             {"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=300).read().decode())
EOF
}

Q="Define 'abdication' the way Ambrose Bierce's Devil's Dictionary would."
PLAIN="The Devil's Dictionary defines a politician as"
CHAT=$'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n'"$Q"$'<|im_end|>\n<|im_start|>assistant\n'
printf %s "$PLAIN" | "$LMF" tokenize -t "$BASE" > "$WORK/plain.ids"
printf %s "$CHAT" | "$LMF" tokenize -t "$BASE" --allow-special > "$WORK/chat.ids"

# llama.cpp: three servers (no adapter, --lora, --lora-scaled), two prompts each
for mode in base lora scaled; do
  case $mode in
    base) start_server "$WORK/server-$mode.log" ;;
    lora) start_server "$WORK/server-$mode.log" --lora "$ADAPTER" ;;
    scaled) start_server "$WORK/server-$mode.log" --lora-scaled "$ADAPTER:$SCALE" ;;
  esac
  for p in plain chat; do llama_complete "$(cat "$WORK/$p.ids")" "$WORK/llama-$mode-$p.json"; done
  stop_server
done

# lmforge: the same six
for mode in base lora scaled; do
  flags=()
  [ $mode = lora ] && flags=(--lora "$ADAPTER")
  [ $mode = scaled ] && flags=(--lora "$ADAPTER" --lora-scale "$SCALE")
  "$LMF" generate -m "$BASE" "${flags[@]}" --temp 0 -n "$N" -t "$THREADS" -p "$PLAIN" > "$WORK/lmforge-$mode-plain.txt" 2> /dev/null
  "$LMF" chat -m "$BASE" "${flags[@]}" --temp 0 -n "$N" -t "$THREADS" -p "$Q" > "$WORK/lmforge-$mode-chat.txt" 2> /dev/null
done

python3 - "$WORK" "$LMF" "$BASE" "$ADAPTER" "$SCALE" "$N" << 'EOF'
import json, subprocess, sys
work, lmf, base, adapter, scale, n = sys.argv[1:7]


def decode(ids):
    return subprocess.run([lmf, "tokenize", "-t", base, "--decode"], input=json.dumps(ids), capture_output=True,
                          text=True, check=True).stdout


def encode(text):
    return json.loads(subprocess.run([lmf, "tokenize", "-t", base, "--allow-special"], input=text,
                                     capture_output=True, text=True, check=True).stdout)


ok = True
rows = []
outs = {}
for mode in ("base", "lora", "scaled"):
    for p in ("plain", "chat"):
        ll = json.load(open(f"{work}/llama-{mode}-{p}.json"))
        ids = ll["tokens"]
        ltext = decode(ids)
        mtext = open(f"{work}/lmforge-{mode}-{p}.txt").read()
        # lmforge prints the continuation and a final newline; chat stops at <|im_end|> without printing it
        mtext_c = mtext[:-1] if mtext.endswith("\n") else mtext
        ltext_c = ltext.replace("<|im_end|>", "")
        same = ltext_c == mtext_c or ltext_c.rstrip("\n") == mtext_c.rstrip("\n")
        outs[(mode, p)] = ltext_c
        where = ""
        if not same:
            k = next((i for i, (a, b) in enumerate(zip(ltext_c, mtext_c)) if a != b), min(len(ltext_c), len(mtext_c)))
            # the llama.cpp token that covers character k, and its top-2 probabilities
            acc, tk = 0, None
            for j, t in enumerate(ids):
                acc += len(decode([t]))
                if acc > k:
                    tk = j
                    break
            probs = ll.get("completion_probabilities", [])
            top = probs[tk]["top_probs"] if tk is not None and tk < len(probs) else None
            where = f"; first difference at char {k}, llama.cpp token {tk}, top-2 {top}"
        if mode != "base":
            ok &= same
        rows.append((mode, p, len(ids), same, mtext_c, ltext_c, where))
for mode in ("lora", "scaled"):
    for p in ("plain", "chat"):
        if outs[(mode, p)] == outs[("base", p)]:
            print(f"note: {mode} {p}: the adapter does not change llama.cpp's continuation")
changed = any(outs[(m, p)] != outs[("base", p)] for m in ("lora", "scaled") for p in ("plain", "chat"))
ok &= changed
print(f"| adapter | prompt | llama.cpp tokens | same text as lmforge | continuation (lmforge) |")
print("|---|---|---|---|---|")
for mode, p, nt, same, mt, lt, where in rows:
    label = {"base": "none", "lora": "--lora", "scaled": f"--lora-scaled {scale}"}[mode]
    print(f"| {label} | {p} | {nt} | {'yes' if same else 'NO'} | {json.dumps(mt)[:90]} |")
    if not same:
        print(f"|   | llama.cpp | | | {json.dumps(lt)[:90]}{where} |")
print(f"\nadapter {adapter} on {base}; greedy, {n} tokens; result={'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
EOF

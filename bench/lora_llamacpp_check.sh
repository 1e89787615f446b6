#!/usr/bin/env bash
# llama.cpp's `--lora` with the GGUF adapter `lmforge finetune` writes (DIR/adapter.gguf) gives lmforge's greedy
# continuation (issue 12; once, outside CI: it needs a llama.cpp build, see bench/llamacpp_ref.sh).
#
# llama-server runs the base GGUF with `--lora ADAPTER` (and again with `--lora-scaled ADAPTER:SCALE`, and with no
# adapter); each prompt is sent as token ids (what `lmforge tokenize` makes of it, so both sides start from the same
# ids) to /completion with temperature 0, N tokens, return_tokens and the top-2 probabilities. lmforge runs the
# same prompt with `generate` (plain text) or `chat` (one user turn: the ChatML string SmolLM2's template renders,
# with its default system message), `--temp 0 -n N --lora ADAPTER [--lora-scale SCALE]`. The continuations must be
# the same tokens, up to near-ties (two candidates within TIE nats in llama.cpp's top-2, where float rounding decides:
# then llama.cpp is resumed from lmforge's choice, see compare.py below), and the adapter must change them (or the
# check proves nothing). A difference prints the token where they part and llama.cpp's top-2 log-probabilities.
#
# usage: bench/lora_llamacpp_check.sh [ADAPTER.gguf]
#   without ADAPTER: a 40-step LoRA fine-tune (the demo's data and flags) on BASE makes one in $WORK/run.
# env:   BUILD=build  MODELS=$BUILD/models  BASE=$MODELS/SmolLM2-135M-Instruct.F32.gguf  (Q8_0 works too)
#        LLAMA_CPP_DIR=/work/ref/llama.cpp/build/bin (holds llama-server)  WORK=/tmp/lmforge-lora-llamacpp
#        PORT=18093  N=32  SCALE=0.5  THREADS=2  TIE=0.01 (nats)  DICT=/usr/share/dictd/devil.dict.dz
#        BOS_ID (unset): the id to put before the prompt ids, for a model whose prompts start with BOS as
#        `lmforge generate` adds it (a llama or phi3 vocabulary with add_bos_token: 1); SmolLM2 has none
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

. bench/server_util.sh # SRV_PID, stop_server on exit

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

Q="Define 'abdication' the way Ambrose Bierce's Devil's Dictionary would."
PLAIN="The Devil's Dictionary defines a politician as"
CHAT=$'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n'"$Q"$'<|im_end|>\n<|im_start|>assistant\n'
printf %s "$PLAIN" | "$LMF" tokenize -t "$BASE" | sed "s/^\[/[${BOS_ID:+$BOS_ID, }/" > "$WORK/plain.ids"
printf %s "$CHAT" | "$LMF" tokenize -t "$BASE" --allow-special | sed "s/^\[/[${BOS_ID:+$BOS_ID, }/" > "$WORK/chat.ids"

# lmforge: no adapter, --lora, --lora-scale; both prompts
for mode in base lora scaled; do
  flags=()
  [ $mode = lora ] && flags=(--lora "$ADAPTER")
  [ $mode = scaled ] && flags=(--lora "$ADAPTER" --lora-scale "$SCALE")
  "$LMF" generate -m "$BASE" "${flags[@]}" --temp 0 -n "$N" -t "$THREADS" -p "$PLAIN" > "$WORK/lmforge-$mode-plain.txt" 2> /dev/null
  "$LMF" chat -m "$BASE" "${flags[@]}" --temp 0 -n "$N" -t "$THREADS" -p "$Q" > "$WORK/lmforge-$mode-chat.txt" 2> /dev/null
done

# The comparison, run while llama-server is up: llama.cpp continues the prompt ids greedily and its tokens' bytes
# must spell lmforge's continuation. Where they part, llama.cpp's top-2 log-probabilities at that token say whether
# it is a near-tie (its runner-up spells lmforge's text and is within TIE nats of its choice): then llama.cpp is
# resumed with the runner-up appended (at most 4 times); any other difference fails. So "same" means the same text
# token by token, but for near-ties that float rounding may flip. (Token ids are compared through their bytes:
# `lmforge generate` prints text, and re-tokenizing a generated text need not give the generated ids.)
cat > "$WORK/compare.py" << 'EOF'
import json, sys, urllib.request
work, port, n, plain, mode, tie = sys.argv[1:7]
n, tie = int(n), float(tie)


def complete(ids, n_predict):
    body = {"prompt": ids, "n_predict": n_predict, "temperature": 0, "top_k": 1, "return_tokens": True,
            "n_probs": 2, "cache_prompt": False, "seed": 0}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/completion", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=600).read().decode())


EOT = 2  # SmolLM2's <|im_end|>: ends the chat turn on both sides (lmforge does not print it)
for p in ("plain", "chat"):
    prompt = json.load(open(f"{work}/{p}.ids"))
    text = open(f"{work}/lmforge-{mode}-{p}.txt", "rb").read()  # bytes: a token may end mid-character
    if p == "plain" and text.startswith(plain.encode()):  # generate echoes the prompt
        text = text[len(plain.encode()):]
    if text.endswith(b"\n"):  # and both end their output with a newline
        text = text[:-1]
    want = text
    forced, fbytes, ties, verdict = [], b"", [], None
    while True:
        r = complete(prompt + forced, n - len(forced))
        pos, ntok, resumed = len(fbytes), len(forced), False
        for k, c in enumerate(r["completion_probabilities"]):
            if c["id"] == EOT:
                break
            tb = bytes(c["bytes"])
            if want[pos : pos + len(tb)] == tb:
                pos, ntok = pos + len(tb), ntok + 1
                continue
            top = c.get("top_logprobs", c.get("top_probs"))
            alt = [t for t in top if t["id"] != c["id"] and want[pos:].startswith(bytes(t["bytes"]))]
            if alt and c["logprob"] - alt[0]["logprob"] < tie and len(ties) < 4:
                ties.append({"token": ntok, "llama": [c["id"], c["token"]], "lmforge": [alt[0]["id"], alt[0]["token"]],
                             "gap": c["logprob"] - alt[0]["logprob"]})
                forced = forced + [x["id"] for x in r["completion_probabilities"][:k]] + [alt[0]["id"]]
                fbytes, resumed = want[: pos + len(bytes(alt[0]["bytes"]))], True
            else:
                verdict = (f"DIFFERENT at token {ntok}: llama.cpp {c['token']!r} (top-2 "
                           f"{[(t['token'], round(t['logprob'], 4)) for t in top]}), lmforge continues "
                           f"{want[pos:pos + 12]!r}")
            break
        if resumed:
            continue
        if verdict is None:
            verdict = "same" if pos == len(want) else f"DIFFERENT: llama.cpp ends after {pos} of {len(want)} bytes"
        break
    if verdict == "same" and ties:
        verdict = "same but for near-ties"
    row = {"mode": mode, "prompt": p, "tokens": ntok, "verdict": verdict, "ties": ties,
           "text": text.decode(errors="replace")}
    with open(f"{work}/rows.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
EOF
: > "$WORK/rows.jsonl"
for mode in base lora scaled; do
  case $mode in
    base) start_server "$WORK/server-$mode.log" ;;
    lora) start_server "$WORK/server-$mode.log" --lora "$ADAPTER" ;;
    scaled) start_server "$WORK/server-$mode.log" --lora-scaled "$ADAPTER:$SCALE" ;;
  esac
  python3 "$WORK/compare.py" "$WORK" "$PORT" "$N" "$PLAIN" "$mode" "${TIE:-0.01}"
  stop_server
done

python3 - "$WORK" "$ADAPTER" "$BASE" "$SCALE" "$N" << 'EOF'
import json, sys
work, adapter, base, scale, n = sys.argv[1:6]
rows = [json.loads(l) for l in open(f"{work}/rows.jsonl")]
text = {(r["mode"], r["prompt"]): r["text"] for r in rows}
print("| adapter | prompt | tokens | llama.cpp vs lmforge | lmforge's greedy continuation |")
print("|---|---|---|---|---|")
ok = True
for r in rows:
    label = {"base": "none", "lora": "`--lora`", "scaled": f"`--lora-scaled` {scale}"}[r["mode"]]
    ties = "".join(f"; near-tie at token {t['token']}: llama.cpp {t['llama'][1]!r} vs lmforge {t['lmforge'][1]!r}, "
                   f"{t['gap']:.1e} nats apart" for t in r["ties"])
    print(f"| {label} | {r['prompt']} | {r['tokens']} | {r['verdict']}{ties} | {json.dumps(r['text'])[:100]} |")
    ok &= r["verdict"].startswith("same")
effect = [k for k in text if k[0] != "base" and text[k] != text[("base", k[1])]]
print(f"\nadapter {adapter} on {base}; greedy, at most {n} tokens; the adapter changes {len(effect)} of 4 "
      f"continuations; result={'PASS' if ok and effect else 'FAIL'}")
sys.exit(0 if ok and effect else 1)
EOF

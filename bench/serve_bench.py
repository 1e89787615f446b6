#!/usr/bin/env python3
"""serve_bench.py — load generator for OpenAI-compatible completion servers (lmforge serve, llama.cpp's
llama-server), for bench/serve_bench.sh. Python standard library only: asyncio, raw HTTP/1.1 over asyncio streams,
server-sent events parsed by hand.

For each concurrency level C it sends N requests (default max(2 C, 16)) to POST /v1/completions with
"stream": true and "stream_options": {"include_usage": true}, keeping exactly C in flight (a new one starts when one
ends: closed loop, all C start at once), and prints one markdown table row. Metrics follow vLLM's
benchmarks/benchmark_serving.py (async_request_openai_completions and calculate_metrics):

  TTFT    time from sending the request to the first SSE chunk that carries "choices"
  TPOT    per request (latency - TTFT) / (output_tokens - 1), for requests with more than one output token;
          latency = sending the request -> the end of the stream; output_tokens = usage.completion_tokens
          (the number of chunks with choices when the server sends no usage)
  ITL     the gaps between successive chunks with choices (one chunk = one token on both servers)
  output throughput = all requests' output tokens / wall time from the first request sent to the last one done
  p50 / p99 = numpy.percentile's default (linear interpolation between order statistics)

Prompts: passages of the King James Bible (Debian bible-kjv: `bible gen1:1-rev22:21`, or --text FILE), verse numbers
and chapter headings dropped; request i of a level takes --prompt-words words starting at word i x 1009 (request 0
of every level and of every server gets the same passage, and no two requests of a run share a first word position,
so a prefix cache has nothing to reuse beyond what two different passages share by chance: a few tokens at most).
At 80 words a SmolLM2 prompt is ~100 tokens (the mean is printed). Sampling: temperature 0, max_tokens 128. A text
that goes on (scripture) rarely makes the model stop early; llama-server is also sent "ignore_eos": true (per
--server-kind, see EXTRA below; --extra adds or overrides fields). Requests that returned fewer than max_tokens
tokens are counted in the 'short' column and still enter the metrics (vLLM does the same).

The client shares the machine with the server (2 cores here): it parses ~one small JSON chunk per token, a few
percent of one core at the rates measured, the same for both servers.

usage: bench/serve_bench.py --port P [--server-kind lmforge|llama] [--conc "1 4 8 16 32"] [--requests N]
                            [--json OUT.jsonl] [--label NAME] ...   (--help lists all)
"""
import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time

EXTRA = {
    # llama-server: ignore_eos keeps generating to max_tokens; cache_prompt is its default (true) anyway
    "llama": {"ignore_eos": True},
    # lmforge serve: no field beyond the OpenAI API unless --extra adds one
    "lmforge": {},
}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
STRIDE = 1009  # words between the starts of two requests' passages


def cpu_pressure_total():
    """Microseconds in which some runnable task waited for a CPU (PSI), or None without /proc/pressure."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


def percentile(xs, q):
    """numpy.percentile(xs, q) with the default linear interpolation."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def load_words(path):
    if path:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    else:
        if not shutil.which("bible"):
            sys.exit("serve_bench: no --text FILE and no `bible` to make prompts (apt-get install bible-kjv)")
        text = subprocess.run(["bible", "gen1:1-rev22:21"], check=True, capture_output=True, text=True).stdout
    words = []
    for line in text.splitlines():
        # drop chapter headings ("Genesis 1") and verse numbers ("  2 And the earth ...")
        if re.fullmatch(r"\s*(\d\s+)?[A-Z][A-Za-z ]+ \d+\s*", line):
            continue
        words.extend(re.sub(r"^\s*\d+\s+", "", line).split())
    return words


def make_prompt(words, i, n_words):
    start = (i * STRIDE) % max(1, len(words) - n_words)
    return " ".join(words[start:start + n_words])


class Http:
    """One HTTP/1.1 exchange on its own connection (Connection: close)."""

    def __init__(self, host, port, timeout):
        self.host, self.port, self.timeout = host, port, timeout

    async def request(self, method, path, body=None):
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nConnection: close\r\n"
                f"Accept: text/event-stream, application/json\r\n")
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        writer.write(head.encode() + b"\r\n" + data)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), self.timeout)
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            writer.close()
            raise RuntimeError(f"bad status line {status_line!r}")
        status = int(parts[1])
        headers = {}
        while True:
            line = await asyncio.wait_for(reader.readline(), self.timeout)
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers, reader, writer

    async def body_chunks(self, headers, reader):
        """Yields the body's bytes as they arrive (chunked, Content-Length or until close)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await asyncio.wait_for(reader.readline(), self.timeout)
                if not size_line:
                    return
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return
                chunk = await asyncio.wait_for(reader.readexactly(size + 2), self.timeout)
                yield chunk[:-2]
        elif "content-length" in headers:
            left = int(headers["content-length"])
            while left > 0:
                chunk = await asyncio.wait_for(reader.read(min(left, 65536)), self.timeout)
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
        else:
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), self.timeout)
                if not chunk:
                    return
                yield chunk

    async def get_json(self, path):
        status, headers, reader, writer = await self.request("GET", path)
        buf = b"".join([c async for c in self.body_chunks(headers, reader)])
        writer.close()
        return status, (json.loads(buf) if buf.strip() else None)


async def one_request(http, payload):
    """Sends one streaming completion; returns a dict of its timings and counts."""
    r = {"ok": False, "ttft": 0.0, "latency": 0.0, "output_tokens": 0, "prompt_tokens": 0, "itl": [], "error": ""}
    st = time.perf_counter()
    try:
        status, headers, reader, writer = await http.request("POST", "/v1/completions", payload)
        if status != 200:
            body = b"".join([c async for c in http.body_chunks(headers, reader)])
            writer.close()
            r["error"] = f"HTTP {status}: {body[:200]!r}"
            return r
        buf, last, chunks, usage, done = b"", st, 0, None, False
        async for data in http.body_chunks(headers, reader):
            buf += data.replace(b"\r\n", b"\n")
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                now = time.perf_counter()
                for line in event.split(b"\n"):
                    if not line.startswith(b"data:"):
                        continue
                    d = line[5:].strip()
                    if d == b"[DONE]":
                        done = True
                        continue
                    obj = json.loads(d)
                    if "error" in obj:
                        r["error"] = str(obj["error"])[:200]
                    if obj.get("choices"):
                        if chunks == 0:
                            r["ttft"] = now - st
                        else:
                            r["itl"].append(now - last)
                        last = now
                        chunks += 1
                    if obj.get("usage"):
                        usage = obj["usage"]
        writer.close()
        r["latency"] = time.perf_counter() - st
        r["output_tokens"] = usage.get("completion_tokens", chunks) if usage else chunks
        r["prompt_tokens"] = usage.get("prompt_tokens", 0) if usage else 0
        r["usage"] = usage is not None
        r["ok"] = done and not r["error"] and chunks > 0
        if not done and not r["error"]:
            r["error"] = "stream ended without data: [DONE]"
    except Exception as e:  # noqa: BLE001 - any failure of one request is reported, not fatal
        r["error"] = f"{type(e).__name__}: {e}"
        r["latency"] = time.perf_counter() - st
    return r


async def run_level(http, args, model, words, conc):
    n = args.requests or max(2 * conc, 16)
    payloads = []
    for i in range(n):
        p = {"model": model, "prompt": make_prompt(words, args.first_request + i, args.prompt_words),
             "max_tokens": args.max_tokens, "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True}}
        p.update(EXTRA[args.server_kind])
        p.update(args.extra)
        payloads.append({k: v for k, v in p.items() if v is not None})  # --extra '{"field": null}' drops a field
    # warm-up (not counted): one short request, so the first timed one does not pay for page faults
    w = dict(payloads[0], max_tokens=4, prompt="In the beginning")
    await one_request(http, w)
    results = [None] * n
    nxt = 0

    async def worker():
        nonlocal nxt
        while nxt < n:
            i = nxt
            nxt += 1
            results[i] = await one_request(http, payloads[i])

    p0, t0 = cpu_pressure_total(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    wall, p1 = time.perf_counter() - t0, cpu_pressure_total()
    s = summarize(args, conc, n, results, wall)
    # share of the level's wall time in which some task waited for a core: the server's threads, this client and
    # whatever else runs on the host compete for them (llama-server's threads also spin between batches)
    s["cpu_pressure_pct"] = 100.0 * (p1 - p0) / 1e6 / wall if p0 is not None and p1 is not None and wall > 0 else -1
    with open("/proc/loadavg") as f:
        s["loadavg1"] = float(f.read().split()[0])
    return s


def summarize(args, conc, n, results, wall):
    ok = [r for r in results if r["ok"]]
    out = sum(r["output_tokens"] for r in ok)
    ttft = [r["ttft"] for r in ok]
    tpot = [(r["latency"] - r["ttft"]) / (r["output_tokens"] - 1) for r in ok if r["output_tokens"] > 1]
    itl = [x for r in ok for x in r["itl"]]
    errors = sorted({r["error"] for r in results if r["error"]})
    return {
        "label": args.label, "server": args.server_kind, "conc": conc, "requests": n, "ok": len(ok),
        "failed": n - len(ok), "short": sum(1 for r in ok if r["output_tokens"] < args.max_tokens),
        "no_usage": sum(1 for r in ok if not r.get("usage")),
        "prompt_tokens_mean": (sum(r["prompt_tokens"] for r in ok) / len(ok)) if ok else 0.0,
        "output_tokens": out, "wall_s": wall, "out_tok_s": out / wall if wall > 0 else 0.0,
        "req_s": len(ok) / wall if wall > 0 else 0.0,
        "ttft_p50_ms": 1e3 * percentile(ttft, 50), "ttft_p99_ms": 1e3 * percentile(ttft, 99),
        "tpot_p50_ms": 1e3 * percentile(tpot, 50), "tpot_p99_ms": 1e3 * percentile(tpot, 99),
        "itl_p50_ms": 1e3 * percentile(itl, 50), "itl_p99_ms": 1e3 * percentile(itl, 99),
        "errors": errors[:3],
    }


HEADER = ("| server | conc | requests | ok | short | prompt tok | out tok | wall s | out tok/s | TTFT p50 ms | "
          "TTFT p99 ms | TPOT p50 ms | TPOT p99 ms | ITL p99 ms | CPU pressure % | load |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def row(s):
    return (f"| {s['label']} | {s['conc']} | {s['requests']} | {s['ok']} | {s['short']} | "
            f"{s['prompt_tokens_mean']:.0f} | {s['output_tokens']} | {s['wall_s']:.1f} | {s['out_tok_s']:.1f} | "
            f"{s['ttft_p50_ms']:.0f} | {s['ttft_p99_ms']:.0f} | {s['tpot_p50_ms']:.1f} | {s['tpot_p99_ms']:.1f} | "
            f"{s['itl_p99_ms']:.1f} | {s.get('cpu_pressure_pct', -1):.0f} | {s.get('loadavg1', -1):.1f} |")


def report(path):
    """Side by side: for each model and concurrency the llama-server row and the lmforge row of a --json file
    (the one with the least CPU pressure when a level was run more than once), with lmforge / llama-server
    ratios."""
    rows = {}
    for line in open(path):
        s = json.loads(line)
        k = (s.get("file", s.get("model", "?")), s["conc"], s["server"])
        if k not in rows or s.get("cpu_pressure_pct", 0) <= rows[k].get("cpu_pressure_pct", 0):
            rows[k] = s
    keys = sorted({(m, c) for (m, c, _) in rows}, key=lambda k: (k[0], k[1]))
    print("| model | conc | llama-server out tok/s | lmforge out tok/s | throughput ratio | "
          "llama TTFT p50 / p99 ms | lmforge TTFT p50 / p99 ms | TTFT p99 ratio | "
          "llama TPOT p50 / p99 ms | lmforge TPOT p50 / p99 ms | short or failed (llama, lmforge) | "
          "CPU pressure % (llama, lmforge) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m, c in keys:
        a, b = rows.get((m, c, "llama")), rows.get((m, c, "lmforge"))

        def f(s, fmt, *ks):
            return " / ".join(fmt.format(s[k]) for k in ks) if s else "pending"

        ratio = f"{b['out_tok_s'] / a['out_tok_s']:.2f}x" if a and b and a["out_tok_s"] > 0 else "pending"
        tratio = f"{b['ttft_p99_ms'] / a['ttft_p99_ms']:.2f}x" if a and b and a["ttft_p99_ms"] > 0 else "pending"
        bad = lambda s: f"{s['short']}+{s['failed']}" if s else "-"  # noqa: E731
        psi = lambda s: f"{s.get('cpu_pressure_pct', -1):.0f}" if s else "-"  # noqa: E731
        print(f"| {m} | {c} | {f(a, '{:.1f}', 'out_tok_s')} | {f(b, '{:.1f}', 'out_tok_s')} | {ratio} | "
              f"{f(a, '{:.0f}', 'ttft_p50_ms', 'ttft_p99_ms')} | {f(b, '{:.0f}', 'ttft_p50_ms', 'ttft_p99_ms')} | "
              f"{tratio} | {f(a, '{:.1f}', 'tpot_p50_ms', 'tpot_p99_ms')} | "
              f"{f(b, '{:.1f}', 'tpot_p50_ms', 'tpot_p99_ms')} | {bad(a)}, {bad(b)} | {psi(a)}, {psi(b)} |")


async def main_async(args):
    http = Http(args.host, args.port, args.timeout)
    model = args.model
    if not model:
        try:
            status, models = await http.get_json("/v1/models")
            model = models["data"][0]["id"] if status == 200 and models and models.get("data") else "default"
        except Exception:  # noqa: BLE001 - a server without /v1/models gets a placeholder name
            model = "default"
    words = load_words(args.text)
    if not args.no_header:
        print(HEADER, flush=True)
    out = open(args.json, "a") if args.json else None
    rc = 0
    for conc in args.conc:
        s = await run_level(http, args, model, words, conc)
        s["model"] = model
        if args.file_label:
            s["file"] = args.file_label
        print(row(s), flush=True)
        if s["errors"]:
            print(f"serve_bench: {args.label} conc {conc}: {s['failed']} failed: {s['errors']}", file=sys.stderr)
        if s["short"] or s["no_usage"]:
            print(f"serve_bench: {args.label} conc {conc}: {s['short']} requests returned < {args.max_tokens} "
                  f"tokens, {s['no_usage']} without usage", file=sys.stderr)
        if s["failed"]:
            rc = 1
        if out:
            out.write(json.dumps(s) + "\n")
            out.flush()
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="loopback only [127.0.0.1]")
    ap.add_argument("--port", type=int)
    ap.add_argument("--server-kind", choices=sorted(EXTRA), default="lmforge",
                    help="which extra request fields to send (llama: ignore_eos) [lmforge]")
    ap.add_argument("--extra", type=json.loads, default={}, help="JSON object of request fields to add or override; null drops one, e.g. {\"stream_options\": null}")
    ap.add_argument("--conc", default="1 4 8 16 32", help="concurrency levels [\"1 4 8 16 32\"]")
    ap.add_argument("--requests", type=int, default=0, help="requests per level [max(2 x conc, 16)]")
    ap.add_argument("--first-request", type=int, default=0,
                    help="index of the first request's prompt [0]; a warm-up run takes others (serve_bench.sh WARMUP)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompt-words", type=int, default=80, help="words per prompt [80: ~100 SmolLM2 tokens]")
    ap.add_argument("--text", help="prompt source text [`bible gen1:1-rev22:21`]")
    ap.add_argument("--model", help="the request's model field [the first of GET /v1/models]")
    ap.add_argument("--label", help="first column [server kind]")
    ap.add_argument("--json", help="append one JSON line per level to this file")
    ap.add_argument("--file-label", help="model name stored in the JSON lines (for --report)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds any one read may wait [600]")
    ap.add_argument("--no-header", action="store_true")
    ap.add_argument("--print-prompt", type=int, metavar="I", help="print request I's prompt and exit")
    ap.add_argument("--report", metavar="JSONL", help="print the side-by-side table of a --json file and exit")
    args = ap.parse_args()
    if args.print_prompt is not None:
        print(make_prompt(load_words(args.text), args.print_prompt, args.prompt_words))
        return
    if args.report:
        report(args.report)
        return
    if args.port is None:
        sys.exit("serve_bench: --port is needed")
    if args.host not in LOOPBACK:
        sys.exit("serve_bench: --host must be a loopback address (127.0.0.1, localhost, ::1)")
    args.conc = [int(c) for c in re.split(r"[ ,]+", args.conc.strip()) if c]
    if not args.conc or min(args.conc) < 1 or args.max_tokens < 1 or args.prompt_words < 1:
        sys.exit("serve_bench: bad --conc, --max-tokens or --prompt-words")
    if not isinstance(args.extra, dict):
        sys.exit("serve_bench: --extra must be a JSON object")
    args.label = args.label or args.server_kind
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()

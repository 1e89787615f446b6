#!/usr/bin/env python3
"""Soak test of `lmforge serve` (issue 13): CLIENTS concurrent clients for SECONDS on loopback, each sending request
after request, about 10% of them malformed (broken JSON, wrong types, unknown fields, bad roles, out-of-range
values). Every valid request must be answered completely (a whole reply with a finish_reason and usage, or a stream
that ends with a finish_reason chunk and `data: [DONE]`), every malformed one with 400 and OpenAI's error object;
the server must stay up (/health 200 at the end) and its resident memory must stay under the bound given (the model
and the KV pool are accounted for by the caller: --rss-limit-mib). Standard library only.

usage: serve_soak.py URL PID [--clients 64] [--seconds 60] [--rss-limit-mib N] [--max-tokens 24] [--max-words 40]
                   [--no-chat]
"""
import argparse
import asyncio
import json
import random
import sys
import time


async def http(host, port, method, path, body=None, raw=None):
    """One request on its own connection; returns (status, headers dict, body bytes)."""
    reader, writer = await asyncio.open_connection(host, port)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    if method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    writer.write(head.encode() + b"\r\n" + data)
    await writer.drain()
    resp = await reader.read()
    writer.close()
    head, _, payload = resp.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        out, rest = b"", payload
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0], 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        payload = out
    return status, headers, payload


MALFORMED = [
    (None, b'{"prompt": "hi", "max_tokens": 4'),                       # broken JSON
    ({"prompt": "hi", "max_tokens": "four"}, None),                      # wrong type
    ({"prompt": "hi", "max_tokens": 4, "frobnicate": True}, None),       # unknown field
    ({"prompt": "hi", "temperature": -1}, None),                         # out of range
    ({"messages": [{"role": "wizard", "content": "hi"}]}, None),         # bad role
    ({"messages": "hi"}, None),                                          # wrong type
    ({"prompt": "hi", "n": 3}, None),                                    # unsupported value
    ({"prompt": "hi", "stop": [1, 2]}, None),                            # wrong element type
]


class Stats:
    def __init__(self):
        self.valid = self.valid_ok = self.bad = self.bad_ok = self.tokens = 0
        self.failures = []

    def fail(self, what):
        if len(self.failures) < 20:
            self.failures.append(what)


async def one_valid(host, port, rng, st, max_tokens, max_words, chat_share):
    chat, stream = rng.random() < chat_share, rng.random() < 0.5
    body = {"max_tokens": rng.randint(1, max_tokens), "stream": stream}
    if rng.random() < 0.5:
        body["temperature"] = 0
    else:
        body["temperature"], body["seed"] = 0.8, rng.randint(0, 1 << 30)
    words = " ".join(rng.choice(["the", "king", "said", "unto", "them", "and", "light", "was", "good"])
                     for _ in range(rng.randint(1, max_words)))
    if chat:
        body["messages"] = [{"role": "user", "content": words}]
    else:
        body["prompt"] = words
    if stream:
        body["stream_options"] = {"include_usage": True}
    path = "/v1/chat/completions" if chat else "/v1/completions"
    st.valid += 1
    status, _, payload = await http(host, port, "POST", path, body)
    if status != 200:
        st.fail(f"{path} -> {status}: {payload[:200]!r}")
        return
    if not stream:
        r = json.loads(payload)
        fr = r["choices"][0]["finish_reason"]
        if fr not in ("stop", "length") or r["usage"]["completion_tokens"] > body["max_tokens"]:
            st.fail(f"bad reply {r}")
            return
        st.tokens += r["usage"]["completion_tokens"]
    else:
        events = [l[6:] for l in payload.decode().split("\n") if l.startswith("data: ")]
        if not events or events[-1] != "[DONE]":
            st.fail(f"stream did not end with [DONE]: {payload[-200:]!r}")
            return
        chunks = [json.loads(e) for e in events[:-1]]
        finish = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
        usage = [c for c in chunks if c.get("usage")]
        if len(finish) != 1 or len(usage) != 1:
            st.fail(f"stream: {len(finish)} finish chunks, {len(usage)} usage chunks")
            return
        st.tokens += usage[0]["usage"]["completion_tokens"]
    st.valid_ok += 1


async def one_malformed(host, port, rng, st):
    body, raw = rng.choice(MALFORMED)
    path = "/v1/chat/completions" if body and "messages" in body else "/v1/completions"
    st.bad += 1
    status, _, payload = await http(host, port, "POST", path, body, raw)
    try:
        err = json.loads(payload)["error"]
        ok = status == 400 and err["message"] and "type" in err
    except (ValueError, KeyError, TypeError):
        ok = False
    if ok:
        st.bad_ok += 1
    else:
        st.fail(f"malformed {raw or body} -> {status}: {payload[:200]!r}")


async def client(i, host, port, deadline, st, max_tokens, max_words, chat_share):
    rng = random.Random(1000 + i)
    while time.monotonic() < deadline:
        try:
            if rng.random() < 0.1:
                await one_malformed(host, port, rng, st)
            else:
                await one_valid(host, port, rng, st, max_tokens, max_words, chat_share)
        except (OSError, ValueError, KeyError, IndexError) as e:
            st.fail(f"client {i}: {type(e).__name__}: {e}")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def watch_rss(pid, deadline, peak):
    while time.monotonic() < deadline:
        peak[0] = max(peak[0], rss_mib(pid))
        await asyncio.sleep(0.25)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("pid", type=int)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rss-limit-mib", type=float, default=0)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--max-words", type=int, default=40)
    ap.add_argument("--no-chat", action="store_true", help="completions only (a context too short for a chat template)")
    a = ap.parse_args()
    host, port = a.url.split("//")[1].split(":")
    port = int(port.rstrip("/"))
    st, peak = Stats(), [rss_mib(a.pid)]
    start = peak[0]
    deadline = time.monotonic() + a.seconds
    t0 = time.monotonic()
    await asyncio.gather(watch_rss(a.pid, deadline, peak),
                         *(client(i, host, port, deadline, st, a.max_tokens, a.max_words, 0 if a.no_chat else 0.5)
                           for i in range(a.clients)))
    wall = time.monotonic() - t0
    status, _, _ = await http(host, port, "GET", "/health")
    peak[0] = max(peak[0], rss_mib(a.pid))
    print(f"soak: {a.clients} clients, {wall:.0f} s: {st.valid_ok}/{st.valid} valid requests answered completely "
          f"({st.tokens} tokens, {st.tokens / wall:.0f} tok/s), {st.bad_ok}/{st.bad} malformed refused with 400; "
          f"RSS {start:.0f} MiB at start, peak {peak[0]:.0f} MiB (limit {a.rss_limit_mib or 'none'}); "
          f"/health {status}")
    for f in st.failures:
        print("  failure:", f)
    ok = (not st.failures and st.valid_ok == st.valid and st.bad_ok == st.bad and st.valid > 0 and st.bad > 0
          and status == 200 and (not a.rss_limit_mib or peak[0] <= a.rss_limit_mib))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

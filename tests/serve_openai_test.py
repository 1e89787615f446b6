"""serve_openai_test.py — `lmforge serve` through the official OpenAI Python client, and through raw sockets for
what a client library would never send. Run by tests/cli_serve.sh against a server it started on the real
SmolLM2-135M-Instruct; settings come from the environment:

  LMF_URL    http://127.0.0.1:PORT          LMF_KEY   the server's API key
  LMF_BIN    path to lmforge (references)   LMF_MODEL the model file the server serves
  LMF_PID    the server's pid (its memory is read from /proc)

Each test prints one line; the last line is "N passed, M failed"; the exit code is non-zero on any failure.
"""
import http.client
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse

import openai

URL = os.environ["LMF_URL"]
KEY = os.environ["LMF_KEY"]
LMF = os.environ["LMF_BIN"]
MODEL_PATH = os.environ["LMF_MODEL"]
PID = int(os.environ["LMF_PID"])
HOST, PORT = urllib.parse.urlparse(URL).hostname, urllib.parse.urlparse(URL).port
MODEL = os.path.basename(MODEL_PATH)
SYSTEM = "You are a concise assistant."

client = openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0, timeout=60)


def request(method, path, body=None, headers=None, key=KEY, raw=None, timeout=60):
    """One HTTP request; returns (status, headers dict, body bytes). body: a dict (sent as JSON) or bytes."""
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = "Bearer " + key
    h.update(headers or {})
    data = raw if raw is not None else (json.dumps(body).encode() if isinstance(body, dict) else body)
    c = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    c.close()
    return out


def post(path, body, **kw):
    status, _, data = request("POST", path, body, **kw)
    return status, json.loads(data) if data else None


def tokenize(text, add_special=False, parse_special=True):
    s, j = post("/tokenize", {"content": text, "add_special": add_special, "parse_special": parse_special})
    assert s == 200, (s, j)
    return j["tokens"]


def chatml(messages):
    """SmolLM2's ChatML rendering (with a system message given, the template adds no default one)."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def generate_cli(prompt, *args):
    """`lmforge generate`'s continuation of prompt (its stdout starts with the prompt, ends with a newline)."""
    out = subprocess.run([LMF, "generate", "-m", MODEL_PATH, "-p", prompt, *args], capture_output=True, check=True,
                         text=True, env=dict(os.environ, OMP_NUM_THREADS="1")).stdout
    assert out.startswith(prompt) and out.endswith("\n"), out
    return out[len(prompt):-1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric(name):
    s, _, data = request("GET", "/metrics")
    assert s == 200
    for line in data.decode().splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} missing")


def healthy():
    s, _, data = request("GET", "/health", key=None, timeout=10)
    return s == 200 and json.loads(data) == {"status": "ok"}


# ---- the API through the official client --------------------------------------------------------------------------

def test_models_and_health():
    assert healthy()
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL], models
    assert client.models.retrieve(MODEL).id == MODEL
    s, h, page = request("GET", "/", key=None)
    assert s == 200 and h["content-type"].startswith("text/html") and b"<html" in page.lower()


def test_auth():
    bad = openai.OpenAI(base_url=URL + "/v1", api_key="wrong-" + KEY, max_retries=0)
    for call in (lambda: bad.models.list(),
                 lambda: bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])):
        try:
            call()
            raise AssertionError("accepted a wrong key")
        except openai.AuthenticationError as e:
            assert e.status_code == 401 and e.code == "invalid_api_key", e
    s, h, _ = request("GET", "/v1/models", key=None)
    assert s == 401 and h.get("www-authenticate") == "Bearer"
    s, _, _ = request("GET", "/metrics", key=None)
    assert s == 401
    s, _, _ = request("GET", "/v1/models", headers={"Authorization": "Bearer " + KEY[:-1]}, key=None)
    assert s == 401
    s, _, _ = request("GET", "/v1/models", headers={"Authorization": "Bearer " + KEY + "x"}, key=None)
    assert s == 401


def test_chat():
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=40, logprobs=True)
    c = r.choices[0]
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == MODEL, r
    assert c.message.role == "assistant" and "Paris" in c.message.content, c
    assert c.finish_reason in ("stop", "length"), c
    # usage equals the tokenizer's count of the rendered prompt, and one token per logprob entry
    assert r.usage.prompt_tokens == len(tokenize(chatml(msgs))), (r.usage, len(tokenize(chatml(msgs))))
    assert r.usage.completion_tokens == len(c.logprobs.content), r.usage
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.prompt_tokens_details.cached_tokens >= 0
    if c.finish_reason == "stop":  # ended on <|im_end|>: the text re-tokenizes to the tokens generated
        assert len(tokenize(c.message.content, parse_special=False)) == r.usage.completion_tokens
    # the same request streamed: the same text, role first, finish_reason last, then usage
    chunks = list(client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=40,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant", chunks[0]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == c.message.content, (text, c.message.content)
    assert chunks[-2].choices[0].finish_reason == c.finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    # the second time, the prompt's whole KV blocks come from the prefix cache
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens > 0, chunks[-1].usage
    assert all(ch.usage is None for ch in chunks[:-1]) and all(ch.id == chunks[0].id for ch in chunks)
    # content as a list of text parts reads as the string
    parts = [{"role": "system", "content": SYSTEM},
             {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]
    r2 = client.chat.completions.create(model=MODEL, messages=parts, temperature=0, max_tokens=40)
    assert r2.choices[0].message.content == c.message.content


def test_completion():
    prompt = "The capital of France is"
    ref = generate_cli(prompt, "-n", "12", "--temp", "0")
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0)
    assert r.object == "text_completion" and r.id.startswith("cmpl-"), r
    assert r.choices[0].text == ref, (r.choices[0].text, ref)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 12
    assert r.usage.prompt_tokens == len(tokenize(prompt, add_special=True, parse_special=False))
    streamed = "".join(ch.choices[0].text for ch in client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=12, temperature=0, stream=True) if ch.choices)
    assert streamed == ref, (streamed, ref)
    # a prompt of token ids continues as its text does
    ids = tokenize(prompt, add_special=True, parse_special=False)
    r = client.completions.create(model=MODEL, prompt=ids, max_tokens=12, temperature=0)
    assert r.choices[0].text == ref and r.usage.prompt_tokens == len(ids)
    # max_tokens: default 16 for completions
    r = client.completions.create(model=MODEL, prompt="Once upon a time", temperature=0)
    assert r.usage.completion_tokens <= 16 and (r.choices[0].finish_reason == "stop" or r.usage.completion_tokens == 16)


def test_stop_strings():
    prompt = "The capital of France is"
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=40, temperature=0, stop=".")
    assert r.choices[0].text == " Paris" and r.choices[0].finish_reason == "stop", r.choices[0]
    assert r.choices[0].text == generate_cli(prompt, "-n", "40", "--temp", "0", "--stop", ".")
    # a stop string spanning tokens, in a stream: nothing of it is ever sent
    text = "".join(ch.choices[0].text for ch in client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=40, temperature=0, stop=["is a", "Paris."], stream=True)
        if ch.choices)
    assert "Paris." not in text and "is a" not in text, text
    r = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=40, stop=["Paris"],
                                       messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" not in r.choices[0].message.content and r.choices[0].finish_reason == "stop", r.choices[0]


def test_seed():
    kw = dict(model=MODEL, prompt="Once upon a time", max_tokens=20, temperature=0.9, top_p=0.95)
    a = client.completions.create(seed=7, **kw).choices[0].text
    b = client.completions.create(seed=7, **kw).choices[0].text
    assert a == b, (a, b)
    others = {client.completions.create(seed=s, **kw).choices[0].text for s in (1, 2, 3)}
    assert len(others | {a}) > 1, "different seeds all gave the same text"
    # the engine samples as `lmforge generate` does (same sampler, same seed, same defaults)
    ref = generate_cli("Once upon a time", "-n", "20", "--temp", "0.9", "--seed", "7")
    if a != ref:
        print(f"  note: seeded sample differs from lmforge generate: {a!r} vs {ref!r}")


def test_logit_bias():
    """logit_bias -100 bans the greedy token (the next best comes instead, and the raw logprobs still rank the banned
    one first); +100 forces a token."""
    kw = dict(model=MODEL, prompt="The capital of France is", max_tokens=1, temperature=0, logprobs=2)
    r = client.completions.create(**kw)
    first = tokenize(r.choices[0].text, parse_special=False)
    assert len(first) == 1, (r.choices[0].text, first)
    alt = list(r.choices[0].logprobs.top_logprobs[0])[1]
    banned = client.completions.create(logit_bias={str(first[0]): -100}, **kw).choices[0]
    assert banned.text == alt, (banned.text, alt)
    assert list(banned.logprobs.top_logprobs[0])[0] == r.choices[0].text, banned.logprobs
    forced = tokenize(" Berlin", parse_special=False)[0]
    f = client.completions.create(logit_bias={str(forced): 100}, **kw).choices[0]
    assert tokenize(f.text, parse_special=False) == [forced], f.text


def test_concurrent_invariance():
    """A request gives the same tokens and logprobs alone as beside another one running (batch invariance, through
    the HTTP layer: events are neither lost nor mixed between requests)."""
    kw = dict(model=MODEL, prompt="Once upon a time", max_tokens=24, temperature=0.9, seed=11, logprobs=2)
    alone = client.completions.create(**kw).choices[0]
    results = {}

    def run(name, **extra):
        results[name] = client.completions.create(**dict(kw, **extra)).choices[0]
    threads = [threading.Thread(target=run, args=("a",)),
               threading.Thread(target=run, args=("b",), kwargs={"prompt": "The capital of France is", "seed": 5})]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["a"].text == alone.text, (results["a"].text, alone.text)
    assert results["a"].logprobs.token_logprobs == alone.logprobs.token_logprobs
    assert results["b"].text != alone.text


def test_logprobs():
    msgs = [{"role": "user", "content": "Name a color."}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=8, logprobs=True,
                                       top_logprobs=5)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens > 0
    for e in content:
        tops = e.top_logprobs
        assert len(tops) == 5
        # greedy: the chosen token is the most likely one, with the same logprob
        assert tops[0].token == e.token and abs(tops[0].logprob - e.logprob) < 1e-6, e
        assert all(t.logprob <= 0 for t in tops) and all(x.logprob >= y.logprob for x, y in zip(tops, tops[1:]))
        assert sum(math.exp(t.logprob) for t in tops) <= 1 + 1e-4
        assert bytes(e.bytes).decode("utf-8", "replace") == e.token
    assert "".join(bytes(e.bytes).decode("utf-8", "replace") for e in content) == r.choices[0].message.content
    # a log-softmax of the model: the logprob of the k-th token equals that of the same token as the first one
    # generated after the prompt + the k tokens before it (a prefill instead of decode steps)
    ids = tokenize(chatml([{"role": "system", "content": SYSTEM}] + msgs))
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "system", "content": SYSTEM}] + msgs,
                                       temperature=0, max_tokens=6, logprobs=True, top_logprobs=3)
    gen = r.choices[0].logprobs.content
    k = min(3, len(gen) - 1)
    prefix = [t for e in gen[:k] for t in tokenize(bytes(e.bytes).decode(), parse_special=False)]
    r2 = client.completions.create(model=MODEL, prompt=ids + prefix, max_tokens=1, temperature=0, logprobs=3)
    lp2 = r2.choices[0].logprobs
    assert lp2.tokens[0] == gen[k].token, (lp2.tokens, gen[k])
    assert abs(lp2.token_logprobs[0] - gen[k].logprob) < 2e-3, (lp2.token_logprobs[0], gen[k].logprob)
    for t in gen[k].top_logprobs:
        assert abs(lp2.top_logprobs[0][t.token] - t.logprob) < 2e-3, (lp2.top_logprobs[0], t)
    # completions' shape: one entry per token, offsets counting the tokens' text
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=5, temperature=0,
                                  logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5
    assert lp.text_offset[0] == 0 and "".join(lp.tokens) == r.choices[0].text
    assert all(len(t) == 2 and max(t.values()) == lp.token_logprobs[i] for i, t in enumerate(lp.top_logprobs))


def test_bad_requests():
    m = [{"role": "user", "content": "hi"}]
    cases = [  # (extra fields, param the error must name)
        ({"temperature": 5}, "temperature"), ({"top_p": 0}, "top_p"), ({"top_k": -2}, "top_k"),
        ({"min_p": 2}, "min_p"), ({"seed": "x"}, "seed"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"presence_penalty": 9}, "presence_penalty"), ({"frequency_penalty": -9}, "frequency_penalty"),
        ({"repetition_penalty": -1}, "repetition_penalty"), ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": "a"}, "max_completion_tokens"), ({"logprobs": 3}, "logprobs"),
        ({"logprobs": True, "top_logprobs": 99}, "top_logprobs"), ({"n": 3}, "n"), ({"stream": 1}, "stream"),
        ({"stream_options": {"include_usage": True}}, "stream_options"), ({"user": 5}, "user"),
        ({"logit_bias": {"one": 5}}, "logit_bias.one"), ({"logit_bias": {"1": 500}}, "logit_bias.1"), ({"tools": []}, "tools"), ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}}}}},
         "response_format.json_schema.schema"),
        ({"max_tokens": 100000}, "max_tokens"),
    ]
    for extra, param in cases:
        try:
            client.chat.completions.create(model=MODEL, messages=m, extra_body=extra)
            raise AssertionError(f"{extra} accepted")
        except openai.BadRequestError as e:
            assert e.status_code == 400 and e.param == param, (extra, e.param, e.body)
    for msgs, param in [([], "messages"), ([{"role": "robot", "content": "x"}], "messages[0].role"),
                        ([{"role": "user", "content": 3}], "messages[0].content"),
                        ([{"role": "user", "content": [{"type": "image_url"}]}], "messages[0].content[0].type"),
                        ([{"role": "user"}], "messages[0].content")]:
        try:
            client.chat.completions.create(model=MODEL, messages=msgs)
            raise AssertionError(f"{msgs} accepted")
        except openai.BadRequestError as e:
            assert e.param == param, (msgs, e.param)
    for prompt, param in [("", "prompt"), ([], "prompt"), ([1, 10 ** 7], "prompt[1]"), ([1.5], "prompt[0]"),
                          ("x" * 20000, "prompt")]:
        try:
            client.completions.create(model=MODEL, prompt=prompt, max_tokens=1)
            raise AssertionError(f"prompt {prompt!r:.40} accepted")
        except openai.BadRequestError as e:
            assert e.param == param, (prompt, e.param)
    try:
        client.chat.completions.create(model="gpt-4o", messages=m)
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as e:
        assert e.status_code == 404 and e.param == "model" and e.code == "model_not_found"
    try:
        client.models.retrieve("gpt-4o")
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError:
        pass
    assert request("GET", "/v1/nothing")[0] == 404
    assert request("POST", "/v1/models", {})[0] == 405
    s, h, _ = request("GET", "/v1/chat/completions")
    assert s == 405 and h["allow"] == "POST"


def test_structured_output():
    """response_format: a Pydantic model through the client's parse() (its strict schema: $defs, $ref, enum, anyOf
    with null, additionalProperties false, maxItems), JSON mode, streaming, and /v1/completions: every reply is the
    JSON asked for, even from a 135M model (which left alone lists pets until max_tokens: maxItems bounds it)."""
    from typing import List, Literal, Optional

    import pydantic

    class Pet(pydantic.BaseModel):
        kind: Literal["cat", "dog"]
        name: str

    class Person(pydantic.BaseModel):
        name: str
        age: int
        pets: List[Pet] = pydantic.Field(max_length=2)
        nickname: Optional[str]

    parse = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse
    msgs = [{"role": "user", "content": "Ann is 41 and has a cat called Tom. Describe her as JSON."}]
    r = parse(model=MODEL, messages=msgs, response_format=Person, temperature=0, max_tokens=200)
    c = r.choices[0]
    assert c.finish_reason == "stop", c
    p = c.message.parsed
    assert isinstance(p, Person) and p.name == "Ann" and p.age == 41, c.message.content
    for seed in range(3):  # sampled replies follow the schema too
        r = parse(model=MODEL, messages=msgs, response_format=Person, temperature=1.0, seed=seed, max_tokens=300)
        if r.choices[0].finish_reason == "stop":
            Person.model_validate_json(r.choices[0].message.content)
    m = [{"role": "user", "content": "List three colors."}]
    r = client.chat.completions.create(model=MODEL, messages=m, temperature=0, max_tokens=100,
                                       response_format={"type": "json_object"})
    assert r.choices[0].finish_reason == "stop", r.choices[0]
    assert isinstance(json.loads(r.choices[0].message.content), dict), r.choices[0].message.content
    chunks = client.chat.completions.create(model=MODEL, messages=m, temperature=0, max_tokens=100, stream=True,
                                            response_format={"type": "json_object"})
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == r.choices[0].message.content, (text, r.choices[0].message.content)
    schema = {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}
    r = client.completions.create(model=MODEL, prompt="Two fruits, as a JSON list:", max_tokens=40, temperature=0,
                                  extra_body={"response_format": {"type": "json_schema",
                                                                  "json_schema": {"name": "f", "schema": schema}}})
    v = json.loads(r.choices[0].text)
    assert isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v), r.choices[0].text


def test_tokenize_detokenize():
    text = "Hello, world! <|im_end|> ünïcödé 🙂"
    ids = tokenize(text)
    assert 2 in ids  # <|im_end|> as one token (parse_special defaults to true, as llama-server's)
    assert 2 not in tokenize(text, parse_special=False)
    s, j = post("/detokenize", {"tokens": ids})
    assert s == 200 and j["content"] == text, j
    s, j = post("/tokenize", {"content": 5})
    assert s == 400 and j["error"]["param"] == "content"
    s, j = post("/detokenize", {"tokens": [1, -4]})
    assert s == 400 and j["error"]["param"] == "tokens[1]"


def test_busy():
    """More concurrent requests than slots + queue: the excess gets 429 at once, the rest complete."""
    results = []

    def one():
        try:
            r = client.completions.create(model=MODEL, prompt="Count: 1, 2, 3,", max_tokens=24, temperature=0)
            results.append(r.usage.completion_tokens)
        except openai.RateLimitError as e:
            results.append(429 if e.status_code == 429 else e)
        except Exception as e:  # noqa: BLE001 - reported below
            results.append(e)
    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(x in (24, 429) for x in results), results
    assert 429 in results and 24 in results, results


def test_metrics():
    assert metric('lmforge_http_requests_total{code="200"}') > 0
    assert metric("lmforge_generation_tokens_total") > 0 and metric("lmforge_prompt_tokens_total") > 0
    assert metric("lmforge_time_to_first_token_seconds_count") > 0
    assert metric("lmforge_time_per_output_token_seconds_count") > 0
    assert metric("lmforge_kv_blocks_total") > 0 and metric("lmforge_requests_running") >= 0
    assert metric('lmforge_http_requests_total{code="401"}') > 0 and metric('lmforge_http_requests_total{code="400"}') > 0


# ---- hostile clients ------------------------------------------------------------------------------------------------

def raw(data, read=True, timeout=10):
    """Sends bytes on a fresh connection; returns the status code of the reply (0 when closed without one)."""
    s = socket.create_connection((HOST, PORT), timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return s
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        return int(buf.split(b" ")[1]) if buf.startswith(b"HTTP/1.") else 0
    finally:
        if read:
            s.close()


def head(path, length, extra=b""):
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n").encode() + extra + b"\r\n"


def test_broken_json():
    for body in (b"{", b"{\"messages\": [}", b"\xff\xfe", b"null", b"[]", b"{\"messages\": 1e999}",
                 b"{\"messages\":" + b"[" * 5000 + b"]" * 5000 + b"}"):
        s, j = post("/v1/chat/completions", None, raw=body)
        assert s == 400 and "error" in j, (body[:20], s, j)
    assert raw(b"GARBAGE\r\n\r\n") in (0, 400, 405, 501)
    assert raw(b"GET /health HTTP/9.9\r\n\r\n") in (0, 400, 505)
    assert healthy()


def test_huge_body():
    # declared: refused from the headers, before any of the 100 MB is read
    s = raw(head("/v1/chat/completions", 100_000_000), read=False)
    s.sendall(b"{" + b" " * 65536)
    buf = s.recv(4096)
    s.close()
    assert buf.startswith(b"HTTP/1.1 413"), buf[:60]
    # streamed without a length (chunked): refused once it passes the limit; the sender sees the 413 or a reset
    s = socket.create_connection((HOST, PORT), timeout=10)
    s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
              "Transfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b"%x\r\n" % (1 << 20) + b"x" * (1 << 20) + b"\r\n"
    got = b""
    try:
        for _ in range(100):
            s.sendall(chunk)
        got = s.recv(4096)
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.close()
    assert got == b"" or got.startswith(b"HTTP/1.1 413"), got[:60]
    assert healthy()


def test_header_flood():
    flood = b"".join(b"X-Flood-%d: %s\r\n" % (i, b"y" * 100) for i in range(2000))
    status = raw(b"GET /health HTTP/1.1\r\nHost: x\r\n" + flood + b"\r\n")
    assert status in (0, 413, 431), status
    assert healthy()


def test_stalled_stream():
    """A client that stops reading mid-stream blocks nobody; once the server's socket buffer is full and nothing moves
    for --timeout seconds, the connection is closed and the request cancelled, though the client never closed."""
    # 20 alternatives per token make each event ~1 KB, so the stream fills the socket buffers (the server bounds its
    # send buffer) within a few hundred tokens
    body = json.dumps({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 900, "temperature": 0.8,
                       "seed": 1, "logprobs": 20, "stream": True}).encode()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting, so the window stays small
    s.settimeout(30)
    s.connect((HOST, PORT))
    s.sendall(head("/v1/completions", len(body)) + body)
    assert s.recv(64).startswith(b"HTTP/1.1 200")
    time.sleep(1.0)  # not reading from here on
    t0 = time.time()
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=4, temperature=0)
    assert r.usage.completion_tokens == 4 and time.time() - t0 < 20
    assert healthy()
    deadline = time.time() + 40
    while time.time() < deadline and metric("lmforge_requests_running") > 0:
        time.sleep(0.25)
    assert metric("lmforge_requests_running") == 0, "the stalled stream still runs"
    s.close()


def test_vanished_stream():
    """A streaming client that closes after its first chunk: the request is cancelled, not run to max_tokens."""
    before = metric("lmforge_generation_tokens_total")
    stream = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=900, temperature=0.8,
                                       seed=2, stream=True)
    next(iter(stream))
    stream.close()
    deadline = time.time() + 15
    while time.time() < deadline and metric("lmforge_requests_running") > 0:
        time.sleep(0.2)
    assert metric("lmforge_requests_running") == 0
    assert metric("lmforge_generation_tokens_total") - before < 900  # cancelled requests add nothing


def test_vanished_waiter():
    """A client that closes while its whole (non-streaming) reply is generated: the request is cancelled at the next
    token, not run to max_tokens."""
    before = metric("lmforge_generation_tokens_total")
    body = json.dumps({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 900, "temperature": 0.8,
                       "seed": 3}).encode()
    s = socket.create_connection((HOST, PORT), timeout=10)
    s.sendall(head("/v1/completions", len(body)) + body)
    time.sleep(0.5)
    s.close()
    deadline = time.time() + 15
    while time.time() < deadline and metric("lmforge_requests_running") > 0:
        time.sleep(0.2)
    assert metric("lmforge_requests_running") == 0
    assert metric("lmforge_generation_tokens_total") - before < 900
    deadline = time.time() + 5  # counted once the HTTP thread has closed the connection
    while time.time() < deadline and metric('lmforge_http_requests_total{code="499"}') < 1:
        time.sleep(0.1)
    assert metric('lmforge_http_requests_total{code="499"}') >= 1


def test_idle_connections():
    rss0 = rss_kib(PID)
    socks = []
    for i in range(500):
        s = socket.create_connection((HOST, PORT), timeout=10)
        if i % 2:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # half a request, never finished
        socks.append(s)
    time.sleep(0.5)
    assert healthy(), "no answer with 500 idle connections open"
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=2, temperature=0)
    assert r.usage.completion_tokens == 2
    rss1 = rss_kib(PID)
    for s in socks:
        s.close()
    time.sleep(0.5)
    assert healthy()
    assert rss1 - rss0 < 64 * 1024, f"RSS grew by {rss1 - rss0} KiB with 500 idle connections"


TESTS = [test_models_and_health, test_auth, test_chat, test_completion, test_stop_strings, test_seed, test_concurrent_invariance,
         test_logprobs, test_structured_output, test_logit_bias,
         test_bad_requests, test_tokenize_detokenize, test_busy, test_metrics, test_broken_json, test_huge_body,
         test_header_flood, test_stalled_stream, test_vanished_stream, test_vanished_waiter, test_idle_connections]

if __name__ == "__main__":
    only = sys.argv[1:]
    passed = failed = 0
    for t in TESTS:
        if only and t.__name__ not in only:
            continue
        t0 = time.time()
        try:
            t()
            passed += 1
            print(f"PASS {t.__name__} ({time.time() - t0:.1f} s)", flush=True)
        except Exception:  # noqa: BLE001 - every failure is reported, then the next test runs
            failed += 1
            print(f"FAIL {t.__name__} ({time.time() - t0:.1f} s)", flush=True)
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)

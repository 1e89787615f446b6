"""serve_tools_test.py — tools, tool calls and tool-calling history through `lmforge serve` with the official
OpenAI Python client. Run by tests/cli_serve_tools.sh against the real SmolLM2-135M-Instruct served with Qwen2.5's
chat template (tests/reference/chat_templates/qwen2.5.jinja: ChatML like SmolLM2's own, plus tools and Hermes-style
<tool_call> blocks). Settings from the environment: LMF_URL (http://127.0.0.1:PORT), LMF_FIXTURE (chat_fixtures.json).

SmolLM2 was never taught tools, but greedy decoding after three earlier rounds of calls in the history imitates them
exactly, so the parse of a real model's reply is checked end to end. Each test prints one line; the last line is
"N passed, M failed"; the exit code is non-zero on any failure.
"""
import json
import os
import sys
import traceback
import urllib.request

import openai

URL = os.environ["LMF_URL"]
client = openai.OpenAI(base_url=URL + "/v1", api_key="none", max_retries=0, timeout=120)
MODEL = client.models.list().data[0].id

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def history():
    """Three rounds of user question, tool call (arguments as JSON text, as OpenAI sends them), result, answer."""
    msgs = []
    for i, city in enumerate(["Paris", "London", "Berlin"]):
        msgs += [{"role": "user", "content": f"Weather in {city}?"},
                 {"role": "assistant", "content": None, "tool_calls": [
                     {"id": f"c{i}", "type": "function",
                      "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}]},
                 {"role": "tool", "tool_call_id": f"c{i}", "content": "{\"temperature\": 20}"},
                 {"role": "assistant", "content": "It is 20 degrees."}]
    return msgs


def tokenize(text):
    req = urllib.request.Request(URL + "/tokenize", data=json.dumps({"content": text}).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))["tokens"]


def test_prompt_is_transformers_render():
    """usage.prompt_tokens of a tool round sent in OpenAI's shape = the token count of transformers' render of it
    (fixture qwen2.5/tool_round/gen=1): the tools, the call and its result all reached the prompt."""
    case = next(c for c in json.load(open(os.environ["LMF_FIXTURE"]))["cases"]
                if c["name"] == "qwen2.5/tool_round/gen=1")
    msgs = json.loads(json.dumps(case["vars"]["messages"]))
    for m in msgs:
        for call in m.get("tool_calls", []):
            call["function"]["arguments"] = json.dumps(call["function"]["arguments"])
    r = client.chat.completions.create(model=MODEL, messages=msgs, tools=case["vars"]["tools"], max_tokens=1,
                                       temperature=0)
    want = len(tokenize(case["expected"]))
    assert r.usage.prompt_tokens == want, (r.usage.prompt_tokens, want)
    # without tools in the request the system prompt has no tool list: fewer tokens
    r2 = client.chat.completions.create(model=MODEL, messages=msgs, tools=case["vars"]["tools"], tool_choice="none",
                                        max_tokens=1, temperature=0)
    assert r2.usage.prompt_tokens < want, (r2.usage.prompt_tokens, want)


def ask(city, **kw):
    return client.chat.completions.create(model=MODEL, messages=history() + [
        {"role": "user", "content": f"Weather in {city}?"}], tools=TOOLS, temperature=0, max_tokens=40, **kw)


def test_tool_call_parsed():
    """The model's <tool_call> becomes message.tool_calls: content null, finish_reason tool_calls."""
    r = ask("Rome")
    c = r.choices[0]
    assert c.finish_reason == "tool_calls", c
    assert c.message.content is None, c.message
    assert len(c.message.tool_calls) == 1, c.message
    call = c.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_"), call
    assert call.function.name == "get_weather", call
    assert json.loads(call.function.arguments) == {"city": "Rome"}, call.function.arguments


def test_tool_call_streamed():
    """Streamed, the call arrives as OpenAI streams calls: index, id and name first, then the arguments; the same
    call as without streaming."""
    calls, finish, content = {}, None, ""
    for chunk in ask("Madrid", stream=True):
        if not chunk.choices:
            continue
        d = chunk.choices[0].delta
        content += d.content or ""
        for tc in d.tool_calls or []:
            if tc.index not in calls:
                assert tc.id and tc.function.name, tc
                calls[tc.index] = {"id": tc.id, "name": tc.function.name, "arguments": ""}
            calls[tc.index]["arguments"] += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls", finish
    assert content == "", repr(content)
    assert list(calls) == [0], calls
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {"city": "Madrid"}, calls
    whole = ask("Madrid").choices[0].message.tool_calls[0]
    assert (whole.function.name, whole.function.arguments) == (calls[0]["name"], calls[0]["arguments"])


def test_round_trip():
    """The client's own objects go back as history: the reply's tool call and a tool result render and are answered."""
    r = ask("Oslo")
    msgs = history() + [{"role": "user", "content": "Weather in Oslo?"}, r.choices[0].message.model_dump(
        exclude_none=True), {"role": "tool", "tool_call_id": r.choices[0].message.tool_calls[0].id,
                             "content": "{\"temperature\": 3}"}]
    r2 = client.chat.completions.create(model=MODEL, messages=msgs, tools=TOOLS, temperature=0, max_tokens=12)
    assert r2.choices[0].finish_reason in ("stop", "length", "tool_calls"), r2
    assert r2.usage.prompt_tokens > r.usage.prompt_tokens


def test_tool_choice_none():
    """tool_choice none: nothing is parsed (whatever the model writes is content)."""
    r = ask("Rome", tool_choice="none")
    assert not r.choices[0].message.tool_calls, r.choices[0].message
    assert r.choices[0].finish_reason in ("stop", "length"), r.choices[0]


TWO_TOOLS = TOOLS + [{"type": "function", "function": {
    "name": "get_time", "description": "The time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}, "hours24": {"type": "boolean"}},
                   "required": ["zone", "hours24"]}}}]


def test_tool_choice_required():
    """tool_choice required, without any history to imitate: the reply is constrained to calls of the given tools
    whose arguments follow their schemas; named: a call of that function."""
    q = [{"role": "user", "content": "What is the weather like in Lisbon?"}]
    for kw, names in [({"tool_choice": "required"}, {"get_weather", "get_time"}),
                      ({"tool_choice": "required", "parallel_tool_calls": False}, {"get_weather", "get_time"}),
                      ({"tool_choice": {"type": "function", "function": {"name": "get_time"}}}, {"get_time"})]:
        r = client.chat.completions.create(model=MODEL, messages=q, tools=TWO_TOOLS, temperature=0, max_tokens=120,
                                           **kw)
        c = r.choices[0]
        assert c.message.tool_calls, (kw, c)
        if kw.get("parallel_tool_calls") is False or "function" in kw["tool_choice"]:
            assert c.finish_reason == "tool_calls" and len(c.message.tool_calls) == 1, (kw, c)
        for call in c.message.tool_calls:
            assert call.function.name in names, (kw, call)
            args = json.loads(call.function.arguments)
            need = next(t for t in TWO_TOOLS if t["function"]["name"] == call.function.name)["function"]["parameters"]
            assert set(need["required"]) <= set(args) <= set(need["properties"]), (kw, args)


def test_refusals():
    """What lmforge cannot honour is a 400 naming the field."""
    for kw, param in [({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice.function.name"),
                      ({"tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format")]:
        try:
            ask("Rome", **kw)
            raise AssertionError(f"{kw} accepted")
        except openai.BadRequestError as e:
            assert e.body["param"] == param, e.body
    try:
        client.chat.completions.create(model=MODEL, max_tokens=1, messages=[{"role": "user", "content": [
            {"type": "text", "text": "hi"}, {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}])
        raise AssertionError("audio part accepted")
    except openai.BadRequestError as e:
        assert e.body["param"].startswith("messages[0].content[1]"), e.body
    bad = history()
    bad[1]["tool_calls"][0]["function"]["arguments"] = "{not json"
    try:
        client.chat.completions.create(model=MODEL, messages=bad, max_tokens=1)
        raise AssertionError("bad arguments accepted")
    except openai.BadRequestError as e:
        assert e.body["param"] == "messages[1].tool_calls[0].function.arguments", e.body


def main():
    tests = [v for k, v in globals().items() if k.startswith("test_")]
    failed = 0
    for t in tests:
        try:
            t()
            print(f"ok   {t.__name__}")
        except Exception:
            failed += 1
            print(f"FAIL {t.__name__}")
            traceback.print_exc()
    print(f"{len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


main()

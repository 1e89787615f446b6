#!/usr/bin/env python3
"""Renders real chat templates with transformers' own Jinja setup; tests/test_chat_jinja.c must match byte for byte.

The templates (tests/reference/chat_templates/*.jinja) are the tokenizer_config.json chat_template of SmolLM2 (taken
from its GGUF), Qwen2.5, Qwen3, Llama-3.1, Llama-3.2, Mistral-7B-Instruct-v0.3, Phi-3, Gemma-2, Gemma-3 and Zephyr, plus
small templates that exercise one feature each. Each is rendered by transformers.utils.chat_template_utils.
render_jinja_template (jinja2's ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, transformers' tojson,
raise_exception, strftime_now, namespace), with strftime_now's clock pinned to 2026-12-04 12:00.

Writes tests/reference/fixtures/chat/chat_fixtures.json: a list of {name, template, vars, expected | error,
raised}. vars
are exactly what the template saw (messages, add_generation_prompt, tools, documents, bos_token, eos_token, extras).

Run with /work/venv-peft/bin/python (transformers 5.x, jinja2 >= 3.1.6):
    python tests/reference/make_chat_fixtures.py
--smollm2-ids GGUF also writes fixtures/chat/smollm2_chat_ids.json: the token ids of transformers'
apply_chat_template(tokenize=True) with SmolLM2's tokenizer (its vocabulary, merges and template read from the GGUF
as tests/reference/tokenizer/check_smollm2.py builds it) for each role/content conversation.
"""
import datetime as _dt
import json
import os
import sys

import jinja2

from transformers.utils import chat_template_utils as ctu

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = _dt.datetime(2026, 12, 4, 12, 0, 0)


class _PinnedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return NOW


ctu.datetime = _PinnedDatetime  # strftime_now reads the module's datetime at call time

SPECIALS = {
    "smollm2": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
    "qwen2.5": {"eos_token": "<|im_end|>"},  # no BOS token: bos_token is not passed at all
    "qwen3": {"eos_token": "<|im_end|>"},
    "llama3.1": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama3.2": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "mistral-7b-instruct-v0.3": {"bos_token": "<s>", "eos_token": "</s>"},
    "phi-3": {"bos_token": "<s>", "eos_token": "<|endoftext|>"},
    "gemma-2": {"bos_token": "<bos>", "eos_token": "<eos>"},
    "gemma-3": {"bos_token": "<bos>", "eos_token": "<eos>"},
    "zephyr": {"bos_token": "<s>", "eos_token": "</s>"},
}

SYS = {"role": "system", "content": "You are terse. Answer in one line."}
U1 = {"role": "user", "content": "What's the capital of France?"}
A1 = {"role": "assistant", "content": "Paris.\n"}
U2 = {"role": "user", "content": "  And of \"Italy\"? Ünïcödé ✓ \\n {{ not a tag }}  "}
A_THINK = {"role": "assistant", "content": "<think>\nThe user asks about France.\n</think>\n\nParis."}
A_REASON = {"role": "assistant", "content": "Rome.", "reasoning_content": "Italy's capital is Rome."}
TOOL_CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "call12345", "type": "function",
     "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]}
TOOL_RESULT = {"role": "tool", "tool_call_id": "call12345", "content": "{\"temperature\": 21.5}"}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {
        "type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}]

CONVERSATIONS = {
    "system": [SYS, U1, A1, U2],
    "nosystem": [U1, A1, U2],
    "single": [U1],
    "ends_with_assistant": [SYS, U1, A1],
    "think": [U1, A_THINK, U2],
    "reasoning_field": [U1, A_REASON],
    "assistant_first": [A1, U1],
    "tool_round": [U1, TOOL_CALL, TOOL_RESULT],
}

# Small templates, one feature each (rendered with messages = the "system" conversation).
FEATURES = {
    "ws_control": "a  {%- if true -%}  b  {%- endif -%}  c\n  {{- 'd' -}}  \n e {#- c -#} f {# keep #} g",
    "trim_lstrip": "x\n    {% if true %}\n    y\n    {% endif %}\n  {{ 'z' }}\n{% for i in [1,2] %}\n  {{ i }}\n{% endfor %}\n",
    "plus_modifiers": "a\n  {%+ if true +%}\nb\n  {%+ endif %}\nc",
    "loop_vars": "{% for m in messages %}{{ loop.index0 }}{{ loop.index }}{{ loop.revindex }}{{ loop.first }}"
                 "{{ loop.last }}{{ loop.length }}[{{ loop.previtem.role if loop.previtem is defined }}]"
                 "{% endfor %}",
    "slices": "{{ messages[1:]|length }}{{ messages[::-1][0].role }}{{ messages[-1].role }}{{ 'abcdef'[1:4] }}"
              "{{ 'abcdef'[::2] }}{{ 'abcdef'[-2:] }}{{ [1,2,3,4][3:0:-1] }}{{ 'héllo'[1] }}{{ 'héllo'|length }}",
    "arith": "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2.5 }} "
             "{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 3 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 10 / 4 }} {{ -(3) }} {{ 3 - -2 }}",
    "compare": "{{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1,2] == [1,2] }} {{ 'ell' in 'hello' }} {{ 3 not in [1,2] }} "
               "{{ 'role' in messages[0] }} {{ not 0 }} {{ none is none }} {{ 1 if false }}|{{ 0 or 'x' }} "
               "{{ 1 and 2 }} {{ [] or {} }}",
    "str_repr": "{{ [1, 'a', none, true, 2.0, {'k': 'v'}] }} {{ {'a': [1, (2, 3)]} }} {{ \"it's\" }} {{ ['it\\'s'] }}"
                " {{ (1,) }} {{ none }} {{ undefined_name }}|{{ 1.5e-7 }}",
    "filters": "{{ '  x  '|trim }}|{{ 'Hello'|upper }}{{ 'Hello'|lower }}|{{ [3,1,2]|first }}{{ [3,1,2]|last }}|"
               "{{ missing|default('dflt') }}{{ ''|default('e', true) }}|{{ ['a','b']|join('-') }}|"
               "{{ 'a-b-a'|replace('a', 'x') }}|{{ 42|string|length }}|{{ 'hello world'|title }}|"
               "{{ 'hello'|capitalize }}|{{ [1,2]|list }}|{{ 'ab'|list }}|{{ -3|abs }}|{{ '12'|int + 1 }}|"
               "{{ messages|map(attribute='role')|join(',') }}|{{ messages|selectattr('role', 'equalto', 'user')|list|length }}|"
               "{{ messages|rejectattr('role', 'eq', 'user')|map(attribute='role')|list }}|{{ [1,2,3,4]|select('odd')|list }}|"
               "{{ [1,0,2]|reject|list }}|{{ 'abc'|reverse }}|{{ {'b': 1, 'a': 2}|items|list }}|{{ 'x\\ny'|indent(2, true) }}",
    "tojson": "{{ messages[0]|tojson }}|{{ {'a': [1, 2.5, none, true], 'b': 'é\"\\n\\t</x>'}|tojson }}|"
              "{{ {'a': {'b': [1, 2]}, 'c': []}|tojson(indent=2) }}|{{ 'x'|tojson }}|{{ [1,2]|tojson(separators=(',', ':')) }}",
    "methods": "{{ ' a b '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '\\n\\na'.lstrip('\\n') }}|{{ 'a\\n'.rstrip() }}|"
               "{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'a,b,,c'.split(',') }}|"
               "{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'aXbX'.replace('X', '-') }}|{{ 'Ab'.upper() }}"
               "{{ 'Ab'.lower() }}|{{ messages[0].get('role') }}{{ messages[0].get('nope', 'dflt') }}|"
               "{% for k, v in messages[0].items() %}{{ k }}={{ v|length }};{% endfor %}|{{ {'a': 1}.keys()|list }}",
    "namespace_set": "{% set ns = namespace(count=0, names=[]) %}{% for m in messages %}{% set ns.count = ns.count + 1 %}"
                     "{% set ns.names = ns.names + [m.role] %}{% set local = m.role %}{% endfor %}{{ ns.count }}"
                     "{{ ns.names }}[{{ local }}]{% set a, b = 1, 2 %}{{ a + b }}{% set blk %}in {{ a }}{% endset %}{{ blk }}"
                     "{% set d = dict(x=1, y='z') %}{{ d.y }}{{ d['x'] }}",
    "tests": "{{ messages is iterable }}{{ messages[0] is mapping }}{{ 'a' is string }}{{ 1 is number }}"
             "{{ 1 is integer }}{{ 1.0 is float }}{{ none is none }}{{ x is defined }}{{ x is undefined }}"
             "{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ false is false }}{{ 0 is false }}"
             "{{ true is true }}{{ 1 is boolean }}{{ 'a' is in 'cat' }}{{ 2 is gt 1 }}{{ messages is not none }}",
    "macro": "{% macro render(m, prefix='>') %}{{ prefix }}{{ m.role }}:{{ m.content|trim }}{% endmacro %}"
             "{% for m in messages %}{{ render(m) }}{{ render(m, prefix='#') }}|{% endfor %}",
    "loop_controls": "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 4 %}{% break %}"
                     "{% endif %}{{ i }}{% endfor %}{% for x in [] %}no{% else %}empty{% endfor %}"
                     "{% for m in messages if m.role == 'user' %}{{ loop.index }}/{{ loop.length }} {% endfor %}"
                     "{{ range(3)|list }}{{ range(1, 10, 3)|list }}",
    "strings": "{{ 'a\\tb\\x41\\u00e9\\\\' }}|{{ \"dq 'sq'\" }}|{{ 'adj' 'acent' }}|{{ '%}' }}{{ '}}' }}|"
               "{% raw %}{{ raw }}{% endraw %}|{{ {'k': {'n': 1}}['k']['n'] }}",
    "python_values": "{{ 1e3 }} {{ 1e15 }} {{ 1e16 }} {{ 1e-5 }} {{ 0.0001 }} {{ 123456789.125 }} {{ -0.0 }} "
                     "{{ 'héllo wörld ǅ'.upper() }} {{ 'ÉCOLE'|lower }} {{ 'élan vital'|title }} {{ 'ébc'|capitalize }} "
                     "{{ [1] == (1,) }} {{ (1, 2) + (3,) }} {{ (1,) * 2 }} {{ {'a': nothing} }} {{ 2 ** 3 }} "
                     "{{ 2.0 is even }} {{ 3 is lower }} {{ 'abc' is lower }} {{ 'Éa' is upper }} {{ [1, 2, 1].count(1) }}",
    "macro_closure": "{% for m in messages %}{% macro show() %}{{ loop.index }}:{{ m.role }}{% endmacro %}"
                     "{{ show() }} {% endfor %}",
    "generators": "{{ messages|selectattr('role', 'eq', 'tool')|list|length }} "
                  "{% if messages|selectattr('role', 'eq', 'tool') %}truthy{% endif %} "
                  "{{ messages|map(attribute='role')|first }} {{ 5|items is defined }}",
    "date": "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now is defined }}",
    "generation": "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}"
                  "{% endgeneration %}{% else %}{{ m.role }}{% endif %}{% endfor %}",
    "raise": "{% if messages|length > 1 %}{{ raise_exception('too many: ' ~ messages|length) }}{% endif %}ok",
    "undefined_attr_error": "{{ nothing.attr }}",
    "type_error": "{{ 'a' + 1 }}",
    "trailing_newline": "x\n",
    "crlf": "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\r\n\r\n",
}


def render(template, vars_):
    v = dict(vars_)
    messages = v.pop("messages")
    tools = v.pop("tools")
    v.pop("documents")
    gen = v.pop("add_generation_prompt")
    out, _ = ctu.render_jinja_template(conversations=[messages], tools=tools, chat_template=template,
                                       add_generation_prompt=gen, **v)
    return out[0]


def case(name, template, vars_):
    c = {"name": name, "template": template, "vars": vars_}
    try:
        c["expected"] = render(template, vars_)
    except Exception as e:  # the template raised (raise_exception: a plain TemplateError), or jinja2 refused it
        c["error"] = str(e)
        c["raised"] = type(e) is jinja2.exceptions.TemplateError
    return c


def smollm2_ids(gguf):
    from transformers import PreTrainedTokenizerFast
    sys.path.insert(0, os.path.join(HERE, "tokenizer"))
    import check_smollm2
    _, kv = check_smollm2.read_gguf_vocab(gguf)
    tok = PreTrainedTokenizerFast(tokenizer_object=check_smollm2.hf_from_gguf(kv), bos_token="<|im_start|>",
                                  eos_token="<|im_end|>")
    tok.chat_template = kv["tokenizer.chat_template"]
    cases = []
    for name, conv in CONVERSATIONS.items():
        if any(set(m) != {"role", "content"} for m in conv):
            continue
        for gen in (False, True):
            ids = tok.apply_chat_template(conv, tokenize=True, add_generation_prompt=gen)
            if not isinstance(ids, list):
                ids = ids["input_ids"]
            cases.append({"name": f"{name}/gen={int(gen)}", "messages": conv, "add_generation_prompt": gen,
                          "ids": ids})
    out = os.path.join(HERE, "fixtures", "chat", "smollm2_chat_ids.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False)
        f.write("\n")
    print(f"{out}: {len(cases)} conversations")


def main():
    if "--smollm2-ids" in sys.argv:
        smollm2_ids(sys.argv[sys.argv.index("--smollm2-ids") + 1])
    cases = []
    for fn in sorted(os.listdir(os.path.join(HERE, "chat_templates"))):
        model = fn[: -len(".jinja")]
        if model not in SPECIALS:  # another script's template (qwen3_generation: make_generation_mask_fixtures.py)
            continue
        template = open(os.path.join(HERE, "chat_templates", fn), encoding="utf-8").read()
        for conv_name, conv in CONVERSATIONS.items():
            if conv_name in ("tool_round",) and model not in ("qwen2.5", "qwen3", "llama3.1", "llama3.2"):
                continue
            for gen in (False, True):
                extras_list = [{}]
                if model == "qwen3":
                    extras_list = [{}, {"enable_thinking": False}, {"enable_thinking": True}]
                for extras in extras_list:
                    tools = TOOLS if conv_name == "tool_round" else None
                    vars_ = {"messages": conv, "add_generation_prompt": gen, "tools": tools, "documents": None,
                             **SPECIALS[model], **extras}
                    tag = "".join(f",{k}={v}" for k, v in extras.items())
                    cases.append(case(f"{model}/{conv_name}/gen={int(gen)}{tag}", template, vars_))
    for fname, template in FEATURES.items():
        vars_ = {"messages": CONVERSATIONS["system"], "add_generation_prompt": True, "tools": None, "documents": None,
                 "bos_token": "<s>", "eos_token": "</s>"}
        cases.append(case(f"feature/{fname}", template, vars_))
    out = os.path.join(HERE, "fixtures", "chat", "chat_fixtures.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"now": [NOW.year, NOW.month, NOW.day, NOW.hour, NOW.minute, NOW.second], "cases": cases}, f,
                  ensure_ascii=False, indent=1)
        f.write("\n")
    n_err = sum("error" in c for c in cases)
    print(f"{out}: {len(cases)} cases ({n_err} raise)")


if __name__ == "__main__":
    sys.exit(main())

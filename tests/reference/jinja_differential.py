#!/usr/bin/env python3
"""jinja_differential.py — random templates rendered by jinja2 (as transformers configures it) and by lmforge's
interpreter (src/model/jinja*.c), compared. Not part of the test suite: a bug finder. Differences that remain by
design (docs/chat-templates.md): generators printed or consumed lazily, Python's % formatting, tuple subscripts.

    /work/venv-peft/bin/python tests/reference/jinja_differential.py [SEED [COUNT]]

Builds tests/reference/jinja_render.c against build/liblmforge.a into /tmp/lmf_jinja_render first.
"""
import os
import json, random, subprocess, sys
from transformers.utils import chat_template_utils as ctu
R = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
VARS = {"messages": [{"role": "system", "content": " S\n"}, {"role": "user", "content": "hé 'q' \"d\""},
                     {"role": "assistant", "content": "<think>r</think>\n\nA", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1, "b": [1.5, None]}}}]}],
        "add_generation_prompt": True, "tools": None, "documents": None, "bos_token": "<s>", "eos_token": "</s>",
        "n": 3, "f": 2.5, "s": "  Hello World  ", "d": {"k": "v", "n": 0, "l": [1, 2]}, "e": [], "b": False}
NAMES = ["messages", "n", "f", "s", "d", "e", "b", "bos_token", "undef", "messages[0]", "messages[-1]", "d.l", "d['k']",
         "messages[2].tool_calls[0].function", "messages[1].content", "m", "loop.index", "ns.x"]
STRS = ["''", "'a'", "'\\n'", "\"q'\"", "'<think>'", "'  x  '", "'a,b'", "'é'", "'%}'"]
def lit():
    k = R.randrange(8)
    if k == 0: return str(R.randrange(-3, 10))
    if k == 1: return R.choice(["0.5", "2.0", "1e3", "1.25", "-0.0", "3.14159"])
    if k == 2: return R.choice(STRS)
    if k == 3: return R.choice(["true", "false", "none", "True", "None"])
    if k == 4: return "[" + ", ".join(expr(2) for _ in range(R.randrange(3))) + "]"
    if k == 5: return "{" + ", ".join(f"{R.choice(STRS)}: {expr(2)}" for _ in range(R.randrange(3))) + "}"
    if k == 6: return "(" + expr(2) + ",)"
    return R.choice(NAMES)
FILTERS = ["trim", "length", "tojson", "string", "upper", "lower", "first", "last", "default('D')", "default('D', true)",
           "join(',')", "join", "replace('a', 'b')", "list", "reverse", "capitalize", "title", "int", "float", "abs",
           "items", "select", "reject", "map('string')", "map(attribute='role')", "selectattr('role')",
           "rejectattr('role', 'equalto', 'user')", "tojson(indent=2)", "indent(2)", "count", "d", "trim('x ')"]
TESTS = ["defined", "undefined", "none", "string", "number", "integer", "float", "mapping", "iterable", "sequence",
         "boolean", "true", "false", "odd", "even", "divisibleby 2", "eq 3", "in [1, 'a']", "lower", "upper", "sameas none"]
METHODS = ["strip()", "lstrip()", "rstrip('\\n')", "split()", "split(',')", "split('a', 1)", "startswith('h')",
           "endswith(('d', 'x'))", "replace('l', 'L')", "upper()", "lower()", "items()", "get('k')", "get('z', 1)",
           "keys()", "values()", "title()", "find('o')", "count('l')"]
OPS = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">=", "in", "not in", "and", "or", "**"]
def expr(depth=3):
    if depth <= 0: return lit()
    k = R.randrange(10)
    if k < 3: return lit()
    if k == 3: return f"({expr(depth-1)} {R.choice(OPS)} {expr(depth-1)})"
    if k == 4: return f"{expr(depth-1)}|{R.choice(FILTERS)}"
    if k == 5: return f"({expr(depth-1)} is {'not ' if R.random() < .3 else ''}{R.choice(TESTS)})"
    if k == 6: return f"{R.choice(NAMES + STRS)}.{R.choice(METHODS)}"
    if k == 7: return f"{R.choice(['messages', 's', 'd.l', 'e', STRS[6]])}[{R.choice(['', '1', '-1'])}:{R.choice(['', '2', '-1'])}{R.choice(['', ':-1', ':2'])}]"
    if k == 8: return f"({expr(depth-1)} if {expr(depth-1)} else {expr(depth-1)})"
    return f"not {expr(depth-1)}"
WS = ["", " ", "\n", "  \n  ", "\n\n", "\t"]
def tag(body, kind="%"):
    l = R.choice(["", "-", "+"] if kind == "%" else ["", "-"]); r = R.choice(["", "-"])
    return ("{%" + l + " " + body + " " + r + "%}") if kind == "%" else ("{{" + l + " " + body + " " + r + "}}")
def stmts(depth=2):
    out = []
    for _ in range(R.randrange(1, 4)):
        k = R.randrange(7) if depth > 0 else R.choice([0, 1, 5])
        out.append(R.choice(WS) + R.choice(["", "x", "y z"]) + R.choice(WS))
        if k == 0: out.append(tag(expr(), "{"))
        elif k == 1: out.append(tag(f"set {R.choice(['m', 'v'])} = {expr()}"))
        elif k == 2: out.append(tag(f"if {expr()}") + stmts(depth-1) + (tag("else") + stmts(depth-1) if R.random() < .5 else "") + tag("endif"))
        elif k == 3: out.append(tag(f"for m in {R.choice(['messages', 'd.l', 's', 'd', 'e', 'range(3)', 'messages[::-1]'])}") + stmts(depth-1) + tag("endfor"))
        elif k == 4: out.append(tag("set ns = namespace(x=0)") + tag(f"set ns.x = {expr(1)}") + tag("{ ns.x }", "{") if False else tag("set ns = namespace(x=0)") + tag(f"set ns.x = {expr(1)}") + tag("ns.x", "{"))
        elif k == 5: out.append("{# c #}" if R.random() < .5 else "{#- c -#}")
        else: out.append(tag(f"macro mc(a, b='B')") + stmts(depth-1) + "{{ a }}{{ b }}" + tag("endmacro") + tag(f"mc({expr(1)})", "{"))
    return "".join(out)
def py(t):
    try:
        v = dict(VARS); msgs = v.pop("messages"); tools = v.pop("tools"); v.pop("documents"); g = v.pop("add_generation_prompt")
        return {"ok": ctu.render_jinja_template(conversations=[msgs], tools=tools, chat_template=t, add_generation_prompt=g, **v)[0][0]}
    except Exception as e:
        return {"err": f"{type(e).__name__}: {e}"}
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = "/tmp/lmf_jinja_render"
subprocess.run(["cc", "-O1", "-I", f"{ROOT}/include", "-I", f"{ROOT}/src", f"{ROOT}/tests/reference/jinja_render.c",
                f"{ROOT}/build/liblmforge.a", "-lcjson", "-lm", "-lpcre2-8", "-lutf8proc", "-fopenmp", "-lxxhash",
                "-lzstd", "-o", BIN], check=True)
p = subprocess.Popen([BIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
bad = 0; both_ok = 0
for i in range(N):
    t = stmts()
    a = py(t)
    p.stdin.write(json.dumps({"t": t, "v": VARS}) + "\n"); p.stdin.flush()
    b = json.loads(p.stdout.readline())
    if any(w in json.dumps(a) for w in ("generator object", "dict_values", "dict_keys", "dict_items", "reverseiterator")):
        continue
    if "ok" in a and "err" in b and "is not iterable" in b["err"] and any(f in t for f in ("select", "reject", "map", "items")): continue
    if ("ok" in a) != ("ok" in b) or a.get("ok") != b.get("ok"):
        bad += 1
        if bad <= 12: print("MISMATCH", repr(t), "\n   py:", repr(a)[:300], "\n   c: ", repr(b)[:300])
    elif "ok" in a: both_ok += 1
print(f"{N} templates, {both_ok} rendered by both equally, {bad} mismatches")

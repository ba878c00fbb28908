#!/usr/bin/env python3
"""Renders every stored chat template for a set of conversations with Python jinja2, configured the
way Hugging Face transformers configures it, and writes tests/tokenizer/chat_templates/cases.json.

The expected outputs in cases.json come only from this script (never from loom). Run it from the
repository root:  python3 tests/reference/make_chat_template_cases.py
"""
import json
import os
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE_DIR = os.path.normpath(os.path.join(HERE, "..", "tokenizer", "chat_templates"))


# --- the environment exactly as transformers.utils.chat_template_utils._compile_jinja_template builds it
# (AssistantTracker, transformers' {% generation %} extension, is left out: no stored template uses it).
def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return datetime.now().strftime(format)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


# bos/eos strings of each model's tokenizer (Qwen2.5 has no bos token; its template never reads one).
TEMPLATES = {
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "qwen2.5": ("", "<|im_end|>"),
    "llama3.1": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.2": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama2": ("<s>", "</s>"),
    "mistral-v0.2": ("<s>", "</s>"),
    "phi3": ("<s>", "<|endoftext|>"),
    "gemma2": ("<bos>", "<eos>"),
    "deepseek-v3": ("<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"),
}

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer in \"plain\" text; don't use markdown."}
CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "Hello!"}],
    "system_user": [SYSTEM, {"role": "user", "content": "What is 2 + 2?"}],
    "multi_turn": [
        {"role": "user", "content": "Hi, who are you?"},
        {"role": "assistant", "content": "I'm an assistant.\nHow can I help?"},
        {"role": "user", "content": "Tell me a joke about 'quotes' and \"double quotes\"."},
    ],
    "system_multi_turn": [
        SYSTEM,
        {"role": "user", "content": "  Leading and trailing spaces  "},
        {"role": "assistant", "content": "\nNoted.\n\n"},
        {"role": "user", "content": "Line one\nLine two\n\tTabbed"},
        {"role": "assistant", "content": "Done."},
    ],
    "non_ascii": [
        {"role": "user", "content": "Ça va? 你好，世界！ Γειά σου κόσμε 👋🏽 — naïve café"},
        {"role": "assistant", "content": "Très bien, merci ! 😊 こんにちは"},
        {"role": "user", "content": "Ünïcödé\u00a0nbsp and zero\u200bwidth, backslash \\n stays"},
    ],
    "extra_keys": [
        {"role": "user", "content": "Ping", "name": "alice", "id": 7},
        {"role": "assistant", "content": "Pong", "metadata": {"k": [1, 2.5, None, True]}},
        {"role": "user", "content": "Again"},
    ],
}

# Template-specific extra conversations (tools, tool calls) and context variables.
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city — \"quoted\" and ünïcode",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "default": 1}},
            "required": ["city"],
        },
    },
}
TOOL_CONVERSATION = [
    {"role": "system", "content": "You can call tools."},
    {"role": "user", "content": "Weather in Zürich?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 2}}}]},
    {"role": "tool", "content": "{\"temp\": 21.5, \"sky\": \"clear\"}"},
    {"role": "tool", "content": "second result"},
]
LLAMA_TOOL_CONVERSATION = [
    {"role": "system", "content": "You can call tools."},
    {"role": "user", "content": "Weather in Zürich?"},
    {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich"}}}]},
    {"role": "tool", "content": {"temp": 21.5, "sky": "clear"}},
]
DEEPSEEK_TOOL_CONVERSATION = [
    {"role": "user", "content": "Weather in Zürich?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Zürich\"}"}},
        {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Bern\"}"}}]},
    {"role": "tool", "content": "21.5"},
    {"role": "tool", "content": "19.0"},
    {"role": "assistant", "content": "Zürich 21.5, Bern 19.0"},
]

SPECIAL = [
    ("qwen2.5", "tools", TOOL_CONVERSATION, {"tools": [WEATHER_TOOL]}),
    ("qwen2.5", "tools_no_system", TOOL_CONVERSATION[1:2], {"tools": [WEATHER_TOOL]}),
    ("llama3.1", "tools_in_user_message", LLAMA_TOOL_CONVERSATION, {"tools": [WEATHER_TOOL]}),
    ("llama3.1", "tools_in_system", LLAMA_TOOL_CONVERSATION,
     {"tools": [WEATHER_TOOL], "tools_in_user_message": False, "date_string": "01 Jan 2025"}),
    ("llama3.1", "builtin_tools", CONVERSATIONS["system_user"],
     {"builtin_tools": ["brave_search", "code_interpreter", "wolfram_alpha"]}),
    ("llama3.2", "tools_in_user_message", LLAMA_TOOL_CONVERSATION, {"tools": [WEATHER_TOOL]}),
    ("deepseek-v3", "tool_calls", DEEPSEEK_TOOL_CONVERSATION, {}),
    ("deepseek-v3", "two_systems", [SYSTEM, {"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Hi"}], {}),
    ("mistral-v0.2", "bad_alternation", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], {}),
    ("llama2", "bad_alternation", [{"role": "assistant", "content": "a"}], {}),
    ("gemma2", "bad_alternation", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], {}),
]

# Llama 3.2 reads strftime_now() when no date_string is given; pin it so the expected text is stable.
DEFAULT_EXTRA = {"llama3.2": {"date_string": "26 Jul 2024"}}


# Interpreter features one by one (rendered with the same environment); tests/tokenizer/test_chat_template.cpp
# renders each and compares byte for byte.
FEATURES = [
 ("whitespace control", "  {%- if true %}\n  x\n  {% endif %}\n  y"),
 ("trim and lstrip blocks", "{% for i in [1,2] %}\n    {{ i }}\n{% endfor %}\ndone\n"),
 ("loop variables", "{% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}"),
 ("for if else", "{% for x in [1,2,3] if x > 1 %}{{ x }}{{ loop.index }}/{{ loop.length }}{% else %}none{% endfor %}|{% for x in [] %}{% else %}empty{% endfor %}"),
 ("loop scoping", "{% set y = 1 %}{% for x in [1,2] %}{{ y }}{% set y = y + 10 %}{{ y }}|{% endfor %}{{ y }}{% if true %}{% set z = 3 %}{% endif %}{{ z }}"),
 ("namespace", "{% set ns = namespace(a=1, b='x') %}{% for i in [1,2] %}{% set ns.a = ns.a + i %}{% endfor %}{{ ns.a }}{{ ns.b }}"),
 ("if elif else", "{% for v in [1, 2, 3] %}{% if v == 1 %}one{% elif v == 2 %}two{% else %}many{% endif %} {% endfor %}"),
 ("filters", "{{ '  hi  '|trim }}|{{ [1,2,3]|length }}|{{ 'abc'|upper }}|{{ 'ABC'|lower }}|{{ u|default('d') }}|{{ ''|default('e', true) }}|{{ ''|d('f') }}|{{ [1,2]|join(', ') }}|{{ 'a-b-c'|replace('-', '+') }}|{{ [3,4]|first }}|{{ [3,4]|last }}|{{ 'hello WORLD'|capitalize }}|{{ 'hello wORLD-x (y'|title }}|{{ 5|string }}|{{ '42'|int + 1 }}|{{ '4.7'|int }}|{{ 'x'|int(7) }}|{{ 'abc'|list }}|{{ {'a':1}|items|list }}|{{ 'x'|safe }}|{{ 'a\nb\n\nc'|indent(2) }}|{{ 'a\nb'|indent(2, true) }}|{{ 'xxhixx'|trim('x') }}|{{ '3.5'|float }}|{{ [1,2]|count }}"),
 ("tojson", "{{ {'a': [1, 2.5, none, true], 'b': 'é\"\\n\\t<>&'}|tojson }}|{{ {'k': [1, {'z': []}], 'e': {}}|tojson(indent=2) }}|{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}|{{ 'é☃😀'|tojson(ensure_ascii=true) }}|{{ [1, 2]|tojson(separators=(',', ':')) }}|{{ 1e20|tojson }}|{{ 'x'|tojson(indent='\\t') }}"),
 ("string methods", "{{ ' x '.strip() }}|{{ 'xxhixx'.lstrip('x') }}|{{ 'xxhixx'.rstrip('x') }}|{{ 'ab'.startswith('a') }}|{{ 'ab'.endswith(('x','b')) }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'AbC'.lower() }}|{{ 'abc'.upper() }}|{{ 'aaa'.replace('a','b',2) }}|{{ \"hello world it's\".title() }}|{{ 'a b c'.rsplit(' ', 1) }}|{{ 'a b c'.split(' ', 1) }}|{{ 'abc'.find('c') }}|{{ '-'.join(['x','y']) }}|{{ 'hello'.capitalize() }}|{{ 'abab'.count('ab') }}|{{ 'x\\ny'.splitlines() }}"),
 ("dict methods", "{% set d = {'a': 1, 'b': 2} %}{{ d.items()|list }}{{ d.keys()|list }}{{ d.values()|list }}{{ d.get('a') }}{{ d.get('z', 'no') }}{{ d.get('z') }}{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}{{ d|length }}"),
 ("tests", "{{ u is defined }}{{ u is undefined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}{{ 1.5 is number }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is iterable }}{{ [] is sequence }}{{ true is boolean }}{{ true is true }}{{ false is false }}{{ 1 is equalto 1 }}{{ 2 is eq(2) }}{{ 3 is odd }}{{ 4 is even }}{{ 6 is divisibleby 3 }}{{ 1 is not string }}{{ 1 is integer }}{{ 1.0 is float }}{{ 'ab' is lower }}{{ 2 is in [1, 2] }}{{ none is mapping }}{{ 1 is sequence }}"),
 ("operators", "{{ 'a' in 'cat' }}{{ 2 in [1,2] }}{{ 'k' in {'k':1} }}{{ 3 not in [1] }}|{{ 'a' ~ 1 ~ none ~ u }}|{{ 1 + 2 * 3 }}|{{ 7 / 2 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ 2 ** 3 ** 2 }}|{{ 'ab' * 3 }}|{{ 2 * 'c' }}|{{ [1] + [2] }}|{{ 1.5 + 1 }}|{{ 10 / 4 }}|{{ -(3) }}|{{ 7.5 // 2 }}|{{ -7.5 % 2 }}|{{ true + 1 }}|{{ 'x' + 'y' }}"),
 ("slicing", "{{ [1,2,3,4][::-1] }}{{ [1,2,3,4][1:] }}{{ [1,2,3,4][:-1] }}{{ [1,2,3,4][::2] }}{{ 'héllo'[1:3] }}{{ 'héllo'[::-1] }}{{ [1,2,3][-1] }}{{ 'abc'[0] }}{{ [1,2,3,4,5][4:1:-2] }}{{ [1,2][5:] }}{{ 'abc'[-2:] }}{{ (1,2,3)[1:] }}"),
 ("comparisons and logic", "{{ 1 < 2 }}{{ 2 <= 2 }}{{ 'a' < 'b' }}{{ 1 == 1.0 }}{{ [1,2] == [1,2] }}{{ 1 != 2 }}{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ none or 'x' }}{{ 'y' and 0 }}{{ not 0 }}{{ 'a' if false else 'b' }}{{ 'c' if true }}[{{ 'd' if false }}]{{ not 1 == 2 }}{{ [1] < [1, 0] }}"),
 ("printing values", "{{ [1, 'a', none, true, 1.0] }}{{ {'k': [1, {'z': none}]} }}{{ (1, 2) }}{{ (1,) }}{{ () }}{{ 1e20 }}{{ 0.1 + 0.2 }}{{ 1e-5 }}{{ 0.0001 }}{{ 123456789012345678.0 }}{{ -0.0 }}{{ 'it\\'s' }}{{ ['a\\nb', \"x'y\", 'x\"y', 'x\\'y\"z', 'é', '\\x01'] }}{{ none }}{{ true }}{{ 1, 2 }}"),
 ("attributes and subscripts", "{% set m = {'role': 'user', 'content': 'hi', 'n': {'x': [5, 6]}} %}{{ m.role }}{{ m['content'] }}[{{ m.missing }}]{{ m['missing'] is defined }}{{ [1,2][5] is defined }}{{ m.n.x.1 }}{{ m['n']['x'][0] }}{{ [5,6].0 }}{{ none.x is defined }}"),
 ("macros", "{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', '?') }} {{ greet(name='c', punct='.') }} [{{ greet() }}]"),
 ("set block and filter block", "{% set x | upper %}abc{% endset %}{{ x }}|{% set y %}\n  two\n{% endset %}{{ y }}|{% filter trim %}  padded  {% endfilter %}|{% filter upper|replace('A', 'a') %}abc{% endfilter %}"),
 ("break and continue", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}"),
 ("range", "{{ range(3)|list }}{{ range(1, 10, 3)|list }}{{ range(5, 0, -2)|list }}{{ range(0)|list }}"),
 ("higher order filters", "{{ [1,2,3,4]|select('odd')|list }}{{ ['a','b']|reject('equalto','a')|list }}{{ [{'n':'x'},{'n':'y'}]|map(attribute='n')|join(',') }}{{ ['a','b']|map('upper')|list }}{{ [{'k':1},{'k':0}]|selectattr('k')|list }}{{ [{'k':1},{'k':0}]|rejectattr('k', 'equalto', 1)|list }}{{ [3,1,2]|sort }}{{ ['b','A','c']|sort }}{{ ['b','A','c']|sort(reverse=true) }}{{ [{'v': 2}, {'v': 1}]|sort(attribute='v') }}{{ [1,1,2]|unique|list }}{{ [3,5,1]|max }}{{ [3,5,1]|min }}{{ [1,2,3]|sum }}{{ 'abc'|reverse }}{{ [1,2]|reverse|list }}{{ -3|abs }}{{ 2.5|round }}{{ 3.5|round }}{{ 3.14159|round(2) }}{{ 3|round }}{{ {'b': 1, 'a': 2}|dictsort }}"),
 ("comments", "a{# comment #}b\n{#- c -#}\n  c\n  {# d #}\ne"),
 ("undefined", "[{{ u }}][{{ u|length }}][{{ u ~ 'x' }}][{% for x in u %}no{% endfor %}][{{ u == u }}][{{ u is none }}][{{ u|list }}][{{ 'a' in u }}][{{ u|items|list }}]"),
 ("adjacent strings", "{{ 'a' 'b' \"c\" }}"),
 ("dash whitespace control", "{%- for m in ['a','b'] -%}\n  [{{- m -}}]\n{%- endfor -%}\n  end"),
 ("plus modifiers", "  {%+ if true %}x{% endif %}\n  {#+ c #}y\n{% if true +%}\nz{% endif %}"),
 ("loop cycle and nesting", "{% for i in [1,2,3] %}{{ loop.cycle('odd','even') }}{% endfor %}|{% for a in [1,2] %}{% set outer = loop %}{% for b in [3,4] %}{{ outer.index }}{{ loop.index }}{% endfor %}{% endfor %}"),
 ("string escapes", "{{ 'tab\\there' }}|{{ \"q\\\"uote\" }}|{{ '\\u00e9\\x41\\101' }}|{{ 'back\\\\slash' }}|{{ 'keep\\d' }}"),
 ("tuple assignment", "{% set a, b = [1, 2] %}{{ a }}{{ b }}{% for x, y in [(1, 'a'), (2, 'b')] %}{{ x }}{{ y }}{% endfor %}"),
 ("literals", "{{ [1, 2,] }}{{ {'a': 1,} }}{{ True }}{{ False }}{{ None }}{{ 1_000 }}{{ 0x10 }}{{ 1.5e3 }}{{ {1: 'int key'}[1] }}"),
 ("lstrip only at line start", "x {% if true %}y{% endif %}\n\t {% if true %}z{% endif %}\n{{ 'v' }}  {% if true %}w{% endif %}"),
 ("trailing newline dropped", "a\n\n"),
 ("crlf newlines", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc"),
 ("messages slicing like templates", "{% set messages = msgs %}{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% else %}{% set loop_messages = messages %}{% endif %}{% for m in loop_messages %}{{ m.role }}:{{ m['content'] | trim }};{% endfor %}{% for m in messages[::-1] %}{{ loop.index0 }}{{ m.role[0] }}{% endfor %}"),
 ("python style unicode case", "{{ 'ÉCOLE été ΑΒΓ ЖУК'|lower }}|{{ 'école ÿ ĳ żółw'|upper }}|{{ 'émile zola'.title() }}"),
]
FEATURE_CONTEXT = {"msgs": [{"role": "system", "content": " s "}, {"role": "user", "content": " u\n"},
                            {"role": "assistant", "content": "a"}]}


def render(env, source, messages, add_generation_prompt, bos, eos, extra):
    context = {"messages": messages, "tools": None, "documents": None,
               "add_generation_prompt": add_generation_prompt, "bos_token": bos, "eos_token": eos}
    context.update(extra)
    try:
        return {"expected": env.from_string(source).render(**context)}
    except jinja2.exceptions.TemplateError as e:
        return {"expected_error": str(e)}


def main():
    env = make_env()
    cases = []
    for name, (bos, eos) in TEMPLATES.items():
        with open(os.path.join(TEMPLATE_DIR, name + ".jinja"), encoding="utf-8", newline="") as f:
            source = f.read()
        runs = [(conv, msgs, dict(DEFAULT_EXTRA.get(name, {}))) for conv, msgs in CONVERSATIONS.items()]
        runs += [(conv, msgs, {**DEFAULT_EXTRA.get(name, {}), **extra})
                 for tname, conv, msgs, extra in SPECIAL if tname == name]
        for conv, messages, extra in runs:
            for add_generation_prompt in (True, False):
                case = {"name": f"{name}/{conv}/{'gen' if add_generation_prompt else 'nogen'}",
                        "template": name, "messages": messages, "add_generation_prompt": add_generation_prompt,
                        "bos_token": bos, "eos_token": eos, "extra": extra}
                case.update(render(env, source, messages, add_generation_prompt, bos, eos, extra))
                cases.append(case)
    out = {"generator": "tests/reference/make_chat_template_cases.py", "jinja2_version": jinja2.__version__,
           "python_version": sys.version.split()[0], "cases": cases}
    write_json(os.path.join(TEMPLATE_DIR, "cases.json"), out)
    errors = sum("expected_error" in c for c in cases)
    print(f"wrote {len(cases)} chat template cases ({errors} expected errors)")

    features = [{"name": name, "template": source, "context": FEATURE_CONTEXT,
                 "expected": env.from_string(source).render(**FEATURE_CONTEXT)} for name, source in FEATURES]
    write_json(os.path.join(TEMPLATE_DIR, "feature_cases.json"),
               {"generator": out["generator"], "jinja2_version": jinja2.__version__, "cases": features})
    print(f"wrote {len(features)} interpreter feature cases")


def write_json(path, data):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

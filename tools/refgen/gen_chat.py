#!/usr/bin/env python3
"""Reference fixtures for chat templates (text/jinja*.c, text/chat_template.c).

Writes tests/fixtures/chat/:
  seeds/<name>.jinja   the same templates as files (the corpus of tests/fuzz/fuzz_jinja.c)
  jinja_cases.json     small made-up templates (written here, not taken from any model) that
                       exercise every construct the interpreter supports, each rendered by
                       jinja2 exactly as transformers configures it, or the error it raises
  <family>--<rev>.json per official template revision: where its text lives, its
                       fingerprint, the special tokens, and message sets with the string
                       transformers' apply_chat_template(..., tokenize=False,
                       add_generation_prompt=True) returns (or the error it raises)

Official templates are never written into the repository. They are read at generation time
from /work/shared/reference/checkpoints (see SOURCES.md there) or from public sources named
in TEMPLATES below; the fixtures hold only rendered strings and a fingerprint (FNV-1a 64 of
the template's UTF-8 bytes). Templates read from public sources are cached, for the C tests,
under tests/fixtures/chat/fetched/ (git-ignored); those tests skip when the cache is absent.

Rendering goes through transformers.utils.chat_template_utils.render_jinja_template with the
tokenizer's special tokens as template variables, which is what both the tokenizer's and the
processor's apply_chat_template do for tokenize=False (the processor first rewrites OpenAI
"image_url" blocks to {"type": "image"}; the messages here already use that form).
MiniCPM-o 2.6 has no processor template: its model.chat() flattens each message's content to
one string (images -> "(<image>./</image>)", audio -> "(<audio>./</audio>)", joined by "\\n")
and, when audio is present, renders with the model's default_tts_chat_template. That is
reproduced in minicpmo_messages() below.

strftime_now is pinned to FIXED_NOW (local time; the C tests run with TZ=UTC).

Run from the repo root:
  tools/refgen/.venv/bin/python tools/refgen/gen_chat.py [tests/fixtures]
"""
import ast
import calendar
import datetime as _dt
import json
import os
import re
import sys
import urllib.request

import jinja2
import transformers
from transformers.utils import chat_template_utils as ctu

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
CKPT = os.path.join(SHARED, "reference", "checkpoints")

FIXED_NOW = _dt.datetime(2025, 3, 14, 9, 26, 53)
FIXED_NOW_UNIX = calendar.timegm(FIXED_NOW.timetuple())


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


ctu.datetime = _FixedDatetime  # strftime_now() reads the module's datetime at call time
os.environ["TZ"] = "UTC"


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for b in text.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


# ------------------------------------------------------------------------------------------
# Where each official template is read from. "extract" tells the C test how to get the text:
#   json_key        file is a JSON object, text = obj[key]
#   json_fragment   file is the inside of a JSON object ('"k": v, ...}'), text = obj[key]
#   json_string     file is one JSON string literal
#   string_line     the index-th line that starts with '"' is a JSON string literal + ","
#   python_attr     a Python source file; text = the string literal assigned to `attr`

TEMPLATES = [
    dict(family="qwen2_vl", revision="qwen2-vl-instruct", base="shared",
         path="reference/checkpoints/Qwen--Qwen2-VL-2B-Instruct/chat_template.json",
         extract={"kind": "json_key", "key": "chat_template"},
         tokens={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
         source="Qwen/Qwen2-VL-2B-Instruct chat_template.json (git blob 732bd68b); the same "
                "string serves Qwen2.5-VL-*-Instruct (see shared SOURCES.md)"),
    dict(family="qwen2_vl", revision="qwen2-vl-base", base="shared",
         path="reference/checkpoints/Qwen--Qwen2-VL-2B/chat_template.json",
         extract={"kind": "json_key", "key": "chat_template"},
         tokens={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
         source="Qwen/Qwen2-VL-2B (base) chat_template.json via ModelScope revision b4edfc78"),
    dict(family="llava_next", revision="llava-v1.6-mistral-old", base="shared",
         path="reference/checkpoints/llava-hf--llava-v1.6-mistral-7b-hf/chat_template.json.excerpt",
         extract={"kind": "string_line", "index": 0},
         tokens={"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
         source="llava-hf/llava-v1.6-mistral-7b-hf before hub commit 144bfb96 "
                "(openvinotoolkit/openvino.genai src/cpp/src/tokenizer.cpp @ c0cebe42)"),
    dict(family="llava_next", revision="llava-v1.6-mistral", base="shared",
         path="reference/checkpoints/llava-hf--llava-v1.6-mistral-7b-hf/chat_template.json.excerpt",
         extract={"kind": "string_line", "index": 1},
         tokens={"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
         source="llava-hf/llava-v1.6-mistral-7b-hf after hub commit 144bfb96 "
                "(openvinotoolkit/openvino.genai src/cpp/src/tokenizer.cpp @ c0cebe42)"),
    dict(family="llava_next", revision="llava-v1.6-vicuna", base="shared",
         path="reference/checkpoints/llava-hf--llava-v1.6-vicuna-7b-hf/chat_template.json.excerpt",
         extract={"kind": "string_line", "index": 0},
         tokens={"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
         source="llava-hf/llava-v1.6-vicuna-7b-hf (openvino.genai tokenizer.cpp @ c0cebe42)"),
    dict(family="mllama", revision="llama-3.2-vision-2024", base="shared",
         path="reference/checkpoints/meta-llama--Llama-3.2-11B-Vision-Instruct/tokenizer_config.json.excerpt",
         extract={"kind": "json_fragment", "key": "chat_template"},
         tokens={"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                 "pad_token": "<|finetune_right_pad_id|>"},
         source="meta-llama/Llama-3.2-11B-Vision-Instruct original template (linkedin/Liger-Kernel "
                "test/resources/fake_configs/.../tokenizer_config.json @ 9b10f48f)"),
    dict(family="mllama", revision="llama-3.2-vision", base="shared",
         path="reference/checkpoints/meta-llama--Llama-3.2-11B-Vision-Instruct/chat_template.json.excerpt",
         extract={"kind": "json_string"},
         tokens={"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                 "pad_token": "<|finetune_right_pad_id|>"},
         source="meta-llama/Llama-3.2-11B-Vision-Instruct later template (huggingface/huggingface.js "
                "packages/jinja/test/e2e.test.js @ ee92cdbe)"),
    dict(family="mistral3", revision="mistral-small-3.1-2503", base="shared",
         path="reference/checkpoints/mistralai--Mistral-Small-3.1-24B-Instruct-2503/chat_template.json",
         extract={"kind": "json_key", "key": "chat_template"},
         tokens={"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                 "pad_token": "<pad>"},
         source="mistralai/Mistral-Small-3.1-24B-Instruct-2503 chat_template.json (git blob 4a385562)"),
    dict(family="minicpmo", revision="minicpm-o-2.6-tts", base="fetched",
         path="minicpmo_modeling_minicpmo.py",
         url="https://raw.githubusercontent.com/jack139/minicpmo-backend/"
             "dced0af02409433423de54755506c6418990a244/modeling_minicpmo.py",
         extract={"kind": "python_attr", "attr": "self.default_tts_chat_template"},
         tokens={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
         source="openbmb/MiniCPM-o-2_6 modeling_minicpmo.py default_tts_chat_template, as vendored "
                "in jack139/minicpmo-backend modeling_minicpmo.py @ dced0af0 (Jan 2025)"),
]


def extract(text, spec):
    kind = spec["kind"]
    if kind == "json_key":
        return json.loads(text)[spec["key"]]
    if kind == "json_fragment":
        return json.loads("{" + text)[spec["key"]]
    if kind == "json_string":
        return json.loads(text)
    if kind == "string_line":
        lines = [l.strip() for l in text.splitlines() if l.strip().startswith('"')]
        return json.loads(lines[spec["index"]].rstrip(","))
    if kind == "python_attr":
        for line in text.splitlines():
            s = line.strip()
            if s.startswith(spec["attr"] + " ="):
                return ast.literal_eval(s.split("=", 1)[1].strip())
        raise KeyError(spec["attr"])
    raise ValueError(kind)


def template_text(t, out_dir):
    if t["base"] == "shared":
        path = os.path.join(SHARED, t["path"])
        if not os.path.exists(path):
            return None
    else:
        path = os.path.join(out_dir, "fetched", t["path"])
        if not os.path.exists(path):
            try:
                data = urllib.request.urlopen(t["url"], timeout=30).read()
            except Exception as e:  # offline: keep the committed fixture as it is
                print(f"  cannot fetch {t['url']}: {e}")
                return None
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
    with open(path, encoding="utf-8") as f:
        return extract(f.read(), t["extract"])


# ------------------------------------------------------------------------------------------
# Message sets (HF form: content is a string or a list of {"type": "text"|"image"|"audio"}).

def T(s):
    return {"type": "text", "text": s}


I = {"type": "image"}
A = {"type": "audio"}


def msg(role, *parts):
    if len(parts) == 1 and isinstance(parts[0], str):
        return {"role": role, "content": parts[0]}
    return {"role": role, "content": list(parts)}


CASES = [
    ("text_only_list", [msg("user", T("Hello there."))]),
    ("text_only_string", [msg("user", "Hello there.")]),
    ("image_then_text", [msg("user", I, T("What is in this image?"))]),
    ("text_then_image", [msg("user", T("Describe:"), I)]),
    ("two_images_interleaved", [msg("user", I, T("first, then"), I, T("second."))]),
    ("three_images_mixed", [msg("user", T("Compare"), I, I, T("with"), I)]),
    ("system_string", [msg("system", "You are terse."), msg("user", I, T("Caption it."))]),
    ("system_list", [msg("system", T("You are terse.")), msg("user", T("Hi"))]),
    ("system_string_text_only", [msg("system", "  You are terse.  "), msg("user", "Hi")]),
    ("multi_turn", [msg("user", I, T("What is it?")), msg("assistant", T("A cat.")),
                    msg("user", T("What colour?"))]),
    ("multi_turn_string", [msg("user", "What is 2+2?"), msg("assistant", "4"),
                           msg("user", "And 3+3?")]),
    ("assistant_last", [msg("user", T("Say hi")), msg("assistant", T("hi"))]),
    ("unicode_and_markup", [msg("user", T("héllo ✓ 日本 {{ not a tag }} {% x %}\n'quoted' \"dq\""))]),
    ("empty_text", [msg("user", T(""), I)]),
    ("image_only", [msg("user", I)]),
    ("tool_role", [msg("user", "Hi"), msg("tool", "42")]),
    ("audio_then_text", [msg("user", A, T("Transcribe this."))]),
    ("text_audio_audio", [msg("user", T("Compare"), A, A)]),
    ("image_audio_text", [msg("user", I, A, T("Describe both."))]),
    ("audio_multi_turn", [msg("system", "Listen."), msg("user", A, T("What is said?")),
                          msg("assistant", "Hello."), msg("user", T("Again:"), A)]),
]


def has_audio(messages):
    return any(isinstance(m["content"], list) and any(p.get("type") == "audio" for p in m["content"])
               for m in messages)


def minicpmo_messages(messages):
    """model.chat(): every content becomes one string, parts joined by a newline."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            content = [T(content)]
        parts = []
        for p in content:
            if p["type"] == "image":
                parts.append("(<image>./</image>)")
            elif p["type"] == "audio":
                parts.append("(<audio>./</audio>)")
            else:
                parts.append(p["text"])
        out.append({"role": m["role"], "content": "\n".join(parts)})
    return out


def render(template, messages, tokens, add_generation_prompt=True):
    try:
        rendered, _ = ctu.render_jinja_template(
            conversations=[messages], chat_template=template,
            add_generation_prompt=add_generation_prompt, **tokens)
        return {"expected": rendered[0]}
    except Exception as e:  # the template raised: the C side must fail too
        return {"error": f"{type(e).__name__}: {e}"}


def family_cases(t, template):
    cases = []
    for name, messages in CASES:
        for agp in ([True, False] if name in ("multi_turn", "text_only_string") else [True]):
            case = {"name": name if agp else name + "_no_generation_prompt",
                    "messages": messages, "add_generation_prompt": agp}
            if t["family"] == "minicpmo":
                if any(m["role"] not in ("system", "user", "assistant") for m in messages):
                    case["expect_status"] = "TSR_ERR_INVALID_ARG"  # chat() asserts the roles
                elif not has_audio(messages):
                    # chat() uses the tokenizer's template here; no public copy was found
                    case["expect_status"] = "TSR_ERR_UNSUPPORTED"
                else:
                    case.update(render(template, minicpmo_messages(messages), t["tokens"], agp))
            elif has_audio(messages):
                case["expect_status"] = "TSR_ERR_UNSUPPORTED"  # the model takes no audio
            elif t["revision"] == "qwen2-vl-base":
                case["expect_status"] = "TSR_ERR_UNSUPPORTED"  # not a conversation template
            else:
                case.update(render(template, messages, t["tokens"], agp))
            cases.append(case)
    return cases


# ------------------------------------------------------------------------------------------
# Generic Jinja cases: our own small templates, one construct or two each.

JINJA_CASES = [
    ("text", "plain text\nsecond line\n", {}),
    ("output_types", "{{ s }}|{{ i }}|{{ f }}|{{ b }}|{{ n }}|{{ l }}|{{ d }}|{{ missing }}|",
     {"s": "str", "i": 42, "f": 2.5, "b": True, "n": None, "l": [1, "a", None, 1.5], "d": {"k": [True]}}),
    ("float_repr", "{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-5 }} {{ 123456789.125 }} {{ 1/3 }} {{ 2e16 }}", {}),
    ("arith", "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 3 * 'ab' }} {{ [1] * 3 }} {{ 1 + 2.5 }} {{ 10 - 3 }} {{ -(3) }} {{ +4 }}", {}),
    ("concat", "{{ 'a' ~ 1 ~ none ~ true }} {{ 'x' + 'y' }} {{ [1, 2] + [3] }}", {}),
    ("compare", "{{ 1 < 2 }} {{ 'b' > 'a' }} {{ 1 == 1.0 }} {{ 'a' != 'a' }} {{ [1, 2] < [1, 3] }} {{ 2 >= 2 }} {{ 1 <= 0 }}", {}),
    ("logic", "{{ true and 'x' }} {{ false or 'y' }} {{ not none }} {{ 0 or [] }} {{ 'a' and 0 }}", {}),
    ("in_operator", "{{ 'a' in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in d }} {{ 'z' not in d }} {{ 'image' in {'image': none} }}", {"d": {"k": 1}}),
    ("conditional_expr", "{{ 'yes' if x else 'no' }} {{ 'y' if not x }}|", {"x": 0}),
    ("if_elif_else", "{% for v in [1, 2, 3] %}{% if v == 1 %}one{% elif v == 2 %}two{% else %}many{% endif %},{% endfor %}", {}),
    ("for_loop_vars", "{% for x in items %}{{ loop.index0 }}{{ loop.index }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}", {"items": ["a", "b", "c"]}),
    ("for_else", "{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in none_list %}{% else %}undef{% endfor %}", {}),
    ("for_filter", "{% for x in range(10) if x is odd %}{{ x }}{{ ',' if not loop.last }}{% endfor %}", {}),
    ("for_unpack", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %}", {"d": {"x": 1, "y": [2]}}),
    ("for_dict_and_string", "{% for k in d %}{{ k }}{% endfor %}|{% for ch in 'héllo' %}{{ ch }}.{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("loop_scope", "{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = x + 1 %}{{ x }}{% endfor %}|{{ x }}", {}),
    ("loop_controls", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("nested_loops", "{% for r in rows %}{% for c in r %}{{ loop.index }}{{ c }}{% endfor %}/{{ loop.index }} {% endfor %}", {"rows": [["a", "b"], ["c"]]}),
    ("set_and_namespace", "{% set ns = namespace(count=0, seen=false) %}{% for m in ms %}{% if m == 'x' %}{% set ns.count = ns.count + 1 %}{% set ns.seen = true %}{% endif %}{% endfor %}{{ ns.count }} {{ ns.seen }}", {"ms": ["x", "y", "x"]}),
    ("set_tuple_and_block", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set blk %}in {{ a }} block{% endset %}[{{ blk }}]", {}),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', punct='?') }} {{ greet(name='Cy') }}", {}),
    ("whitespace_control", "a  {{- ' b ' -}}  c\n  {%- if true -%}\n   d\n  {%- endif %}\ne", {}),
    ("trim_blocks", "{% if true %}\nline1\n{% endif %}\n{% for i in [1, 2] %}\n  item {{ i }}\n{% endfor %}\nend\n", {}),
    ("lstrip_blocks", "start\n    {% if true %}\n    kept indent\n    {% endif %}\n  {# comment #}\nafter\n\t{%+ if true %}x{% endif %}\n", {}),
    ("comments", "a{# c1 #}b{#- c2 -#}  c  {# c3 #}\nd", {}),
    ("trailing_newline", "x\n", {}),
    ("crlf", "a\r\nb\r{% if true %}\r\nc{% endif %}\r\n", {}),
    ("string_escapes", "{{ 'tab\\there' }}|{{ \"q\\\"d\" }}|{{ 'u\\u00e9\\x41\\101' }}|{{ 'back\\\\slash' }}|{{ 'keep\\q' }}|{{ 'a' 'b' }}", {}),
    ("subscript_and_attr", "{{ d['a'] }} {{ d.a }} {{ l[0] }} {{ l[-1] }} {{ l[5] }}|{{ s[1] }} {{ d.nope }}|{{ d['b']['c'] }} {{ l.0 }}", {"d": {"a": 1, "b": {"c": "deep"}}, "l": [10, 20], "s": "xyz"}),
    ("slices", "{{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ l[::2] }} {{ 'héllo'[1:3] }} {{ l[5:] }} {{ l[-2:] }}", {"l": [1, 2, 3, 4]}),
    ("string_methods", "{{ '  x  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'b  '.rstrip() }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'a,b,,c'.split(',') }}{{ ' a  b '.split() }}{{ 'a b c'.split(' ', 1) }}|{{ 'MiXed'.upper() }}{{ 'MiXed'.lower() }}{{ 'hello world'.title() }}{{ 'hELLO'.capitalize() }}|{{ 'aXbX'.replace('X', '-') }}|{{ '-'.join(['a', 'b']) }}", {}),
    ("dict_methods", "{{ d.keys() | list }} {{ d.values() | list }} {{ d.items() | list }} {{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 5) }}", {"d": {"a": 1, "b": "two"}}),
    ("filters_basic", "{{ '  pad  ' | trim }}|{{ 'abc' | length }}{{ [1, 2] | count }}{{ d | length }}|{{ 3 | string }}|{{ 'Ab' | upper }}{{ 'Ab' | lower }}{{ 'ab cd' | title }}{{ 'aB' | capitalize }}|{{ missing | default('dflt') }}{{ '' | default('e', true) }}{{ 0 | d(7) }}", {"d": {"x": 1}}),
    ("filters_lists", "{{ [1, 2, 3] | join(', ') }}|{{ l | first }}{{ l | last }}|{{ l | reverse | list }}|{{ 'abc' | reverse }}|{{ users | map(attribute='name') | join('/') }}|{{ users | join(',', attribute='name') }}", {"l": [3, 1, 2], "users": [{"name": "a"}, {"name": "b"}]}),
    ("filters_select", "{{ parts | selectattr('type', 'equalto', 'image') | list | length }} {{ parts | rejectattr('type', 'eq', 'image') | map(attribute='text') | join }} {{ [0, 1, 2, none] | select | list }} {{ [1, 2, 3, 4] | reject('even') | list }} {{ parts | selectattr('text') | list | length }} {{ parts | selectattr('type', 'in', ['text']) | list | length }}", {"parts": [{"type": "image"}, {"type": "text", "text": "hi"}, {"type": "text", "text": "yo"}]}),
    ("filters_numbers", "{{ '42' | int }} {{ 'x' | int }} {{ 3.9 | int }} {{ '2.5' | float }} {{ -3 | abs }} {{ 'aa' | replace('a', 'b') }} {{ d | items | list }}", {"d": {"k": "v"}}),
    ("tojson", "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ l | tojson }}|{{ 'é\"\\n' | tojson }}|{{ d | tojson(sort_keys=true) }}|{{ [] | tojson(indent=4) }}|{{ {} | tojson }}", {"d": {"z": 1, "a": [1.5, True, None], "m": {"k": "v"}}, "l": [1, "two", [3]]}),
    ("tests", "{{ x is defined }}{{ y is defined }}{{ y is undefined }}{{ n is none }}{{ 's' is string }}{{ 1 is number }}{{ 1 is integer }}{{ 1.0 is float }}{{ d is mapping }}{{ l is iterable }}{{ 's' is iterable }}{{ 1 is iterable }}{{ l is sequence }}{{ true is boolean }}{{ true is true }}{{ false is false }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 'a' is in 'abc' }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ x is not none }}{{ x is eq 1 }}{{ x is equalto(1) }}{{ x is ne 2 }}{{ 2 is gt 1 }}{{ 2 is ge 3 }}{{ 1 is lt 2 }}{{ 1 is le 0 }}{{ none is sameas none }}{{ range is callable }}", {"x": 1, "n": None, "d": {}, "l": [1]}),
    ("range_and_dict", "{{ range(3) | list }}{{ range(1, 7, 2) | list }}{{ range(5, 0, -2) | list }}{{ dict(a=1, b='x') }}", {}),
    ("dict_list_literals", "{{ {'a': 1, 'b': [1, (2, 3)]} }} {{ (1,) }} {{ () }} {{ [] }}", {}),
    ("repr_strings", "{{ ['it\\'s', 'say \"hi\"', 'both \\' \"', 'nl\\n'] }}", {}),
    ("strftime", "{{ strftime_now('%Y-%m-%d') }} {{ strftime_now('%d %b %Y') }} {{ strftime_now('%A %B %H:%M:%S') }}", {}),
    ("generation_block", "{% for m in ms %}{% generation %}{{ m }};{% endgeneration %}{% endfor %}", {"ms": ["a", "b"]}),
    ("messages_like", "{% for message in messages %}{{ '<|' + message['role'] + '|>' }}{% if message.content is string %}{{ message.content | trim }}{% else %}{% for c in message.content %}{% if c.type == 'image' %}<img>{% else %}{{ c.text }}{% endif %}{% endfor %}{% endif %}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}", {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}, {"role": "assistant", "content": " ok "}], "add_generation_prompt": True}),
    ("undefined_ops", "{{ u }}|{{ u | length }}|{{ u is defined }}|{% for x in u %}no{% endfor %}|{{ u ~ 'x' }}|{{ u == u }}|{{ not u }}|{{ none.attr }}|{{ u | default('d') }}", {}),
    # errors (any failure is accepted on the C side; the status class is checked)
    ("err_raise", "{{ raise_exception('custom failure') }}", {}),
    ("err_str_plus_int", "{{ 'a' + 1 }}", {}),
    ("err_undefined_attr", "{{ u.x }}", {}),
    ("err_undefined_add", "{{ u + 'x' }}", {}),
    ("err_call_undefined", "{{ nothing() }}", {}),
    ("err_div_zero", "{{ 1 // 0 }}", {}),
    ("err_not_iterable", "{% for x in 3 %}{% endfor %}", {}),
    ("err_ns_set_nonns", "{% set d = {} %}{% set d.x = 1 %}", {}),
    ("err_unclosed_if", "{% if true %}x", {}),
    ("err_unclosed_tag", "{{ x ", {}),
    ("err_unclosed_comment", "{# x ", {}),
    ("err_bad_token", "{{ x $ y }}", {}),
    ("err_unknown_filter", "{{ x | frobnicate }}", {}),
    ("err_unknown_test", "{{ x is frobnicated }}", {}),
    ("err_unknown_tag", "{% frob %}", {}),
    ("err_endfor_without_for", "{% endfor %}", {}),
    ("err_unterminated_string", "{{ 'abc }}", {}),
    ("err_include", "{% include 'x.html' %}", {}),
]

# Status the C side returns for each error case (the reference only says "it raises").
JINJA_ERROR_STATUS = {
    "err_raise": "TSR_ERR_INVALID_ARG", "err_str_plus_int": "TSR_ERR_INVALID_ARG",
    "err_undefined_attr": "TSR_ERR_INVALID_ARG", "err_undefined_add": "TSR_ERR_INVALID_ARG",
    "err_call_undefined": "TSR_ERR_INVALID_ARG", "err_div_zero": "TSR_ERR_INVALID_ARG",
    "err_not_iterable": "TSR_ERR_INVALID_ARG", "err_ns_set_nonns": "TSR_ERR_INVALID_ARG",
    "err_unclosed_if": "TSR_ERR_FORMAT", "err_unclosed_tag": "TSR_ERR_FORMAT",
    "err_unclosed_comment": "TSR_ERR_FORMAT", "err_bad_token": "TSR_ERR_FORMAT",
    "err_unknown_filter": "TSR_ERR_UNSUPPORTED", "err_unknown_test": "TSR_ERR_UNSUPPORTED",
    "err_unknown_tag": "TSR_ERR_UNSUPPORTED", "err_endfor_without_for": "TSR_ERR_FORMAT",
    "err_unterminated_string": "TSR_ERR_FORMAT", "err_include": "TSR_ERR_UNSUPPORTED",
}


def jinja_cases():
    out = []
    for name, template, variables in JINJA_CASES:
        case = {"name": name, "template": template, "vars": variables}
        try:
            case["expected"] = ctu._compile_jinja_template(template).render(**variables)
            assert name not in JINJA_ERROR_STATUS, f"{name} was expected to raise"
        except Exception as e:
            assert name in JINJA_ERROR_STATUS, f"{name} raised {e!r}"
            case["error"] = f"{type(e).__name__}: {e}"
            case["expect_status"] = JINJA_ERROR_STATUS[name]
        out.append(case)
    return out


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    fixtures = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures")
    out_dir = os.path.join(fixtures, "chat")
    os.makedirs(out_dir, exist_ok=True)
    versions = {"transformers": transformers.__version__, "jinja2": jinja2.__version__}
    cases = jinja_cases()
    write_json(os.path.join(out_dir, "jinja_cases.json"),
               {"reference": versions, "now_unix": FIXED_NOW_UNIX, "cases": cases})
    seeds = os.path.join(out_dir, "seeds")  # fuzz_jinja's corpus: the same templates, as files
    os.makedirs(seeds, exist_ok=True)
    for case in cases:
        with open(os.path.join(seeds, case["name"] + ".jinja"), "w", encoding="utf-8") as f:
            f.write(case["template"])
    for t in TEMPLATES:
        name = f"{t['family']}--{t['revision']}"
        template = template_text(t, out_dir)
        if template is None:
            print(f"  {name}: template not available, fixture left as is")
            continue
        fixture = {
            "family": t["family"], "revision": t["revision"], "source": t["source"],
            "fingerprint": fnv1a64(template), "base": t["base"], "path": t["path"],
            "extract": t["extract"], "special_tokens": t["tokens"],
            "now_unix": FIXED_NOW_UNIX, "reference": versions,
            "cases": family_cases(t, template),
        }
        write_json(os.path.join(out_dir, name + ".json"), fixture)
        print(f"  {name}: {fixture['fingerprint']} {len(fixture['cases'])} cases")


if __name__ == "__main__":
    main()

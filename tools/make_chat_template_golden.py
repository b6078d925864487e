#!/usr/bin/env python3
"""Writes the chat-template goldens used by tests/model/chat_template_test.cpp (dev-time only).

Oracle: Python jinja2 compiled exactly as transformers does it (transformers.utils.chat_template_utils.
_compile_jinja_template: ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, tojson via
json.dumps, raise_exception, strftime_now). Run in /root/venv-ref:
    /root/venv-ref/bin/python tools/make_chat_template_golden.py

Outputs (tests/data/golden/chat_template/):
  qwen2_5_vl.json, qwen3.json, qwen2_5_tools.json: {"template": source, "cases": [{"name", "messages", "add_generation_prompt",
      "tools"?, "extra"?, "expected" | "error"}]}  rendered as
      template.render(messages=..., tools=tools or None, documents=None, add_generation_prompt=..., **extra)
  features.json: {"cases": [{"name", "template", "vars", "expected" | "error"}]}  rendered as
      template.render(**vars); exercises each supported Jinja feature.
"error" holds Python's exception type and message; tests only require that vlq raises TemplateError.
"""
import json
import os

import jinja2
from transformers.utils.chat_template_utils import _compile_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests/data/golden/chat_template")
QWEN3_CONFIG = os.path.join(ROOT, "../shared/data/qwen-tokenizer/tokenizer_config.json")
TINY = os.path.join(ROOT, "tests/data/tiny/qwen2_5_vl-bf16-hf452")

# Same text as src/model/chat_template.cpp kQwen25VlTemplate and tools/make_tiny_checkpoints.py.
QWEN25VL = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in "
    "messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string "
    "%}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if "
    "content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = "
    "image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif "
    "%}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content "
    "%}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value "
    "}}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ "
    "content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt "
    "%}<|im_start|>assistant\n{% endif %}")

IMG = {"type": "image", "image": "file:///data/cat.jpg"}
TXT = lambda t: {"type": "text", "text": t}  # noqa: E731

QWEN25VL_CASES = [
    ("user_string_gen", [{"role": "user", "content": "Hello!"}], True, None, None),
    ("user_string_nogen", [{"role": "user", "content": "Hello!"}], False, None, None),
    ("system_user_image_text", [{"role": "system", "content": "You are a helpful assistant."},
                                {"role": "user", "content": [IMG, TXT("Describe this image.")]}], True, None, None),
    ("no_system_image_text", [{"role": "user", "content": [IMG, TXT("Describe this image.")]}], True, None, None),
    ("multi_turn", [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [IMG, TXT("What is it?")]},
                    {"role": "assistant", "content": "A cat."},
                    {"role": "user", "content": [TXT("Compare with "), IMG, {"type": "image_url", "image_url": {"url": "http://x/y.png"}}, TXT(" please.")]}],
     True, None, None),
    ("assistant_last_nogen", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"}],
     False, None, None),
    ("video_and_vision_ids", [{"role": "user", "content": [IMG, {"type": "video", "video": "file:///v.mp4"}, IMG,
                                                          {"video": ["a.jpg", "b.jpg"]}, TXT("Two images, two videos.")]}],
     True, None, {"add_vision_id": True}),
    ("text_parts_only", [{"role": "user", "content": [TXT("part one, "), TXT("part two")]}], True, None, None),
    ("unicode_and_specials", [{"role": "user", "content": "Ça va? 你好 👨‍👩‍👧‍👦\n\ttab <|im_end|> inside\r\nCRLF"}], True, None, None),
    ("unknown_part_type", [{"role": "user", "content": [{"type": "audio", "audio": "x.wav"}, TXT("after audio")]}], True, None, None),
    ("missing_content", [{"role": "user"}], True, None, None),
    ("empty_messages", [], True, None, None),
    ("none_content_error", [{"role": "user", "content": None}], True, None, None),
    ("tool_role_passthrough", [{"role": "user", "content": "x"}, {"role": "tool", "content": "{\"ok\": true}"}], True, None, None),
]

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather in a city, °C",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string", "description": "City name, e.g. Zürich"},
                                               "days": {"type": "integer", "minimum": 1, "maximum": 7.5}},
                                               "required": ["city"]}}},
         {"type": "function", "function": {"name": "noop", "parameters": {}}}]

QWEN3_CASES = [
    ("user_gen", [{"role": "user", "content": "Hello!"}], True, None, None),
    ("system_multi_turn", [{"role": "system", "content": "You are Qwen."}, {"role": "user", "content": "2+2?"},
                           {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"},
                           {"role": "user", "content": "and 3+3?"}], True, None, None),
    ("thinking_in_last_assistant", [{"role": "user", "content": "q"},
                                    {"role": "assistant", "content": "<think>\nreason here\n</think>\n\nanswer"}], False, None, None),
    ("reasoning_content_field", [{"role": "user", "content": "q"},
                                 {"role": "assistant", "content": "final", "reasoning_content": "\nthought\n"}], False, None, None),
    ("tools_and_calls", [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather in Zürich?"},
                         {"role": "assistant", "content": "", "tool_calls": [
                             {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 2}}},
                             {"type": "function", "function": {"name": "noop", "arguments": "{\"raw\": 1}"}}]},
                         {"role": "tool", "content": "{\"temp\": 21.5}"}, {"role": "tool", "content": "ok"},
                         {"role": "assistant", "content": "It is 21.5 °C."}, {"role": "user", "content": "Thanks"}],
     True, TOOLS, None),
    ("tools_no_system", [{"role": "user", "content": "hi"}], True, TOOLS, None),
    ("enable_thinking_false", [{"role": "user", "content": "hi"}], True, None, {"enable_thinking": False}),
    ("tool_response_user", [{"role": "user", "content": "first"}, {"role": "assistant", "content": "calling"},
                            {"role": "user", "content": "<tool_response>\n42\n</tool_response>"}], True, None, None),
    ("assistant_content_then_call", [{"role": "user", "content": "x"},
                                     {"role": "assistant", "content": "Let me check.",
                                      "tool_calls": [{"name": "noop", "arguments": {}}]}], False, None, None),
    ("empty_messages_error", [], True, None, None),
]

FEATURES = [
    ("ws_dash", "a  {%- if true %}  b  {%- endif -%}  c\n  {{- ' d ' -}}  e", {}),
    ("trim_lstrip_blocks", "line1\n    {% if true %}\n    yes\n    {% endif %}\nend\n", {}),
    ("lstrip_not_for_vars", "x\n    {{ 'v' }}\n  {% if 1 %}y{% endif %}\n", {}),
    ("comment_lstrip", "a\n  {# comment #}\nb\n{#- c -#}\n  c", {}),
    ("plus_modifiers", "a\n  {%+ if true %}b{% endif +%}\nc", {}),
    ("raw_block", "{% raw %}{{ not rendered }} {% if %}{% endraw %}!", {}),
    ("crlf_normalised", "a\r\nb\rc\n{% if true %}\r\nd{% endif %}", {}),
    ("trailing_newline_dropped", "x\n", {}),
    ("loop_vars", "{% for x in items %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/"
     "{{ loop.first }}/{{ loop.last }}/{{ loop.length }}/{{ loop.previtem }}/{{ loop.nextitem }}/{{ loop.cycle('a','b') }};{% endfor %}",
     {"items": ["p", "q", "r"]}),
    ("for_else_filter_break", "{% for x in [] %}n{% else %}empty{% endfor %}|{% for x in range(10) if x is odd %}"
     "{% if x > 6 %}{% break %}{% endif %}{% if x == 3 %}{% continue %}{% endif %}{{ x }}{% endfor %}", {}),
    ("unpack_items", "{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}|{% for k, v in d|items %}{{ k }}{% endfor %}|"
     "{% for k in d %}{{ k }}{% endfor %}|{% for (a, b) in pairs %}{{ a }}{{ b }}{% endfor %}",
     {"d": {"z": 1, "a": [1, 2], "m": {"x": None}}, "pairs": [[1, 2], [3, 4]]}),
    ("set_scoping", "{% set x = 1 %}{% for i in [1, 2] %}{% set x = i %}{{ x }}{% endfor %}{{ x }}"
     "{% set ns = namespace(x=1, y='s') %}{% for i in [5, 6] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}{{ ns.y }}"
     "{% if true %}{% set z = 'iz' %}{% endif %}{{ z }}", {}),
    ("set_tuple_and_block", "{% set a, b = 1, 'two' %}{{ a }}{{ b }}{% set blk %}in {{ a }} block{% endset %}[{{ blk }}]", {}),
    ("slices", "{{ s[::-1] }}|{{ s[1:3] }}|{{ l[-2:] }}|{{ l[::2] }}|{{ s[1] }}|{{ l[-1] }}|{{ l.0 }}|{{ s[:-1] }}|{{ l[5:] }}|{{ l[::-1] }}",
     {"s": "héllo wörld", "l": [1, 2, 3, 4, 5]}),
    ("string_methods", "{{ s.startswith('  Hé') }} {{ s.endswith(('x', 'd  ')) }} [{{ s.strip() }}] [{{ s.lstrip() }}] "
     "[{{ s.rstrip() }}] {{ s.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.split(',', 1) }} {{ s.replace('l', 'L') }} "
     "{{ s.upper() }} {{ s.lower() }} {{ 'hello wORLD'.title() }} {{ 'hello WORLD'.capitalize() }} {{ s.find('l') }} "
     "{{ s.count('l') }} {{ '-'.join(['x', 'y']) }} {{ 'xxaxx'.strip('x') }} {{ '</think>\\n\\nok'.split('</think>')[-1].lstrip('\\n') }} "
     "{{ 'a b'.rsplit(' ', 1) }} {{ '12'.isdigit() }} {{ 'ab'.isalpha() }} {{ 'l1\\nl2'.splitlines() }}",
     {"s": "  Héllo wörld  "}),
    ("filters_text", "{{ '  x  '|trim }}|{{ 'abc'|upper }}|{{ 'ÀBC'|lower }}|{{ 'hello world-foo'|title }}|{{ 'hELLO'|capitalize }}|"
     "{{ [1, 2, 3]|length }}|{{ 'héllo'|length }}|{{ d|length }}|{{ 42|string }}|{{ [3, 1, 2]|first }}|{{ [3, 1, 2]|last }}|"
     "{{ ['a', 'b']|join(', ') }}|{{ [1, 2]|join }}|{{ missing|default('dflt') }}|{{ ''|default('e', true) }}|{{ 'abc'|list }}|"
     "{{ 'abc'|reverse }}|{{ [1, 2, 3]|reverse|list }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ '42'|int + 1 }}|{{ 'x'|int(7) }}|"
     "{{ '3.5'|float }}|{{ -3|abs }}|{{ 2.567|round(2) }}|{{ 2.5|round }}|{{ [3, 1, 2]|sort }}|{{ ['b', 'A', 'c']|sort(reverse=true) }}|"
     "{{ [1, 2, 1, 3]|unique|list }}|{{ [4, 2, 8]|min }}|{{ [4, 2, 8]|max }}|{{ [1, 2, 3]|sum }}|{{ 'a\\nb\\n\\nc'|indent(2) }}|"
     "{{ 'a\\nb'|indent(2, true) }}|{{ d|dictsort }}|{{ 'one two  three'|wordcount }}|{{ '<a&b>'|e }}",
     {"d": {"b": 2, "a": 1}}),
    ("filters_map_select", "{{ users|map(attribute='name')|join(',') }}|{{ users|selectattr('admin')|map(attribute='name')|list }}|"
     "{{ users|rejectattr('admin')|list|length }}|{{ [1, 2, 3, 4]|select('even')|list }}|{{ [1, 2, 3]|reject('odd')|list }}|"
     "{{ ['a', 'b']|map('upper')|list }}|{{ users|selectattr('name', 'equalto', 'bo')|list|length }}|{{ users|sort(attribute='name')|map(attribute='name')|list }}",
     {"users": [{"name": "cy", "admin": True}, {"name": "bo", "admin": False}, {"name": "al", "admin": True}]}),
    ("tojson", "{{ obj|tojson }}|{{ obj|tojson(indent=2) }}|{{ obj|tojson(sort_keys=true) }}|{{ 'é\"\\n'|tojson }}|"
     "{{ [1.0, 0.1, 1e20, 1e-7, -0.0, 123456789.125, 3]|tojson }}|{{ obj|tojson(separators=(',', ':')) }}|{{ {}|tojson }}|{{ []|tojson(indent=2) }}|"
     "{{ 'é😀'|tojson(ensure_ascii=true) }}",
     {"obj": {"name": "Zürich", "vals": [1, 2.5, True, None, "x\ty"], "nested": {"z": [], "a": {}}}}),
    ("tests", "{{ x is defined }}{{ y is defined }}{{ y is undefined }}{{ n is none }}{{ s is string }}{{ 1 is number }}"
     "{{ 1.5 is integer }}{{ 1.5 is float }}{{ true is boolean }}{{ d is mapping }}{{ l is mapping }}{{ l is iterable }}"
     "{{ s is iterable }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}{{ 1 is eq 1 }}"
     "{{ 'a' is in 'cat' }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ true is true }}{{ 0 is false }}{{ n is not none }}"
     "{{ l is sequence }}{{ x is string and x|length > 1 }}",
     {"x": "val", "n": None, "s": "str", "d": {"k": 1}, "l": [1]}),
    ("operators", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 6 / 3 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} "
     "{{ (1 + 2) * 3 }} {{ 'ab' * 3 }} {{ [1] + [2, 3] }} {{ 1 ~ 2 ~ none }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' in 'cat' }} "
     "{{ 2 not in [1, 3] }} {{ '' or 'x' }} {{ 0 and 1 }} {{ 'y' if false else 'n' }} {{ not true }} {{ -1|abs }} "
     "{{ 1 + [1, 2]|length }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' != 'b' }} {{ 0.1 + 0.2 }} {{ 1e300 * 10 }} {{ 10 / 4 * 2 }} "
     "{{ 'b' > 'a' }} {{ [1, 2] < [1, 3] }} {{ 3 - 5 }} {{ 1.5 + 1 }}", {}),
    ("printing", "{{ none }}|{{ true }}|{{ [1, 'a', none, true, 1.5] }}|{{ {'k': 'v', 'n': [1]} }}|{{ (1,) }}|{{ (1, 'b') }}|"
     "{{ \"it's\" }}|{{ ['it\\'s', 'q\"'] }}|{{ 1.0 }}|{{ 100000000000000000.0 }}|{{ 0.00001 }}|{{ 123456789012 }}|{{ missing }}|"
     "{{ ['\\n\\t', 'é'] }}", {}),
    ("string_literals", "{{ 'a\\tb' }}|{{ \"q\\\"q\" }}|{{ '\\u00e9\\x41\\U0001F600' }}|{{ 'x' 'y' }}|{{ 'back\\\\slash' }}|{{ '\\q' }}", {}),
    ("macros", "{% macro greet(name, greeting='Hi', punct='!') %}{{ greeting }}, {{ name }}{{ punct }}{% endmacro %}"
     "{{ greet('Ann') }} {{ greet('Bob', 'Yo') }} {{ greet('Cy', punct='?') }}{% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %} {{ rec(3) }}",
     {}),
    ("globals", "{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ dict(a=1, b='x') }} {% set ns = namespace(d={'k': 1}) %}{{ ns.d.k }} {{ namespace(a=1).a }}",
     {}),
    ("missing_attrs", "[{{ d.nope }}][{{ d['nope'] }}][{{ l[10] }}][{{ none_val.attr }}][{{ d.k }}][{{ d['k'] }}][{{ d.get('k') }}][{{ d.get('z', 'dz') }}]",
     {"d": {"k": "v"}, "l": [1], "none_val": None}),
    ("dict_attr_vs_item", "{{ d.items()|list }}|{{ d['items'] }}|{{ d.keys()|list }}|{{ d.values()|list }}", {"d": {"items": "I", "x": 1}}),
    ("generation_block", "{% for m in msgs %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}|{% endfor %}",
     {"msgs": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
    ("whitespace_heavy_template", "{%- for m in messages -%}\n    {%- if m.role == 'user' %}\n        {{- 'U: ' + m.content + '\\n' }}\n"
     "    {%- else %}\n        {{- 'A: ' + m.content + '\\n' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- 'A:' }}\n{%- endif %}\n",
     {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "add_generation_prompt": True}),
    ("nested_loops_loop_var", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.last }};{% endfor %}", {}),
    ("conditional_expr_chain", "{{ 'a' if x == 1 else 'b' if x == 2 else 'c' }}{{ 'd' if y }}!", {"x": 2, "y": False}),
    ("loop_scope_per_iteration", "{% set x = 0 %}{% for i in [1, 2] %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}|"
     "{% for i in [1, 2] %}{% if i == 2 %}[{{ y }}]{% endif %}{% set y = i %}{% endfor %}", {}),
    ("macro_closure", "{% macro m() %}{{ outer }}{% endmacro %}{% set outer = 5 %}{{ m() }}|"
     "{% for x in [7] %}{% macro n() %}{{ x }}{% endmacro %}{{ n() }}{% endfor %}", {}),
    ("percent_and_format", "{{ '%s-%d' % ('a', 3) }}|{{ '%5.2f|%-4s|%03d|%x|%%' % (3.14159, 'ab', 7, 255) }}|{{ '%s' % 'solo' }}|"
     "{{ '%(k)s=%(v)r' % {'k': 'key', 'v': 'val'} }}|{{ '{} {}'.format(1, 'b') }}|{{ '{0}{1}{0}'.format('x', 'y') }}|"
     "{{ '{name}!'.format(name='N') }}|{{ '{{literal}} {}'.format(2) }}|{{ '{0[k]}/{1.a}'.format({'k': 'K'}, ns) }}",
     {"ns": {"a": "A"}}),
    ("undefined_filters", "[{{ u|upper }}|{{ u|trim }}|{{ u|length }}|{{ u|string }}|{{ u ~ 'x' }}|{{ u|default(none) is none }}|"
     "{{ u|list }}|{{ u is iterable }}]", {}),
    ("misc_literals", "{{ 'a' ~ 1.0 }}{{ [1, 2,][1:] }}{{ {'a': 1,} }}{{ (1 == 1) + 1 }}{{ true + true }}{{ 5 // 2.0 }}{{ -5 % 2.5 }}"
     "{{ 2 ** -1 }}|{{ 0.1 }} {{ 1/3 }} {{ 1e16 }} {{ 1e15 }} {{ 123e-10 }} {{ -2.5e-5 }} {{ 2.0**60 }} {{ 1_000 }} {{ 0x1F }}", {}),
    ("unicode_whitespace_control", "x \u00a0 {%- if true %}y{% endif %}|{{ ' \u3000z\u3000 '|trim }}|{{ '\u00a0a b\u2003c'.split() }}",
     {}),
    ("tab_indented_blocks", "a\n\t{% if true %}\n\tb\n\t{% endif %}\nc\n{{ 1 }}\n  {% if true %}x{% endif %}", {}),
    ("raw_with_dashes", "{%- raw -%}  R  {%- endraw -%}  |", {}),
    # Errors (vlq must raise TemplateError).
    ("error_raise_exception", "{% if messages|length == 0 %}{{ raise_exception('No messages given!') }}{% endif %}ok", {"messages": []}),
    ("error_undefined_attr", "{{ x.y.z }}", {}),
    ("error_add_types", "{{ 'a' + 1 }}", {}),
    ("error_iterate_none", "{% for x in n %}{% endfor %}", {"n": None}),
    ("error_call_undefined", "{{ nothing() }}", {}),
    ("error_syntax_unclosed", "{% if true %}never closed", {}),
    ("error_syntax_bad_token", "{{ 1 + }}", {}),
    ("error_unknown_filter", "{{ 1|no_such_filter }}", {}),
    ("error_unknown_tag", "{% frobnicate %}", {}),
    ("error_compare_types", "{{ 1 < 'a' }}", {}),
]


# A Qwen2.5-Instruct style tool-calling template (as widely copied from the Qwen2.5 hub tokenizer_config.json;
# used here as an interpreter test, not as a claim about a specific checkpoint).
QWEN25_TOOLS = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

QWEN25_TOOLS_CASES = [
    ("plain", [{"role": "user", "content": "Hi"}], True, None, None),
    ("system", [{"role": "system", "content": "Sys."}, {"role": "user", "content": "Hi"}], False, None, None),
    ("tools_calls_responses", QWEN3_CASES[4][1], True, TOOLS, None),
    ("tools_default_system", [{"role": "user", "content": "hi"}], True, TOOLS, None),
]


def render(template, **kw):
    try:
        return {"expected": _compile_jinja_template(template).render(**kw)}
    except (jinja2.exceptions.TemplateError, TypeError, ValueError) as e:
        return {"error": f"{type(e).__name__}: {e}"}


def chat_cases(template, cases):
    out = []
    for name, messages, gen, tools, extra in cases:
        rec = {"name": name, "messages": messages, "add_generation_prompt": gen}
        if tools is not None:
            rec["tools"] = tools
        if extra:
            rec["extra"] = extra
        rec.update(render(template, messages=messages, tools=tools, documents=None, add_generation_prompt=gen,
                          **(extra or {})))
        out.append(rec)
    return out


def write(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{path}: {os.path.getsize(path)} bytes")


def check_against_transformers():
    # The tiny checkpoint's tokenizer carries the same template: apply_chat_template must agree with our render.
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(TINY)
    msgs = QWEN25VL_CASES[4][1]
    a = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    b = render(QWEN25VL, messages=msgs, tools=None, documents=None, add_generation_prompt=True)["expected"]
    assert a == b, (a, b)


def main():
    os.makedirs(OUT, exist_ok=True)
    check_against_transformers()
    write(os.path.join(OUT, "qwen2_5_vl.json"), {"template": QWEN25VL, "cases": chat_cases(QWEN25VL, QWEN25VL_CASES)})
    with open(QWEN3_CONFIG, encoding="utf-8") as f:
        qwen3 = json.load(f)["chat_template"]
    write(os.path.join(OUT, "qwen3.json"), {"template": qwen3, "cases": chat_cases(qwen3, QWEN3_CASES)})
    write(os.path.join(OUT, "qwen2_5_tools.json"),
          {"template": QWEN25_TOOLS, "cases": chat_cases(QWEN25_TOOLS, QWEN25_TOOLS_CASES)})
    feats = []
    for name, template, variables in FEATURES:
        rec = {"name": name, "template": template, "vars": variables}
        rec.update(render(template, **variables))
        feats.append(rec)
    write(os.path.join(OUT, "features.json"), {"cases": feats})
    for rec in feats:
        if rec["name"].startswith("error_") != ("error" in rec):
            raise SystemExit(f"unexpected outcome for {rec['name']}: {rec}")


if __name__ == "__main__":
    main()

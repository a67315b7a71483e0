#!/usr/bin/env python3
"""Write tests/fixtures/chat/renders.json: what Python's jinja2, set up exactly as Hugging Face
transformers sets it up for `apply_chat_template`, renders for Qwen3's chat template and for a
few small templates that probe the environment itself.

transformers (utils/chat_template_utils.py, `_compile_jinja_template` and `render_jinja_template`):
  env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                      extensions=[AssistantTracker, jinja2.ext.loopcontrols])
  env.filters["tojson"] = json.dumps with ensure_ascii=False (indent, separators, sort_keys passed on)
  env.globals["raise_exception"], env.globals["strftime_now"]
  template.render(messages=..., tools=None, documents=None, add_generation_prompt=...,
                  **tokenizer.special_tokens_map, **kwargs)   # kwargs: enable_thinking
AssistantTracker only matters for {% generation %} blocks, which these templates do not use.

  tools/chat_template_refs.py [TOKENIZER_CONFIG] [OUT_JSON]

Defaults: tests/fixtures/tokenizer/tokenizer_config.json and tests/fixtures/chat/renders.json
(run from the repository root). Needs the Python package jinja2 (>= 3.1).
"""
import hashlib
import json
import sys
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def compile_template(source):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def special_tokens_map(config):
    """transformers' special_tokens_map: the special tokens that are set, as text."""
    out = {}
    for key in ["bos_token", "eos_token", "unk_token", "pad_token"]:
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if value is not None:
            out[key] = value
    if config.get("additional_special_tokens"):
        out["additional_special_tokens"] = config["additional_special_tokens"]
    return out


def render(template, context):
    try:
        return {"expected": template.render(**context), "error": None}
    except jinja2.exceptions.TemplateError as e:
        return {"expected": None, "error": f"{type(e).__name__}: {e}"}


def msg(role, content):
    return {"role": role, "content": content}


THINK_REPLY = "<think>\nThe user greets me; answer briefly.\n</think>\n\nHello! How can I help?"

CONVERSATIONS = [
    ("single user turn", [msg("user", "Hello! Who are you?")]),
    ("system and user", [msg("system", "You are a terse assistant."),
                         msg("user", "Name three primes.")]),
    ("multi-turn, past reasoning stripped", [
        msg("system", "You are helpful."),
        msg("user", "Hi"),
        msg("assistant", THINK_REPLY),
        msg("user", "What is 2+2?"),
    ]),
    ("multi-turn without system", [
        msg("user", "Hi"),
        msg("assistant", "Hello!"),
        msg("user", "Bye"),
    ]),
    ("ends with an assistant turn that thought", [
        msg("user", "Hi"),
        msg("assistant", THINK_REPLY),
    ]),
    ("ends with an assistant turn without thinking", [
        msg("user", "Hi"),
        msg("assistant", "Hello there."),
    ]),
    ("assistant reply with only a closing think tag", [
        msg("user", "Q"),
        msg("assistant", "reasoning only\n</think>\n\nA"),
        msg("user", "Q2"),
    ]),
    ("unicode and whitespace", [
        msg("system", "  Réponds en français.\n"),
        msg("user", "你好 🦀\n\n\tcode:\n    x = 1  \n"),
        msg("assistant", "<think>\n\n嗯……\n\n</think>\n\n\n你好！🇫🇷 "),
        msg("user", "<think>not a real tag</think> and <|im_end|> text"),
    ]),
    ("system in the middle", [
        msg("user", "a"),
        msg("system", "b"),
        msg("user", "c"),
    ]),
    ("tool responses", [
        msg("user", "What's the weather?"),
        msg("assistant", "<think>\nI should call the tool.\n</think>\n\nLet me check."),
        msg("tool", "{\"temp\": 21}"),
        msg("tool", "{\"sky\": \"clear\"}"),
        msg("assistant", "<think>\nBoth results are in.\n</think>\n\nIt is 21 °C and clear."),
    ]),
    ("user message that looks like a tool response", [
        msg("user", "Real question"),
        msg("assistant", "<think>\nr1\n</think>\n\na1"),
        msg("user", "<tool_response>\nresult\n</tool_response>"),
    ]),
    ("empty contents", [msg("system", ""), msg("user", "")]),
    ("no messages", []),
]

# (add_generation_prompt, enable_thinking); None leaves enable_thinking undefined.
OPTIONS = [(True, None), (False, None), (True, False), (True, True), (False, False)]

DATA = {
    "b": [1, 2.5, "x", None, True, 1e-7, 1e16],
    "a": {"c": "é<>&' \"q\"\n\t🦀", "empty_list": [], "empty_map": {}},
}

ENVIRONMENT = [
    ("trim and lstrip blocks", "  {% if true %}\n  yes\n  {% endif %}\nend\n", {}),
    ("whitespace control", "{%- for m in messages %} [{{ m.content }}] {%- endfor %}|", {}),
    ("raise_exception", "{% if messages|length > 2 %}{{ raise_exception('too many: ' ~ messages|length) }}{% endif %}ok", {}),
    ("tojson", "{{ data|tojson }}", {"data": DATA}),
    ("tojson indent", "{{ data|tojson(indent=2) }}", {"data": DATA}),
    ("tojson indent string", "{{ data|tojson(indent='\\t') }}", {"data": DATA}),
    ("tojson indent 0", "{{ data|tojson(indent=0) }}", {"data": DATA}),
    ("tojson separators", "{{ data|tojson(separators=(',', ':')) }}", {"data": DATA}),
    ("tojson sort_keys", "{{ data|tojson(sort_keys=true, indent=1) }}", {"data": DATA}),
    ("tojson ensure_ascii", "{{ data|tojson(ensure_ascii=true) }}", {"data": DATA}),
    ("tojson scalars", "{{ 'a\"b'|tojson }} {{ 3|tojson }} {{ none|tojson }} {{ false|tojson }} {{ [ ]|tojson }}", {}),
    ("string methods", "{{ s.startswith('  ab') }} {{ s.endswith('yz \\n') }}|{{ s.strip() }}|{{ s.lstrip() }}|"
     "{{ s.rstrip() }}|{{ s.strip('\\n x') }}|{{ s.split('b')|join(',') }}|{{ s.split()|join(',') }}|"
     "{{ s.upper() }}|{{ s.lower() }}|{{ s.replace('a', 'A') }}|{{ s.count('a') }}|{{ s.find('c') }}",
     {"s": "  ab cab\tyz \n"}),
    ("split and index", "{{ s.split('</think>')[-1].lstrip('\\n') }}|{{ s.split('</think>')[0].rstrip('\\n').split('<think>')[-1] }}",
     {"s": "<think>\nr\n</think>\n\nanswer"}),
    ("reverse slice and loop", "{% for m in messages[::-1] %}{{ loop.index0 }}{{ m.role }}{% if loop.last %}.{% endif %}{% endfor %}", {}),
    ("namespace", "{% set ns = namespace(n=0, last=none) %}{% for m in messages %}{% set ns.n = ns.n + m.content|length %}{% set ns.last = m.role %}{% endfor %}{{ ns.n }} {{ ns.last }}", {}),
    ("loop controls", "{% for m in messages %}{% if loop.index0 == 1 %}{% continue %}{% endif %}{% if loop.index0 == 2 %}{% break %}{% endif %}{{ m.content }};{% endfor %}", {}),
    ("tests", "{{ x is defined }} {{ y is defined }} {{ x is none }} {{ f is false }} {{ t is true }} {{ x is string }} {{ messages is iterable }}",
     {"x": None, "f": False, "t": True}),
    ("undefined prints empty", "[{{ nothing }}][{{ messages[0].missing }}][{{ messages[9] }}]", {}),
    ("attribute of undefined", "{{ nothing.attr }}", {}),
    ("printed values", "{{ [1, 'a', none, true, 2.5, \"it's\"] }}|{{ {'k': 'v', 'n': [none]} }}|{{ none }}|{{ false }}|{{ 1e16 }}|{{ 0.1 + 0.2 }}", {}),
    ("concatenation", "{{ 'a' + 'b' ~ 1 ~ none }}|{{ 'x' in 'xyz' }}|{{ messages|length }}", {}),
    ("trailing newline", "text\n", {}),
]

ENV_MESSAGES = [msg("user", "hello"), msg("assistant", "hi there"), msg("user", "bye")]


def sorted_keys(x):
    """The context as a JSON round trip gives it to the Rust test (serde_json sorts keys)."""
    return json.loads(json.dumps(x, sort_keys=True))


def main():
    config_path = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tokenizer/tokenizer_config.json")
    out_path = Path(sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/chat/renders.json")
    config = json.loads(config_path.read_text())
    source = config["chat_template"]
    template = compile_template(source)
    specials = special_tokens_map(config)

    conversations = []
    for name, messages in CONVERSATIONS:
        for add_generation_prompt, enable_thinking in OPTIONS:
            context = {"messages": messages, "tools": None, "documents": None,
                       "add_generation_prompt": add_generation_prompt, **specials}
            if enable_thinking is not None:
                context["enable_thinking"] = enable_thinking
            conversations.append({
                "name": name, "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "enable_thinking": enable_thinking,
                **render(template, context),
            })

    environment = []
    for name, source_text, context in ENVIRONMENT:
        context = sorted_keys({"messages": ENV_MESSAGES, **context})
        environment.append({"name": name, "template": source_text, "context": context,
                            **render(compile_template(source_text), context)})

    out = {
        "generator": f"tools/chat_template_refs.py, jinja2 {jinja2.__version__}, the environment of "
                     "transformers' apply_chat_template",
        "template_sha256": hashlib.sha256(source.encode()).hexdigest(),
        "special_tokens": specials,
        "conversations": conversations,
        "environment": environment,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {out_path}: {len(conversations)} conversations, {len(environment)} environment cases")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write tests/fixtures/chat/qwen35/renders.json: what Python's jinja2, set up as transformers sets
it up for `apply_chat_template` (see chat_template_refs.py, whose environment and Qwen3
conversations this reuses), renders for Qwen3.5's chat template: plain conversations, thinking on
and off (`enable_thinking`), tools offered in the system turn, assistant tool calls with
arguments of every JSON type, tool results, `reasoning_content`, content given as parts (text,
image), and the template's own errors.

  tools/chat_template_refs_qwen35.py [TEMPLATE] [OUT_JSON]

Defaults: tests/fixtures/chat/qwen35/chat_template.jinja and tests/fixtures/chat/qwen35/renders.json
(run from the repository root). Needs the Python package jinja2 (>= 3.1).

Each case stores its whole context; keys are sorted (the Rust test's JSON maps are sorted, and a
tool's `tojson` or the arguments' `|items` follow the map's order).
"""
import hashlib
import json
import sys
from pathlib import Path

import jinja2

from chat_template_refs import CONVERSATIONS, compile_template, msg, render, sorted_keys

SPECIAL_TOKENS = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Paris"},
        "days": {"type": "integer"}, "units": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search", "description": "Search the web; returns titles and URLs.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}
TOOLS = [WEATHER, SEARCH]


def call(name, arguments):
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


ARGS = {"city": "Paris", "days": 3, "units": "c", "ratio": 0.5, "flags": [1, "two", None, True],
        "nested": {"a": {"b": []}, "é": "ü \"q\" <tag>"}, "empty": "", "yes": False}

TOOL_CONVERSATIONS = [
    ("tools offered, system prompt", [msg("system", "You are a weather bot."),
                                      msg("user", "Weather in Paris?")], TOOLS),
    ("tools offered, no system prompt", [msg("user", "Find the weather.")], [WEATHER]),
    ("tools offered, empty system prompt", [msg("system", "  "), msg("user", "Hi")], TOOLS),
    ("tool call, result, answer", [
        msg("user", "Weather in Paris for three days?"),
        {"role": "assistant", "content": "", "tool_calls": [call("get_weather", ARGS)]},
        msg("tool", "{\"temp\": [21, 19, 18]}"),
        msg("assistant", "<think>\nThe tool answered.\n</think>\n\nIt will be about 20 °C."),
    ], TOOLS),
    ("parallel calls after text, two results", [
        msg("user", "Weather and news for Paris?"),
        {"role": "assistant", "content": "<think>\nTwo tools.\n</think>\n\nChecking both.",
         "tool_calls": [call("get_weather", {"city": "Paris"}), call("search", {"query": "Paris news"})]},
        msg("tool", "sunny"),
        msg("tool", "<b>headline</b>"),
    ], TOOLS),
    ("call without function wrapper and without arguments", [
        msg("user", "ping"),
        {"role": "assistant", "content": "ok", "tool_calls": [{"name": "search"}]},
        msg("tool", "pong"),
        msg("user", "thanks"),
    ], TOOLS),
]

OTHER_CONVERSATIONS = [
    ("reasoning_content field, earlier turn", [
        msg("user", "Q1"),
        {"role": "assistant", "content": "A1", "reasoning_content": "  thought one \n"},
        msg("user", "Q2"),
    ]),
    ("reasoning_content field, after the last query", [
        msg("user", "Q1"),
        {"role": "assistant", "content": "A1", "reasoning_content": "thought"},
    ]),
    ("content as text parts", [
        {"role": "system", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " world"}]},
    ]),
    ("image and video parts", [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "and"}, {"type": "video"},
                                     {"type": "image", "image": "x.png"}, {"type": "text", "text": "What?"}]},
    ]),
    ("image in the system prompt", [
        {"role": "system", "content": [{"type": "image"}]}, msg("user", "Hi"),
    ]),
    ("only tool results, no user query", [msg("user", "<tool_response>\nx\n</tool_response>")]),
    ("unknown role", [msg("user", "Hi"), msg("critic", "meh")]),
]

OPTIONS = [(True, None), (True, False), (True, True), (False, None)]


def case(name, messages, add_generation_prompt, enable_thinking, tools=None, extra=None, plain=False):
    context = {"messages": messages, "tools": tools, "documents": None,
               "add_generation_prompt": add_generation_prompt, **SPECIAL_TOKENS, **(extra or {})}
    if enable_thinking is not None:
        context["enable_thinking"] = enable_thinking
    context = sorted_keys(context)
    return {"name": name, "plain": plain, "add_generation_prompt": add_generation_prompt,
            "enable_thinking": enable_thinking, "context": context, **render(TEMPLATE, context)}


def main():
    global TEMPLATE
    template_path = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/chat/qwen35/chat_template.jinja")
    out_path = Path(sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/chat/qwen35/renders.json")
    source = template_path.read_text()
    TEMPLATE = compile_template(source)
    cases = []
    for add, thinking in OPTIONS:
        # plain: role and content strings only, as the product's --chat passes them
        for name, messages in CONVERSATIONS:
            cases.append(case(name, messages, add, thinking, plain=True))
        for name, messages, tools in TOOL_CONVERSATIONS:
            cases.append(case(name, messages, add, thinking, tools=tools))
        for name, messages in OTHER_CONVERSATIONS:
            cases.append(case(name, messages, add, thinking))
    for vision_id in (True, False):
        name, messages = OTHER_CONVERSATIONS[3]
        cases.append(case(f"{name}, add_vision_id {vision_id}", messages, True, None,
                          extra={"add_vision_id": vision_id}))
    out = {
        "generator": f"tools/chat_template_refs_qwen35.py, jinja2 {jinja2.__version__}, the environment of "
                     "transformers' apply_chat_template",
        "template_sha256": hashlib.sha256(source.encode()).hexdigest(),
        "special_tokens": SPECIAL_TOKENS,
        "cases": cases,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    errors = sum(c["error"] is not None for c in cases)
    print(f"wrote {out_path}: {len(cases)} cases ({errors} raise errors)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/qwen35/llama_cpp_ids.json: llama.cpp's token ids for a set of
texts (English, contractions, Chinese, Japanese/Korean, emoji, code, digits, whitespace, other
scripts, combining marks, HTML, chat markup with special tokens), tokenized by the Qwen3.5/3.6
vocabulary embedded in a GGUF file (pre-tokenizer "qwen35"). Texts are NFC, as Qwen's own
tokenizer normalizes them first (llama.cpp does not normalize).

  PYTHONPATH=<llama-cpp-python source> LLAMA_CPP_LIB_PATH=<llama.cpp build/bin> \\
      python3 tools/qwen35_token_ids.py MODEL.gguf > tests/fixtures/tokenizer/qwen35/llama_cpp_ids.json

MODEL.gguf: any file with that vocabulary, e.g. the kit's tiny-qwen35-qwen35vocab-q8_0.gguf
(llama-tokenize --ids -m MODEL.gguf -p TEXT [--no-parse-special] gives the same ids).
Needs the llama-cpp-python bindings (its module imports `diskcache`; a stub will do).
"""
import json
import sys
import unicodedata

import llama_cpp

TEXTS = [
    ("english", "The quick brown fox jumps over the lazy dog."),
    ("contractions", "I'm sure you'll see they've done what we'd said; it's THEIR'S, isn't it? DON'T"),
    ("chinese", "人力资源部在加拿大的分公司今天发布了新的招聘计划，欢迎大家踊跃报名。"),
    ("japanese_korean", "東京は日本の首都です。서울은 한국의 수도입니다."),
    ("emoji", "Family: 👨\u200d👩\u200d👧\u200d👦, thumbs 👍🏽👍🏿, flags 🇨🇦🇯🇵, hearts ❤️\u200d🔥 and 🤖!"),
    ("code", "fn main() {\n    let xs: Vec<u32> = (0..10).map(|i| i * 2).collect();\n"
             "    println!(\"{xs:?} {}\", xs.len());\n}\n"),
    ("python", "def f(x):\n\treturn {'a': [1, 2, 3], \"b\": x ** 2}  # comment\r\n"),
    ("digits", "Pi is 3.14159265358979, 1234567890 and 2026-05-01T12:34:56Z; $1,000,000.99 or 0x7fffffff."),
    ("whitespace", "  leading\tand\t\ttrailing   \n\n\r\n  \u3000 full-width space\u00a0nbsp "),
    ("scripts", "Привет, мир! Γειά σου Κόσμε! مرحبا بالعالم! नमस्ते दुनिया! สวัสดีชาวโลก"),
    ("marks", "Ǹ̷o̶ marks: café, naïve, ế, Hà Nội, क्षत्रिय, ñ, a\u0308"),
    ("url_html", "See <a href=\"https://example.com/path?q=1&r=2#frag\">the link</a> or mailto:x@y.z"),
    ("chat", "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\nhmm\n</think>\n\nHi!<|im_end|>"),
    ("tools", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"),
]


def main(model):
    m = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
    out = []
    for name, text in TEXTS:
        text = unicodedata.normalize("NFC", text)
        special = name in ("chat", "tools")  # parse special-token text as those tokens
        ids = m.tokenize(text.encode(), add_bos=False, special=special)
        out.append({"name": name, "text": text, "parse_special": special, "ids": ids})
    source = f"llama.cpp (llama-cpp-python {llama_cpp.__version__}) on {model.rsplit('/', 1)[-1]}"
    rows = ",\n  ".join(json.dumps(o, ensure_ascii=False) for o in out)
    sys.stdout.write(f'{{"source": {json.dumps(source)},\n "texts": [\n  {rows}\n ]}}\n')


if __name__ == "__main__":
    main(sys.argv[1])

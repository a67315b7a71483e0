#!/usr/bin/env python3
"""Rewrites llama.cpp reference JSON files with every float in its shortest f32 form.

The references hold f32 logits that Python's json module wrote as f64 (17 digits); written as
the shortest decimal that reads back to the same f32, the files keep every value bit for bit
(the tests read them as f64 and round to f32) and take about half the space once gzipped.

    python3 tools/compact_refs.py tests/fixtures/refs/NAME.json.gz ...   # rewrites in place
    python3 tools/compact_refs.py SRC.json:tests/fixtures/refs/NAME.json.gz   # a new reference

Needs numpy.
"""
import gzip
import json
import sys

import numpy as np


def encode(x):
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return json.dumps(x)
    if isinstance(x, float):
        return np.format_float_positional(np.float32(x), unique=True, trim="-")
    if isinstance(x, list):
        return "[" + ",".join(encode(v) for v in x) + "]"
    if isinstance(x, dict):
        return "{" + ",".join(json.dumps(k) + ":" + encode(v) for k, v in x.items()) + "}"
    raise TypeError(f"unexpected {type(x)}")


def same_f32(a, b):
    if isinstance(a, float):
        return np.float32(a) == np.float32(b) or (np.isnan(a) and np.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same_f32(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_f32(a[k], b[k]) for k in a)
    return a == b


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def compact(src, dest):
    data = load(src)
    text = encode(data)
    if not same_f32(data, json.loads(text)):
        raise SystemExit(f"{src}: a value did not survive the f32 round trip")
    with open(dest, "wb") as f:
        f.write(gzip.compress(text.encode(), compresslevel=9, mtime=0))


def main(args):
    for arg in args:
        src, _, dest = arg.partition(":")
        compact(src, dest or src)


if __name__ == "__main__":
    main(sys.argv[1:])

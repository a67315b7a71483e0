#!/usr/bin/env python3
"""Writes the synthetic part of the fuzz seed corpus (fuzz/corpus/gguf_config/).

Small valid GGUF files (minimal Qwen3 models, every metadata type, every supported tensor type)
and a few invalid headers, written by hand from the GGUF spec so that malformed variants are easy.
Run from the repository root: python3 fuzz/make_corpus.py. Standard library only.
"""
import random
import struct
from pathlib import Path

OUT = Path("fuzz/corpus/gguf_config")
# (type id, block size, bytes per block) as in ggml.
TYPES = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20),
         "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q4_K": (12, 256, 144),
         "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210), "BF16": (30, 1, 2)}


def s(text):
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def value(ty, v):
    """A metadata value with its type id; arrays are ("arr", elem_ty, items)."""
    fmt = {"u8": (0, "<B"), "i8": (1, "<b"), "u16": (2, "<H"), "i16": (3, "<h"), "u32": (4, "<I"),
           "i32": (5, "<i"), "f32": (6, "<f"), "bool": (7, "<?"), "u64": (10, "<Q"),
           "i64": (11, "<q"), "f64": (12, "<d")}
    if ty == "str":
        return struct.pack("<I", 8) + s(v)
    if ty == "arr":
        elem_ty, items = v
        return struct.pack("<I", 9) + array_body(elem_ty, items)
    tid, f = fmt[ty]
    return struct.pack("<I", tid) + struct.pack(f, v)


def array_body(elem_ty, items):
    # An element is a value without its type id.
    body = b"".join(value(elem_ty, it)[4:] for it in items)
    tid = struct.unpack("<I", value(elem_ty, items[0] if items else default(elem_ty))[:4])[0]
    return struct.pack("<IQ", tid, len(items)) + body


def default(ty):
    return {"str": "", "arr": ("u8", []), "f32": 0.0, "f64": 0.0, "bool": False}.get(ty, 0)


def gguf(kv, tensors, version=3, alignment=32):
    """kv: [(key, type, value)]; tensors: [(name, type name, shape outermost first)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kv))
    out += b"".join(s(k) + value(t, v) for k, t, v in kv)
    rng = random.Random(7)
    datas, rel = [], 0
    for name, ty, shape in tensors:
        tid, block, size = TYPES[ty]
        n = 1
        for d in shape:
            n *= d
        nbytes = n // block * size
        out += s(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in reversed(shape))
        out += struct.pack("<IQ", tid, rel)
        datas.append((rel, data_bytes(ty, nbytes, rng)))
        rel = -(-(rel + nbytes) // alignment) * alignment
    out += b"\0" * (-len(out) % alignment)
    start = len(out)
    for rel, d in datas:
        out += b"\0" * (start + rel - len(out)) + d
    return out


def data_bytes(ty, n, rng):
    if ty == "F32":  # small finite floats, so norms and embeddings are sane numbers
        return b"".join(struct.pack("<f", rng.uniform(-1, 1)) for _ in range(n // 4))
    return bytes(rng.randrange(256) for _ in range(n))


def qwen3(hidden, layers, heads, kv_heads, head_dim, ffn, vocab, tied, mat="F32"):
    kv = [("general.architecture", "str", "qwen3"), ("general.name", "str", "fuzz-seed"),
          ("qwen3.context_length", "u32", 128), ("qwen3.embedding_length", "u32", hidden),
          ("qwen3.block_count", "u32", layers), ("qwen3.feed_forward_length", "u32", ffn),
          ("qwen3.attention.head_count", "u32", heads),
          ("qwen3.attention.head_count_kv", "u32", kv_heads),
          ("qwen3.attention.key_length", "u32", head_dim),
          ("qwen3.attention.value_length", "u32", head_dim),
          ("qwen3.rope.freq_base", "f32", 1e6),
          ("qwen3.attention.layer_norm_rms_epsilon", "f32", 1e-6),
          ("qwen3.vocab_size", "u32", vocab), ("tokenizer.ggml.model", "str", "none")]
    q, k = heads * head_dim, kv_heads * head_dim
    t = [("token_embd.weight", mat, [vocab, hidden]), ("output_norm.weight", "F32", [hidden])]
    if not tied:
        t.append(("output.weight", mat, [vocab, hidden]))
    for i in range(layers):
        b = f"blk.{i}."
        t += [(b + "attn_norm.weight", "F32", [hidden]), (b + "attn_q.weight", mat, [q, hidden]),
              (b + "attn_k.weight", mat, [k, hidden]), (b + "attn_v.weight", mat, [k, hidden]),
              (b + "attn_output.weight", mat, [hidden, q]),
              (b + "attn_q_norm.weight", "F32", [head_dim]),
              (b + "attn_k_norm.weight", "F32", [head_dim]), (b + "ffn_norm.weight", "F32", [hidden]),
              (b + "ffn_gate.weight", mat, [ffn, hidden]), (b + "ffn_up.weight", mat, [ffn, hidden]),
              (b + "ffn_down.weight", mat, [hidden, ffn])]
    return gguf(kv, t)


def every_value_type():
    kv = [("u8", "u8", 255), ("i8", "i8", -128), ("u16", "u16", 65535), ("i16", "i16", -1),
          ("u32", "u32", 2**32 - 1), ("i32", "i32", -(2**31)), ("f32", "f32", float("nan")),
          ("bool", "bool", True), ("str", "str", "héllo ✓"), ("u64", "u64", 2**64 - 1),
          ("i64", "i64", -(2**63)), ("f64", "f64", float("-inf")),
          ("tokenizer.ggml.tokens", "arr", ("str", ["a", "b", ""])),
          ("tokenizer.ggml.token_type", "arr", ("i32", [1, 2, 3])),
          ("bools", "arr", ("bool", [True, False])), ("empty", "arr", ("f64", [])),
          ("nested", "arr", ("arr", [("u16", [1, 2]), ("str", ["x"]), ("arr", [("u8", [])])])),
          ("general.alignment", "u32", 64)]
    return gguf(kv, [("t", "F16", [2, 3])], alignment=64)


def nested_too_deep():
    """An array nested one level deeper than the reader allows (8)."""
    inner = ("u8", [1])
    for _ in range(9):
        inner = ("arr", [inner])
    return gguf([("deep", "arr", inner)], [])


def qwen3_extra_layer():
    """block_count 1 but a blk.1 tensor: the config check must refuse it."""
    base = qwen3(8, 2, 2, 1, 4, 16, 16, tied=True)
    return base.replace(b"qwen3.block_count\x04\x00\x00\x00\x02",
                        b"qwen3.block_count\x04\x00\x00\x00\x01")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    files = {
        "min-qwen3-f32-tied.gguf": qwen3(8, 1, 2, 1, 4, 16, 16, tied=True),
        "min-qwen3-q8_0-untied.gguf": qwen3(32, 2, 2, 1, 16, 32, 8, tied=False, mat="Q8_0"),
        "every-value-type.gguf": every_value_type(),
        "one-row-each-type.gguf": gguf([("general.architecture", "str", "none")],
                                       [(ty.lower(), ty, [2, TYPES[ty][1] * 2 if TYPES[ty][1] > 1
                                                          else 8]) for ty in TYPES]),
        "qwen3-extra-layer.gguf": qwen3_extra_layer(),
        "nested-too-deep.gguf": nested_too_deep(),
        "empty-v3.gguf": gguf([], []),
        "empty-v2.gguf": gguf([], [], version=2),
        "version1.gguf": b"GGUF" + struct.pack("<IQQ", 1, 0, 0),
        "big-endian.gguf": b"GGUF" + struct.pack(">IQQ", 3, 0, 0),
        "not-gguf.bin": b"GGML\x01\x00\x00\x00",
    }
    for name, data in files.items():
        (OUT / name).write_bytes(data)


if __name__ == "__main__":
    main()

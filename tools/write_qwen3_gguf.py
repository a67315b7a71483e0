#!/usr/bin/env python3
"""Write a Qwen3-shaped GGUF file (F16 or Q8_0) fast, for timing runs on a machine without gguf-py.

Needs only python3 and numpy (the GPU machine has both). The layout (tensor names, shapes,
metadata keys) is what llama.cpp's converter writes for Qwen3ForCausalLM (as make_qwen3_gguf.py,
the gguf-py based maker bench/bench.py uses, writes it); the model has no tokenizer ("none": feed
--token-ids).

The weights are random but not all independent: each tensor is a small random pool repeated,
scaled to the variance make_qwen3_gguf.py uses, so a 4B-parameter file is written at disk speed.
Use it for speed, never for numerics.

  write_qwen3_gguf.py OUT.gguf --shape qwen3-4b --type f16
  write_qwen3_gguf.py OUT.gguf --shape qwen3-4b --type q8_0 --layers 2
"""
import argparse
import struct

import numpy as np

SHAPES = {
    # name: hidden, layers, heads, kv heads, head_dim, FFN width, tied embeddings, vocabulary
    "tiny": dict(hidden=32, layers=2, heads=4, kv=2, head_dim=16, inter=96, tied=True, vocab=512),
    "qwen3-0.6b": dict(hidden=1024, layers=28, heads=16, kv=8, head_dim=128, inter=3072, tied=True,
                       vocab=151936),
    "qwen3-1.7b": dict(hidden=2048, layers=28, heads=16, kv=8, head_dim=128, inter=6144, tied=True,
                       vocab=151936),
    "qwen3-4b": dict(hidden=2560, layers=36, heads=32, kv=8, head_dim=128, inter=9728, tied=True,
                     vocab=151936),
    "qwen3-8b": dict(hidden=4096, layers=36, heads=32, kv=8, head_dim=128, inter=12288, tied=False,
                     vocab=151936),
}

# GGUF value types and ggml tensor types (ggml.h, gguf.h).
U32, F32, STR = 4, 6, 8
GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8
FILE_TYPE = {"f16": 1, "q8_0": 7}  # LLAMA_FTYPE_MOSTLY_*
ALIGN = 32
POOL = 1 << 20  # elements per random pool


def tensor_plan(p):
    """(name, shape as (out, in) like PyTorch, kind) in llama.cpp's order."""
    H, hd = p["hidden"], p["head_dim"]
    plan = [("token_embd.weight", (p["vocab"], H), "embd")]
    for i in range(p["layers"]):
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", (H,), "norm"),
            (b + "attn_q.weight", (p["heads"] * hd, H), "mat"),
            (b + "attn_k.weight", (p["kv"] * hd, H), "mat"),
            (b + "attn_v.weight", (p["kv"] * hd, H), "mat"),
            (b + "attn_q_norm.weight", (hd,), "norm"),
            (b + "attn_k_norm.weight", (hd,), "norm"),
            (b + "attn_output.weight", (H, p["heads"] * hd), "mat"),
            (b + "ffn_norm.weight", (H,), "norm"),
            (b + "ffn_gate.weight", (p["inter"], H), "mat"),
            (b + "ffn_up.weight", (p["inter"], H), "mat"),
            (b + "ffn_down.weight", (H, p["inter"]), "mat"),
        ]
    plan.append(("output_norm.weight", (H,), "norm"))
    if not p["tied"]:
        plan.append(("output.weight", (p["vocab"], H), "embd"))
    return plan


def ggml_type(kind, wtype):
    if kind == "norm":
        return GGML_F32
    return GGML_F16 if wtype == "f16" else GGML_Q8_0


def nbytes(shape, t):
    n = int(np.prod(shape))
    if t == GGML_F32:
        return 4 * n
    if t == GGML_F16:
        return 2 * n
    assert shape[-1] % 32 == 0, "Q8_0 rows must be whole 32-value blocks"
    return n // 32 * 34


def s_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    out = s_string(key) + struct.pack("<I", vtype)
    if vtype == STR:
        return out + s_string(value)
    return out + struct.pack("<I" if vtype == U32 else "<f", value)


def metadata(p, wtype, name, context):
    a = "qwen3"
    return [
        kv("general.architecture", STR, a),
        kv("general.name", STR, name),
        kv(f"{a}.context_length", U32, context),
        kv(f"{a}.embedding_length", U32, p["hidden"]),
        kv(f"{a}.block_count", U32, p["layers"]),
        kv(f"{a}.feed_forward_length", U32, p["inter"]),
        kv(f"{a}.attention.head_count", U32, p["heads"]),
        kv(f"{a}.attention.head_count_kv", U32, p["kv"]),
        kv(f"{a}.attention.key_length", U32, p["head_dim"]),
        kv(f"{a}.attention.value_length", U32, p["head_dim"]),
        kv(f"{a}.rope.freq_base", F32, 1_000_000.0),
        kv(f"{a}.attention.layer_norm_rms_epsilon", F32, 1e-6),
        kv("general.file_type", U32, FILE_TYPE[wtype]),
        kv("general.quantization_version", U32, 2),
        kv("tokenizer.ggml.model", STR, "none"),
        kv(f"{a}.vocab_size", U32, p["vocab"]),
    ]


def pool_bytes(rng, kind, t, shape, gain):
    """One pool of encoded values with the tensor's spread: 1 + 0.2 N for norms, N for the
    embedding, gain / sqrt(fan-in) N for projections."""
    x = rng.standard_normal(POOL, dtype=np.float32)
    if kind == "norm":
        return (1.0 + 0.2 * x).astype("<f4").tobytes()
    std = 1.0 if kind == "embd" else gain / np.sqrt(shape[-1])
    x *= std
    if t == GGML_F16:
        return x.astype("<f2").tobytes()
    blocks = x.reshape(-1, 32)
    d = np.abs(blocks).max(axis=1) / 127.0
    q = np.round(blocks / np.where(d == 0, 1, d)[:, None]).astype(np.int8)
    out = np.empty(len(blocks), dtype=[("d", "<f2"), ("q", "i1", 32)])
    out["d"], out["q"] = d.astype(np.float16), q
    return out.tobytes()


def write_repeated(f, pool, n):
    """Writes n bytes: the pool, repeated."""
    view = memoryview(pool)
    while n > 0:
        k = min(n, len(view))
        f.write(view[:k])
        n -= k


def pad(f, pos):
    gap = (-pos) % ALIGN
    f.write(b"\0" * gap)
    return pos + gap


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--shape", choices=SHAPES, default="qwen3-4b")
    ap.add_argument("--type", choices=FILE_TYPE, default="f16")
    ap.add_argument("--layers", type=int, help="override the shape's layer count")
    ap.add_argument("--vocab", type=int, help="override the shape's vocabulary")
    ap.add_argument("--context", type=int, default=40960)
    ap.add_argument("--gain", type=float, default=3.0, help="as make_qwen3_gguf.py's --gain")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    p = dict(SHAPES[a.shape])
    if a.layers:
        p["layers"] = a.layers
    if a.vocab:
        p["vocab"] = a.vocab
    plan = tensor_plan(p)
    name = f"random-{a.shape}-{a.type}-seed{a.seed} (repeated pools, for timing only)"
    kvs = metadata(p, a.type, name, a.context)
    rng = np.random.default_rng(a.seed)

    with open(a.out, "wb") as f:
        pos = f.write(b"GGUF" + struct.pack("<IQQ", 3, len(plan), len(kvs)))
        for entry in kvs:
            pos += f.write(entry)
        offset = 0
        for tname, shape, kind in plan:
            t = ggml_type(kind, a.type)
            dims = shape[::-1]  # GGUF lists dimensions innermost first
            pos += f.write(s_string(tname) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, t, offset))
            offset += nbytes(shape, t)
            offset += (-offset) % ALIGN
        pos = pad(f, pos)
        for tname, shape, kind in plan:
            t = ggml_type(kind, a.type)
            n = nbytes(shape, t)
            write_repeated(f, pool_bytes(rng, kind, t, shape, a.gain), n)
            pos = pad(f, pos + n)
    params = sum(int(np.prod(s)) for _, s, _ in plan)
    print(f"wrote {a.out}: {a.shape} ({p['layers']} layers, vocab {p['vocab']}), {a.type}, "
          f"{params / 1e9:.2f} B parameters, {pos / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()

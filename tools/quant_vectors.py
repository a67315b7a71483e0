#!/usr/bin/env python3
"""Write tests/fixtures/quant_vectors.json: dequantization test vectors for every supported type.

Two kinds of case, each with the block bytes and the f32 values that ggml's reference
dequantization gives (the gguf package's numpy port of ggml-quants.c, which follows the same
operation order):
- "quantize": seeded random rows quantized with ggml's reference quantizer, for the types the
  fixture models lack (Q4_1, Q5_0, Q5_1) and Q8_0, Q4_0.
- "random_bytes": seeded random block bytes (every bit pattern a quantizer could write, and
  more), for every supported type, with the f16 scales kept finite. (gguf-py has no quantizer
  for Q2_K, Q3_K, IQ4_NL, IQ4_XS, the low-bit i-quants and MXFP4; the fixture models made by
  llama-quantize hold real ones.)

  tools/quant_vectors.py [OUT_JSON]     (default tests/fixtures/quant_vectors.json)

Needs the Python packages gguf and numpy.
"""
import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

QUANTIZE_TYPES = [T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_0]
BLOCK_TYPES = [T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q4_K, T.Q5_K, T.Q6_K]
# Appended so the cases above keep their bytes (one seeded stream feeds them all).
BLOCK_TYPES += [T.Q2_K, T.Q3_K, T.IQ4_NL, T.IQ4_XS]
BLOCK_TYPES += [T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.IQ1_S, T.IQ1_M, T.MXFP4]
# Byte offsets of the f16 scales in each block (ggml-common.h).
F16_FIELDS = {
    T.F16: [0],
    T.Q8_0: [0],
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.IQ4_NL: [0],
    T.IQ4_XS: [0],
    T.IQ2_XXS: [0],
    T.IQ2_XS: [0],
    T.IQ2_S: [0],
    T.IQ3_XXS: [0],
    T.IQ3_S: [0],
    T.IQ1_S: [0],
}


def case(qtype, source, raw: np.ndarray) -> dict:
    expected = dequantize(raw, qtype).astype("<f4")
    return {
        "type": qtype.name,
        "source": source,
        "n_weights": int(expected.size),
        "bytes": raw.tobytes().hex(),
        "expected_f32_le": expected.tobytes().hex(),
    }


def quantized_rows(rng, qtype) -> np.ndarray:
    rows = rng.standard_normal((2, 64)).astype(np.float32)
    rows[1] *= 1e-3  # small weights: tiny scales, near-subnormal f16
    rows[1, :32] = 0.0  # an all-zero block: d = 0
    return quantize(rows, qtype)


def random_blocks(rng, qtype) -> np.ndarray:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    n_blocks = 3 if block_size > 1 else 256
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for at in F16_FIELDS.get(qtype, []):
        # Exponent field 0x1F is inf/NaN: clear its lowest bit so every scale is finite.
        raw[:, at + 1] &= np.uint8(0b1111_1011)
    if qtype == T.BF16:
        raw[:, 0] &= np.uint8(0b0111_1111)  # lowest exponent bit clear: finite
    if qtype == T.IQ1_M:
        # The f16 scale is spread over the top nibbles of the four scale words; its exponent's
        # top bit is bit 14 of the last word (byte 55, bit 6).
        raw[:, 55] &= np.uint8(0b1011_1111)
    return raw


def main(out_path: Path):
    rng = np.random.default_rng(20250101)
    cases = [case(t, "quantize", quantized_rows(rng, t)) for t in QUANTIZE_TYPES]
    cases += [case(t, "random_bytes", random_blocks(rng, t)) for t in BLOCK_TYPES]
    out_path.write_text(json.dumps({"cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/quant_vectors.json"))

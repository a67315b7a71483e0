#!/usr/bin/env python3
"""Write src/quant/grid_data.rs: the lattice grids of the i-quants, read back through ggml's dequantization.

IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and IQ1_M store, per group of 8 (IQ3: 4) weights, an
index into a fixed table of grid points (ggml-common.h's iq2xxs_grid ... iq1s_grid); the points are a
selection made when the formats were designed, so they are data, not something a formula gives.
This script does not transcribe those tables: it builds blocks that select every index in turn
with unit scales and no signs, dequantizes them with the gguf package's port of ggml's reference
dequantization (the same operation order as ggml-quants.c; checked bit for bit against llama.cpp on
the fixture models), and records which level each coordinate took. The Rust side stores each point
as a u16 of level indices (2 bits per coordinate for the 3-level grids, 3 bits for the 8-level IQ3
grids) and expands them into byte tables at compile time (src/quant/grids.rs).

  tools/iq_grids.py [OUT_RS]     (default src/quant/grid_data.rs; run from the repository root)

Needs the Python packages gguf and numpy.
"""
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

ONE_F16 = (0x00, 0x3C)  # 1.0 as little-endian f16


def blocks_for(qtype, entries: int, per_block: int, fill) -> np.ndarray:
    """`entries / per_block` blocks of `qtype`, each filled by `fill(block, first_entry)`."""
    _, type_size = GGML_QUANT_SIZES[qtype]
    n = entries // per_block
    raw = np.zeros((n, type_size), dtype=np.uint8)
    for b in range(n):
        fill(raw[b], b * per_block)
    return raw


def iq2_xxs(blk, first):
    blk[0:2] = ONE_F16
    for ib in range(8):
        # aux32[0]: four 8-bit indices; aux32[1] = 0: scale 0 (0.125 after the 0.5 and 0.25), no signs.
        blk[2 + 8 * ib: 2 + 8 * ib + 4] = [first + 4 * ib + l for l in range(4)]


def iq2_xs(blk, first):
    blk[0:2] = ONE_F16
    for k in range(32):
        idx = first + k  # 9-bit index, sign bits (15..9) zero
        blk[2 + 2 * k: 4 + 2 * k] = [idx & 0xFF, idx >> 8]


def iq2_s(blk, first):
    blk[0:2] = ONE_F16
    for k in range(32):
        idx = first + k
        ib, l = divmod(k, 4)
        blk[2 + k] = idx & 0xFF
        blk[66 + ib] |= (idx >> 8) << (2 * l)  # qh: 2 high bits per group


def iq3_xxs(blk, first):
    blk[0:2] = ONE_F16
    blk[2:66] = [first + k for k in range(64)]  # scales/signs zero: db = 0.25


def iq3_s(blk, first):
    blk[0:2] = ONE_F16
    for k in range(64):
        idx = first + k
        ib, j = divmod(k, 8)
        blk[2 + k] = idx & 0xFF
        blk[66 + ib] |= (idx >> 8) << j  # qh: 1 high bit per index
    # signs and scales zero: db = 1


def iq1_s(blk, first):
    blk[0:2] = ONE_F16
    for ib in range(8):
        qh = 0  # scale bits 0 (dl = 1), delta +0.125
        for l in range(4):
            idx = first + 4 * ib + l
            blk[2 + 4 * ib + l] = idx & 0xFF
            qh |= (idx >> 8) << (3 * l)
        blk[34 + 2 * ib: 36 + 2 * ib] = [qh & 0xFF, qh >> 8]


# name, type, entries, entries per block, filler, weights per point, level values, values -> levels
GRIDS = [
    ("IQ2XXS", T.IQ2_XXS, 256, 32, iq2_xxs, 8, (8, 25, 43), lambda y: y * 8),
    ("IQ2XS", T.IQ2_XS, 512, 32, iq2_xs, 8, (8, 25, 43), lambda y: y * 8),
    ("IQ2S", T.IQ2_S, 1024, 32, iq2_s, 8, (8, 25, 43), lambda y: y * 8),
    ("IQ3XXS", T.IQ3_XXS, 256, 64, iq3_xxs, 4, (4, 12, 20, 28, 36, 44, 52, 62), lambda y: y * 4),
    ("IQ3S", T.IQ3_S, 512, 64, iq3_s, 4, (1, 3, 5, 7, 9, 11, 13, 15), lambda y: y),
    ("IQ1S", T.IQ1_S, 2048, 32, iq1_s, 8, (-1, 0, 1), lambda y: y - 0.125),
]


def grid_points(qtype, entries, per_block, fill, width, levels, to_level) -> list[int]:
    raw = blocks_for(qtype, entries, per_block, fill)
    values = to_level(dequantize(raw, qtype).astype(np.float64)).reshape(entries, width)
    bits = 2 if len(levels) <= 4 else 3
    packed = []
    for point in values:
        word = 0
        for j, v in enumerate(point):
            if v not in levels:
                sys.exit(f"{qtype.name}: value {v} is not one of the levels {levels}")
            word |= levels.index(int(v)) << (bits * j)
        packed.append(word)
    return packed


def rust_table(name: str, packed: list[int]) -> str:
    lines = [f"pub(super) const {name}: [u16; {len(packed)}] = ["]
    for i in range(0, len(packed), 12):
        lines.append("    " + " ".join(f"0x{w:04x}," for w in packed[i:i + 12]))
    lines.append("];")
    return "\n".join(lines)


def main(out: Path):
    parts = [
        "//! The i-quant lattice grids as level indices per coordinate, written by `tools/iq_grids.py`",
        "//! from ggml's dequantization (do not edit; `grids.rs` expands and documents them).",
        "",
        "// Generated: one u16 per grid point, 2 bits per coordinate (3 for the IQ3 grids), lowest first.",
        "",
    ]
    for name, qtype, entries, per_block, fill, width, levels, to_level in GRIDS:
        packed = grid_points(qtype, entries, per_block, fill, width, levels, to_level)
        parts.append(rust_table(f"{name}_POINTS", packed))
        parts.append("")
    out.write_text("\n".join(parts))


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "src/quant/grid_data.rs"))

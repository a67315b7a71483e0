#!/usr/bin/env python3
"""Benchmark files for `--mtp`: a Q8_0 qwen35 file with a random multi-token-prediction block
(made by make_qwen3_gguf.py --mtp; its drafts are almost never accepted) rewritten into files
whose block agrees with the trunk, by the construction the tests use (tests/common/mtp_model.rs):

  - the trunk's output projections (`attn_output`, `ssm_out`, `ffn_down`) are scaled by S, so at
    S = 0 the trunk predicts from the current token's embedding alone;
  - the block reads only the embedding half of its input (`nextn.eh_proj = [I | 0]`, `enorm` all
    ones), its attention and feed-forward outputs are zero (`attn_output`, `ffn_down` of the block)
    and its head norm is `output_norm`: it drafts what that trunk predicts.

S = 0 accepts every draft; a small S lets the context move the trunk's choice away from the draft
now and then (partial acceptance). Every tensor keeps its type and size, so a decode step reads
the same bytes as the random file's.

  bench/mtp_models.py SRC-with-mtp-q8_0.gguf OUT.gguf --trunk-scale S

Needs the Python packages gguf and numpy.
"""
import argparse

import numpy as np
from gguf import GGUFReader, GGUFWriter, GGMLQuantizationType as Q, GGUFValueType as V
from gguf.quants import quantize

OUTPUTS = (".attn_output.weight", ".ssm_out.weight", ".ffn_down.weight")


def q8_0_scaled(raw: np.ndarray, scale: float) -> np.ndarray:
    """Q8_0 bytes with every block's f16 scale multiplied by `scale` (34-byte blocks: f16 d,
    then 32 int8)."""
    blocks = raw.reshape(-1, 34).copy()
    d = blocks[:, :2].copy().view(np.float16) * np.float16(scale)
    blocks[:, :2] = d.astype(np.float16).view(np.uint8)
    return blocks.reshape(raw.shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--trunk-scale", type=float, default=0.0)
    a = ap.parse_args()
    r = GGUFReader(a.src)
    arch = r.fields["general.architecture"].contents()
    blocks = r.fields[f"{arch}.block_count"].contents()
    mtp = r.fields[f"{arch}.nextn_predict_layers"].contents()
    assert mtp == 1, "the source needs one MTP block (make_qwen3_gguf.py --mtp)"
    block = f"blk.{blocks - 1}."
    hidden = r.fields[f"{arch}.embedding_length"].contents()
    w = GGUFWriter(a.out, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if f.types[0] == V.ARRAY:
            w.add_key_value(name, f.contents(), V.ARRAY, sub_type=f.types[-1])
        else:
            w.add_key_value(name, f.contents(), f.types[0])
    output_norm = next(np.array(t.data) for t in r.tensors if t.name == "output_norm.weight")
    for t in r.tensors:
        data = np.array(t.data)
        in_block = t.name.startswith(block)
        if t.tensor_type == Q.Q8_0 and t.name.endswith(OUTPUTS):
            data = q8_0_scaled(data, 0.0 if in_block else a.trunk_scale)
        elif t.name == block + "nextn.eh_proj.weight":
            eye = np.concatenate([np.eye(hidden, dtype=np.float32),
                                  np.zeros((hidden, hidden), dtype=np.float32)], axis=1)
            data = quantize(eye, t.tensor_type) if t.tensor_type != Q.F32 else eye
        elif t.name == block + "nextn.enorm.weight":
            data = np.ones_like(data)
        elif t.name == block + "nextn.shared_head_norm.weight":
            data = output_norm.copy()
        if t.tensor_type in (Q.F32, Q.F16):
            w.add_tensor(t.name, data)
        else:
            w.add_tensor(t.name, data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()

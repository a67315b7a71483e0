#!/usr/bin/env python3
"""Copies a GGUF file without its tokenizer.* metadata (tensors and other keys unchanged).

Made tests/fixtures/models/tiny-moe-qwen3vocab-q4_0.gguf (the tests pass the Qwen3 tokenizer with
--tokenizer, so the fixture need not carry a second copy of it):

  gunzip -k tests/fixtures/tokenizer/tokenizer.json.gz    # committed gzipped
  ../shared/tools/make_qwen3_gguf.py target/full.gguf --preset tiny-moe --type q4_0 --vocab qwen3 \
      --tokenizer tests/fixtures/tokenizer/tokenizer.json \
      --chat-template tests/fixtures/tokenizer/tokenizer_config.json --set tied=1 --seed 6
  tools/strip_tokenizer.py target/full.gguf tests/fixtures/models/tiny-moe-qwen3vocab-q4_0.gguf

Needs the Python packages gguf and numpy.
"""
import gguf, sys, numpy as np
src, dst = sys.argv[1], sys.argv[2]
r = gguf.GGUFReader(src)
arch = bytes(r.fields["general.architecture"].parts[r.fields["general.architecture"].data[0]]).decode()
w = gguf.GGUFWriter(dst, arch)
for f in r.fields.values():
    if f.name.startswith("GGUF.") or f.name == "general.architecture" or f.name.startswith("tokenizer."):
        continue
    t = f.types[0]
    if t == gguf.GGUFValueType.STRING:
        w.add_string(f.name, bytes(f.parts[f.data[0]]).decode())
    else:
        v = f.parts[f.data[0]].tolist()[0]
        {gguf.GGUFValueType.UINT32: w.add_uint32, gguf.GGUFValueType.INT32: w.add_int32,
         gguf.GGUFValueType.FLOAT32: w.add_float32, gguf.GGUFValueType.UINT64: w.add_uint64,
         gguf.GGUFValueType.BOOL: w.add_bool}[t](f.name, v)
for t in r.tensors:
    w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

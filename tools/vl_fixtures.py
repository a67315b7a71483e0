#!/usr/bin/env python3
"""Make the Qwen3-VL text-path references (tests/fixtures/refs/tiny-qwen3vl*.json.gz).

Qwen3-VL's language model is Qwen3 (or Qwen3-MoE) with interleaved multi-section rotary
embeddings and `n_deepstack_layers` layers that add image features (none for text). No
fixture file is shipped: the tests derive the models at test time from tiny-f32.gguf and
tiny-moe-f32.gguf (tests/common/vision_language.rs), with the same change this script makes:

  - `general.architecture` qwen3 -> qwen3vl (qwen3moe -> qwen3vlmoe), every `qwen3*.` key
    renamed to the new prefix;
  - `{arch}.rope.dimension_sections` added (see SECTIONS: the dense one leaves five of the
    eight rotary pairs to the fourth axis, which a text position does not turn, so a reader
    that ignores the sections fails (llama.cpp's greedy tokens change); the MoE one covers
    every pair, as real files do);
  - `{arch}.n_deepstack_layers` = 1.

References are llama.cpp's (the reference kit's reference_logits.py with llama.cpp's Python
bindings), prompt and step count as tiny-f32.json; written gzipped with every float in its
shortest f32 form (tools/compact_refs.py).

  KIT_TOOLS=../shared/tools tools/vl_fixtures.py [WORK_DIR]

(run from the repository root with PYTHONPATH and LLAMA_CPP_LIB_PATH as reference_logits.py
needs them). Needs the Python packages gguf and numpy.
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFWriter, GGUFValueType as V

FIXTURES = Path("tests/fixtures")
# source fixture -> (architecture, rope sections of the 8 rotary pairs of a 16-wide head)
SECTIONS = {
    "tiny-f32": ("qwen3vl", [1, 1, 1, 5]),
    "tiny-moe-f32": ("qwen3vlmoe", [3, 3, 2, 0]),
}
DEEPSTACK_LAYERS = 1


def vision_language(src: Path, dst: Path, arch: str, sections: list):
    r = GGUFReader(src)
    old = r.fields["general.architecture"].contents()
    w = GGUFWriter(dst, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name.startswith(old + "."):
            name = arch + name[len(old):]
        if f.types[0] == V.ARRAY:
            w.add_key_value(name, f.contents(), V.ARRAY, sub_type=f.types[-1])
        else:
            w.add_key_value(name, f.contents(), f.types[0])
    w.add_key_value(f"{arch}.rope.dimension_sections", sections, V.ARRAY, sub_type=V.INT32)
    w.add_key_value(f"{arch}.n_deepstack_layers", DEEPSTACK_LAYERS, V.UINT32)
    for t in r.tensors:
        w.add_tensor(t.name, np.array(t.data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    kit = Path(os.environ.get("KIT_TOOLS", "../shared/tools"))
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    prompt = json.loads(gzip.open(FIXTURES / "refs/tiny-f32.json.gz").read())
    ids = ",".join(map(str, prompt["prompt_ids"]))
    steps = str(len(prompt["greedy_ids"]))
    for stem, (arch, sections) in SECTIONS.items():
        model = work / f"tiny-{arch}-f32.gguf"
        vision_language(FIXTURES / f"models/{stem}.gguf", model, arch, sections)
        out = subprocess.run(
            [sys.executable, kit / "reference_logits.py", model, "--ids", ids, "--steps", steps],
            check=True, capture_output=True, text=True).stdout
        raw = work / f"{model.stem}.json"
        raw.write_text(out)
        ref = FIXTURES / f"refs/{model.stem}.json.gz"
        subprocess.run([sys.executable, "tools/compact_refs.py", f"{raw}:{ref}"], check=True)
        print(f"{ref}: {len(json.loads(out)['greedy_ids'])} greedy tokens")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write tests/fixtures/deq_digests.json: a SHA-256 per tensor of the F32 twins not committed.

The large F32 twins (*.deq.gguf, every tensor dequantized by llama.cpp's reference code) stay in
the reference kit; the dequantization test hashes its own output and compares with these digests.
Twins the kit does not ship are made with the kit's ../tools/dequantize_gguf.py (gguf-py's
dequantization, bit-identical to llama.cpp's: checked with `llama-quantize --allow-requantize
FILE OUT F32` for every model below) in a temporary directory.

  tools/deq_digests.py [KIT_MODELS_DIR] [OUT_JSON]

Defaults: ../shared/fixtures/models and tests/fixtures/deq_digests.json (run from the repository
root). Needs the Python packages gguf and numpy.
"""
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGUFReader

# Quantized fixtures whose twins are too large to commit (8 MB to 25 MB each).
MODELS = [
    "small-q4_k_m.gguf",
    "small-q5_k_m.gguf",
    "small-q6_k.gguf",
    "tiny-qwen3vocab-q8_0.gguf",
    "small-q4_1.gguf",
    "small-q5_0.gguf",
    "small-q5_1.gguf",
    "small-q2_k.gguf",
    "small-q3_k_m.gguf",
    "small-iq4_nl.gguf",
    "small-iq4_xs.gguf",
    # Made in this repository by tools/iquant_fixtures.py (not in the kit).
    "small-iq-mix.gguf",
    # The hybrid mixtures of experts (their twins are written at test time, 0.6 MB each, to keep
    # the checkout's fixtures to the quantized files).
    "tiny-qwen35moe-q8_0.gguf",
    "tiny-qwen3next-q8_0.gguf",
]
FIXTURE_MODELS = Path("tests/fixtures/models")


def digests(model: Path, twin: Path) -> dict:
    types = {t.name: t.tensor_type.name for t in GGUFReader(model).tensors}
    out = {}
    for t in GGUFReader(twin).tensors:
        data = np.ascontiguousarray(t.data, dtype="<f4")
        out[t.name] = {
            "type": types[t.name],
            "n_elements": int(t.n_elements),
            "sha256": hashlib.sha256(data.tobytes()).hexdigest(),
        }
    if set(out) != set(types):
        sys.exit(f"{model.name} and {twin.name} hold different tensors")
    return out


def model_path(kit: Path, name: str) -> Path:
    """The kit's model `name`, or this repository's fixture of that name."""
    return kit / name if (kit / name).exists() else FIXTURE_MODELS / name


def twin_of(kit: Path, name: str, scratch: Path) -> Path:
    """The kit's F32 twin of `name`, or one made now with the kit's dequantize_gguf.py."""
    twin = kit / name.replace(".gguf", ".deq.gguf")
    if twin.exists():
        return twin
    made = scratch / twin.name
    tool = kit.parent.parent / "tools" / "dequantize_gguf.py"
    subprocess.run([sys.executable, str(tool), str(model_path(kit, name)), str(made)], check=True)
    return made


def main(kit: Path, out_path: Path):
    result = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in MODELS:
            result[name] = digests(model_path(kit, name), twin_of(kit, name, Path(scratch)))
    out_path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 3:
        sys.exit(__doc__)
    kit = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/fixtures/models")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/deq_digests.json")
    main(kit, out)

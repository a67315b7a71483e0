#!/usr/bin/env python3
"""Make the low-bit i-quant fixture (tests/fixtures/models/small-iq-mix.gguf) and its references.

small-iq-mix mixes types as an unsloth UD-IQ1_S file does, one type per weight tensor so one small
file holds every new type: IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S and MXFP4 with
IQ4_XS and K-quants (Q4_K embedding, Q6_K output head, Q4_K/Q5_K elsewhere), from the reference
kit's small-f32.gguf (`fixtures/models/` beside KIT_TOOLS; not committed here).

Steps (llama.cpp's tools from LLAMA_BIN, the reference kit's tools from KIT_TOOLS):
 1. llama-quantize refuses IQ1/IQ2/IQ3_XXS tensors without an importance matrix, and llama-imatrix
    needs text it can tokenize, which small-f32 (vocabulary "none") cannot: a copy of small-f32
    gets a byte-level BPE vocabulary of its 512 ids (256 bytes and 256 merges learnt from the
    text), and llama-imatrix runs it over the text (README.md of this repository, its first
    8000 bytes) in chunks of 128 tokens.
 2. llama-quantize --imatrix with --tensor-type per tensor writes small-iq-mix.gguf.
 3. The F32 twin: the kit's dequantize_gguf.py (gguf-py's dequantization), checked tensor by
    tensor, bit for bit, against llama.cpp's own (`llama-quantize --allow-requantize FILE OUT F32`).
 4. References (the kit's reference_logits.py, llama.cpp's Python bindings): on the twin
    (`.deq.json`) and on the quantized file (`.json`), prompt 3,1,4,1,5,9,2,6,5,3,5,8,9,7,9,3 and
    32 greedy steps as every small-* fixture; written gzipped (`gzip -9 -n`) to tests/fixtures/refs.
 5. The twin's per-tensor digests: run tools/deq_digests.py afterwards.

  LLAMA_BIN=.../llama.cpp/build/bin KIT_TOOLS=../shared/tools tools/iquant_fixtures.py [WORK_DIR]

(run from the repository root; the Python bindings as reference_logits.py needs them:
PYTHONPATH and LLAMA_CPP_LIB_PATH). Needs the Python packages gguf and numpy.
"""
import collections
import gzip
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np
from gguf import GGUFReader, GGUFWriter, GGUFValueType as V

FIXTURES = Path("tests/fixtures")
KIT = Path(os.environ.get("KIT_TOOLS", "../shared/tools")).parent
SOURCE = KIT / "fixtures/models/small-f32.gguf"
NAME = "small-iq-mix"
PROMPT = "3,1,4,1,5,9,2,6,5,3,5,8,9,7,9,3"
TEXT_BYTES = 8000

# One type per weight tensor (llama-quantize --tensor-type NAME=TYPE; its base type IQ2_XXS is
# what the rule-based choice starts from, every weight tensor is named here).
TENSOR_TYPES = {
    "blk.0.attn_q": "iq1_s",
    "blk.0.attn_k": "iq1_m",
    "blk.0.attn_v": "iq2_xxs",
    "blk.0.attn_output": "iq2_xs",
    "blk.0.ffn_gate": "iq2_s",
    "blk.0.ffn_up": "iq3_xxs",
    "blk.0.ffn_down": "iq3_s",
    "blk.1.attn_q": "mxfp4",
    "blk.1.attn_k": "iq4_xs",
    "blk.1.attn_v": "q5_k",
    "blk.1.attn_output": "iq3_s",
    "blk.1.ffn_gate": "iq1_m",
    "blk.1.ffn_up": "iq1_s",
    "blk.1.ffn_down": "iq2_xxs",
}


def run(cmd, **kw):
    print("$", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def bytes_to_unicode() -> dict:
    """GPT-2's byte-level alphabet: printable bytes stand for themselves, the rest are shifted
    past 255 so every token is printable text."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return chars


def learn_merges(text: bytes, count: int) -> list:
    """`count` BPE merges learnt greedily on `text` (most frequent adjacent pair first)."""
    alphabet = bytes_to_unicode()
    words = collections.Counter(text.split(b" "))
    seqs = {w: [alphabet[b] for b in (b" " + w if i else w)] for i, w in enumerate(words)}
    merges = []
    while len(merges) < count:
        pairs = collections.Counter()
        for w, seq in seqs.items():
            for a, b in zip(seq, seq[1:]):
                pairs[(a, b)] += words[w]
        if not pairs:
            break
        (a, b), _ = pairs.most_common(1)[0]
        merges.append((a, b))
        for w, seq in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and seq[i] == a and seq[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = out
    return merges


def with_byte_vocab(src: Path, dst: Path, text: bytes):
    """A copy of `src` (vocabulary 512, tokenizer "none") with a byte-level BPE vocabulary."""
    r = GGUFReader(src)
    n_vocab = next(t for t in r.tensors if t.name == "token_embd.weight").shape[1]
    alphabet = bytes_to_unicode()
    merges = learn_merges(text, n_vocab - 256)
    tokens = [alphabet[b] for b in range(256)] + [a + b for a, b in merges]
    tokens += [f"<unused{i}>" for i in range(n_vocab - len(tokens))]
    arch = r.fields["general.architecture"].contents()
    w = GGUFWriter(dst, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name.startswith("tokenizer.") or name == "general.architecture":
            continue
        if f.types[0] == V.ARRAY:
            w.add_key_value(name, f.contents(), V.ARRAY, sub_type=f.types[-1])
        else:
            w.add_key_value(name, f.contents(), f.types[0])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([1] * n_vocab)
    w.add_token_merges([f"{a} {b}" for a, b in merges])
    for t in r.tensors:
        w.add_tensor(t.name, np.array(t.data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def f32_tensors(path: Path) -> dict:
    return {t.name: np.asarray(t.data, dtype="<f4").tobytes() for t in GGUFReader(path).tensors}


def main(work: Path):
    llama = Path(os.environ["LLAMA_BIN"])
    kit = Path(os.environ.get("KIT_TOOLS", "../shared/tools"))
    text = Path("README.md").read_bytes()[:TEXT_BYTES]
    text_file = work / "imatrix-text.txt"
    text_file.write_bytes(text)

    vocab_model = work / "small-f32-bytes.gguf"
    with_byte_vocab(SOURCE, vocab_model, text)
    imatrix = work / "small-f32.imatrix.gguf"
    run([llama / "llama-imatrix", "-m", vocab_model, "-f", text_file, "-o", imatrix, "-c", "128",
         "-t", "2"])

    out = FIXTURES / f"models/{NAME}.gguf"
    quantized = work / f"{NAME}.with-imatrix-paths.gguf"
    types = [a for name, ty in TENSOR_TYPES.items() for a in ("--tensor-type", f"{name}={ty}")]
    run([llama / "llama-quantize", "--imatrix", imatrix, *types, "--token-embedding-type", "q4_k",
         "--output-tensor-type", "q6_k", SOURCE, quantized, "IQ2_XXS", "2"])
    # llama-quantize records where the importance matrix and its text were (paths of this
    # machine); the committed file leaves them out. Tensors are copied unchanged.
    new_metadata = Path(gguf.__file__).parent / "scripts/gguf_new_metadata.py"
    run([sys.executable, new_metadata, "--force", "--remove-metadata", "quantize.imatrix.file",
         "--remove-metadata", "quantize.imatrix.dataset", quantized, out], stdin=subprocess.DEVNULL)

    twin = work / f"{NAME}.deq.gguf"
    run([sys.executable, kit / "dequantize_gguf.py", out, twin])
    llama_twin = work / f"{NAME}.llama-f32.gguf"
    run([llama / "llama-quantize", "--allow-requantize", out, llama_twin, "F32", "2"])
    ours, theirs = f32_tensors(twin), f32_tensors(llama_twin)
    differ = [n for n in ours if ours[n] != theirs.get(n)]
    if differ or set(ours) != set(theirs):
        sys.exit(f"gguf-py and llama.cpp dequantize differently: {differ}")
    print(f"twin: {len(ours)} tensors bit-identical to llama.cpp's dequantization", file=sys.stderr)

    for model, ref in [(twin, f"{NAME}.deq.json"), (out, f"{NAME}.json")]:
        result = run([sys.executable, kit / "reference_logits.py", model, "--ids", PROMPT,
                      "--steps", "32"], capture_output=True)
        (FIXTURES / f"refs/{ref}.gz").write_bytes(gzip.compress(result.stdout, 9, mtime=0))


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.exit(__doc__)
    if len(sys.argv) == 2:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as d:
            main(Path(d))

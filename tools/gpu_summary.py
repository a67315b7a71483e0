#!/usr/bin/env python3
"""The summary of a GPU run of .ci/gpu-run.sh: how each step ended, the GPU, the numerics tests'
largest differences from llama.cpp, and prompt and decode speed from each `qwen --json` report.

  gpu_summary.py --steps steps.txt --gpu gpu.csv --numerics numerics.log --total S bench-*.json
"""
import argparse
import json
import os
import re


def numerics_lines(path):
    """The tests' verdicts and per-model largest differences, in the order they ran."""
    if not os.path.exists(path):
        return ["(no numerics log)"]
    keep = re.compile(r"max \|diff\||^test .* \.\.\. |panicked at|^skipped:|test result:|QWEN_REQUIRE_GPU")
    lines, panic_next = [], False
    for line in open(path, errors="replace"):
        line = line.rstrip()
        if panic_next and line:
            lines.append("    " + line[:300])  # the panic's message follows its location
            panic_next = False
        if keep.search(line):
            lines.append("  " + line[:300])
            panic_next = "panicked at" in line
    return lines or ["  (nothing recognised in the log)"]


def bench_lines(path):
    name = os.path.basename(path)[len("bench-"):-len(".json")]
    try:
        with open(path) as f:
            r = json.load(f)
    except (OSError, ValueError) as e:
        return [f"  {name}: no report ({e.__class__.__name__}: {str(e)[:120]})"]
    feat, pre, dec = r.get("features", {}), r.get("prefill") or {}, r.get("decode") or {}
    out = [
        f"  {name}: {os.path.basename(r.get('model_filename', '?'))}, backend {feat.get('backend')}, "
        f"mode {feat.get('mode')}, load {r.get('load_ms', 0):.0f} ms, compile {r.get('compile_ms', 0):.0f} ms",
        f"    prompt  {pre.get('n_tokens', 0):4d} tokens: {pre.get('avg_ts', 0):10.1f} tok/s"
        f"   ({pre.get('avg_ns', 0) / 1e6:.1f} ms)",
        f"    decode  {dec.get('n', 0):4d} steps:  {dec.get('avg_ts', 0):10.1f} ± {dec.get('stddev_ts', 0):.1f} tok/s"
        f"   (median {dec.get('median_ns', 0) / 1e6:.3f} ms/token)",
    ]
    for k in (r.get("kernels") or [])[:4]:
        out.append(f"    kernel  {k.get('name', '?')[:48]:48s} {100 * k.get('share', 0):5.1f}% of decode")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", required=True)
    ap.add_argument("--gpu")
    ap.add_argument("--numerics")
    ap.add_argument("--total", type=int)
    ap.add_argument("bench", nargs="*")
    a = ap.parse_args()

    print(f"== GPU run summary ({a.total} s)")
    if a.gpu and os.path.exists(a.gpu):
        print("gpu: " + " | ".join(l.strip() for l in open(a.gpu) if l.strip()))
    else:
        print("gpu: (nvidia-smi gave nothing)")
    print("\n== steps")
    for line in open(a.steps):
        print("  " + line.rstrip())
    print("\n== numerics against llama.cpp (f32: 0.05, f16: 0.25 absolute)")
    print("\n".join(numerics_lines(a.numerics or "")))
    print("\n== speed (prompt and decode, one run each)")
    benches = [b for b in a.bench if os.path.exists(b)]
    for b in benches:
        print("\n".join(bench_lines(b)))
    if not benches:
        print("  (no benchmark reports)")


if __name__ == "__main__":
    main()

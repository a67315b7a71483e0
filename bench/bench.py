#!/usr/bin/env python3
"""CPU benchmark: qwen standard and --parallel against llama.cpp's llama-bench, same files, same run.

Makes Qwen3-0.6B- and Qwen3-4B-shaped GGUF files with random weights (Q8_0 with
../shared/tools/make_qwen3_gguf.py; Q4_K_M from the F32 file and the other --types from the
Q8_0 file with llama.cpp's llama-quantize, when it is found), and on request (`--sizes 30b-a3b`) a Qwen3-30B-A3B-shaped mixture of experts with the real layer
shape and 2 layers (F16 made, then Q8_0 and Q4_K_M by llama-quantize), measures the machine's
read bandwidth, then for each file prints decode (32 tokens after a 64-token prompt) and prefill
(`--prompt-tokens`, 64 by default, in a run of its own when longer; 512 is llama-bench's pp512)
tok/s of

  - qwen standard mode (single thread; skipped for the 4B file unless --standard-4b),
  - qwen --parallel with --threads N,
  - llama-bench -t N -p P -n 32 (when found), flash attention as llama-bench defaults,
  - with --ik-dir, ik_llama.cpp's llama-bench with -rtr 1 (weights repacked at load),

the ratios parallel / llama.cpp, decode as a fraction of the bandwidth bound (read bandwidth /
bytes of weights read per token: every tensor of a dense file; for a mixture of experts only the
routed experts' share of the expert tensors, from `qwen --inspect --json`) and, for --parallel,
peak resident memory against file + KV cache.

Figures are medians over runs after a warm-up run (as llama-bench does), all measured in this
invocation: on a shared machine only same-run ratios mean anything.

Needs: python3 with `gguf` and `numpy` (pip install gguf numpy); cargo. llama.cpp: see the
README's "Benchmarks" section (set LLAMA_CPP_DIR or put llama-bench on PATH).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT_TOKENS = 64
GEN_TOKENS = 32
PRESETS = {"0.6b": "qwen3-0.6b", "4b": "qwen3-4b", "30b-a3b": "qwen3-30b-a3b"}
# The mixture of experts is benchmarked on its real layer shape with fewer layers (the whole
# model is 30 GiB at Q8_0): per-layer speed is what the comparison needs.
MOE_LAYERS = {"30b-a3b": 2}
# Weight types of the 0.6B files (llama-quantize's names, lower case): what published Qwen3 files
# use. Q8_0 comes from make_qwen3_gguf.py, Q4_K_M from its F32 file, the rest requantized from
# the Q8_0 file (--allow-requantize; random weights, so the source's rounding is immaterial).
TYPES = ["q8_0", "q4_k_m", "q4_1", "q5_0", "q3_k_m", "iq4_xs"]
ALL_TYPES = TYPES + ["q5_1", "q2_k", "q3_k_s", "q3_k_l", "q4_0", "q5_k_m", "q6_k", "iq4_nl"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, **kw):
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def find_make_tool(args):
    for cand in [args.make_tool, ROOT.parent / "shared/tools/make_qwen3_gguf.py"]:
        if cand and Path(cand).is_file():
            return Path(cand)
    sys.exit("bench: make_qwen3_gguf.py not found; pass --make-tool PATH")


def find_llama(name, args):
    dirs = [args.llama_dir, os.environ.get("LLAMA_CPP_DIR")]
    for d in filter(None, dirs):
        for sub in ["build/bin", "bin", "."]:
            p = Path(d) / sub / name
            if p.is_file():
                return p
    found = shutil.which(name)
    return Path(found) if found else None


def vocab_args():
    """The real presets use Qwen3's full vocabulary, whose tokenizer the file embeds."""
    return ["--tokenizer", ROOT / "tests/fixtures/tokenizer/tokenizer.json"]


def make_models(args, tool):
    out = Path(args.models_dir)
    out.mkdir(parents=True, exist_ok=True)
    quantize = find_llama("llama-quantize", args)
    files = []
    for size in args.sizes:
        if size in MOE_LAYERS:
            files += make_moe_models(size, out, tool, quantize)
            continue
        preset = PRESETS[size]
        q8 = out / f"{preset}-q8_0.gguf"
        types = args.types if size in args.q4km_sizes else ["q8_0"]
        if not q8.exists():
            run([sys.executable, tool, q8, "--preset", preset, "--type", "q8_0", *vocab_args()])
        for ty in types:
            path = out / f"{preset}-{ty}.gguf"
            if not path.exists():
                if quantize is None:
                    log(f"bench: llama-quantize not found, no {ty.upper()} file for {preset}")
                    continue
                if ty == "q4_k_m":
                    f32 = out / f"{preset}-f32.gguf"
                    if not f32.exists():
                        run([sys.executable, tool, f32, "--preset", preset, "--type", "f32",
                             *vocab_args()])
                    run([quantize, f32, path, "Q4_K_M"])
                    f32.unlink()
                else:
                    run([quantize, "--allow-requantize", q8, path, ty.upper()])
            files.append(path)
    return files


def make_moe_models(size, out, tool, quantize):
    """Q8_0 and Q4_K_M of the MoE preset (llama-quantize from F16: the F32 file would be 7 GiB)."""
    preset, layers = PRESETS[size], MOE_LAYERS[size]
    stem = out / f"{preset}-{layers}l"
    files = []
    for ty in ["q8_0", "q4_k_m"]:
        f = Path(f"{stem}-{ty}.gguf")
        if not f.exists():
            if quantize is None:
                log(f"bench: llama-quantize not found, no {ty} file for {preset}")
                continue
            f16 = Path(f"{stem}-f16.gguf")
            if not f16.exists():
                run([sys.executable, tool, f16, "--preset", preset, "--layers", str(layers),
                     "--type", "f16", *vocab_args()])
            run([quantize, f16, f, ty.upper()])
        files.append(f)
    return files


def active_bytes(binary, model):
    """Bytes of weights one decode step reads: every tensor, the expert tensors (`*_exps`) only
    for the experts a token is routed to, and the embedding table only when it is also the
    output head (otherwise one row of it is read)."""
    info = json.loads(run([binary, "-m", model, "--inspect", "--json"]).stdout)
    moe = info["config"].get("experts")
    used = info["config"].get("experts_used")
    tied = info["config"]["tied_embeddings"]
    total = 0.0
    for t in info["tensors"]:
        if t["name"] == "token_embd.weight" and not tied:
            continue
        share = used / moe if moe and t["name"].endswith("_exps.weight") else 1.0
        total += t["bytes"] * share
    return total


def bandwidth(threads):
    res = run(["cargo", "bench", "--bench", "matmul", "--", "bandwidth"], cwd=ROOT)
    best = {}
    for m in re.finditer(r"1 GiB, (\d+) thread\(s\): ([\d.]+) GB/s", res.stdout):
        best[int(m.group(1))] = float(m.group(2))
    return best.get(threads) or max(best.values())


def qwen(binary, model, extra, repeat, prompt_tokens=PROMPT_TOKENS, gen_tokens=GEN_TOKENS):
    prompt = ",".join(str(100 + i) for i in range(prompt_tokens))
    cmd = [binary, "-m", model, "--token-ids", prompt, "-t", str(gen_tokens), "--ignore-eos",
           "--ctx-size", str(prompt_tokens + gen_tokens), "--json", "--repeat", str(repeat + 1)]
    cmd += extra
    time_bin = shutil.which("time") or "/usr/bin/time"
    if Path(time_bin).exists():
        cmd = [time_bin, "-f", "MAXRSS_KB %M"] + [str(c) for c in cmd]
    res = run([str(c) for c in cmd])
    report = json.loads(res.stdout)
    rss = re.search(r"MAXRSS_KB (\d+)", res.stderr)
    runs = report.get("repeat") or {}

    def median_after_warmup(phase):
        samples = (runs.get(phase) or {}).get("samples_ts") or [report[phase]["avg_ts"]]
        return statistics.median(samples[1:] if len(samples) > 1 else samples)

    return {
        "decode": median_after_warmup("decode"),
        "prefill": median_after_warmup("prefill"),
        "rss": int(rss.group(1)) * 1024 if rss else None,
        "report": report,
    }


def qwen_phases(binary, model, extra, repeat, prompt_tokens):
    """Decode after a 64-token prompt; prefill of `prompt_tokens` (a run of its own when longer,
    so that decode is not timed over a longer context than llama-bench's tg32)."""
    out = qwen(binary, model, extra, repeat)
    if prompt_tokens != PROMPT_TOKENS:
        out["prefill"] = qwen(binary, model, extra, repeat, prompt_tokens, 1)["prefill"]
    return out


def llama_bench(binary, model, threads, repeat, prompt_tokens, extra=()):
    res = run([binary, "-m", model, "-t", str(threads), "-p", str(prompt_tokens),
               "-n", str(GEN_TOKENS), "-r", str(repeat), "-o", "json", *extra])
    out = {}
    for test in json.loads(res.stdout):
        key = "prefill" if test["n_prompt"] > 0 else "decode"
        out[key] = test["avg_ts"]
        out["flash_attn"] = test.get("flash_attn")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--sizes", nargs="+", default=["0.6b", "4b"], choices=list(PRESETS))
    p.add_argument("--q4km-sizes", nargs="*", default=["0.6b"], choices=list(PRESETS),
                   help="sizes made in every --types (the others: Q8_0 only)")
    p.add_argument("--repeat", type=int, default=3, help="measured runs after the warm-up")
    p.add_argument("--standard-4b", action="store_true", help="also time standard mode on 4B")
    p.add_argument("--bandwidth", type=float,
                   help="read bandwidth in GB/s, as measured before (skips building and running the bench)")
    p.add_argument("--models-dir", default=str(ROOT / "target/bench-models"))
    p.add_argument("--make-tool")
    p.add_argument("--llama-dir", help="llama.cpp checkout/build (else $LLAMA_CPP_DIR or PATH)")
    p.add_argument("--ik-dir", help="ik_llama.cpp build: also run its llama-bench with -rtr 1")
    p.add_argument("--prompt-tokens", type=int, default=PROMPT_TOKENS,
                   help="prefill length (512: pp512); decode always follows a 64-token prompt")
    p.add_argument("--types", nargs="+", default=TYPES, choices=ALL_TYPES,
                   help="weight types of the --q4km-sizes (default: %(default)s)")
    p.add_argument("--no-standard", action="store_true", help="skip standard mode")
    p.add_argument("--json", help="also write all figures to this JSON file")
    args = p.parse_args()

    tool = find_make_tool(args)
    run(["cargo", "build", "--release"], cwd=ROOT)
    binary = ROOT / "target/release/qwen"
    files = make_models(args, tool)
    bw = args.bandwidth or bandwidth(args.threads)
    lb = find_llama("llama-bench", args)
    if lb is None:
        log("bench: llama-bench not found: llama.cpp columns left empty")
    ik = Path(args.ik_dir) / "build/bin/llama-bench" if args.ik_dir else None
    if ik and not ik.is_file():
        ik = Path(args.ik_dir) / "bin/llama-bench"
    pt = args.prompt_tokens

    rows = []
    for f in files:
        size = f.stat().st_size
        row = {"file": f.name, "size": size, "active": active_bytes(binary, f)}
        big = "4b" in f.name or "30b" in f.name
        if not args.no_standard and (not big or args.standard_4b):
            row["standard"] = qwen_phases(binary, f, [], 1, pt)
        par = ["--parallel", "--threads", str(args.threads)]
        row["parallel"] = qwen_phases(binary, f, par, args.repeat, pt)
        if lb:
            row["llama"] = llama_bench(lb, f, args.threads, args.repeat, pt)
        if ik and ik.is_file():
            row["ik"] = llama_bench(ik, f, args.threads, args.repeat, pt, ["-rtr", "1"])
        rows.append(row)

    print(f"\nmachine: {rows[0]['parallel']['report']['machine']['cpu'] if rows else '?'}, "
          f"{args.threads} threads, read bandwidth {bw:.1f} GB/s")
    print(f"decode tg{GEN_TOKENS} (after {PROMPT_TOKENS} tokens for qwen), prefill pp{pt}")
    print(f"{'file':<28} {'phase':<8} {'standard':>9} {'parallel':>9} {'llama.cpp':>9} "
          f"{'par/llama':>9} {'ik -rtr 1':>9} {'par/ik':>8} {'par/std':>8} {'bw bound':>9} {'of bound':>8}")
    summary = []
    for r in rows:
        bound = bw * 1e9 / r["active"]  # the weight bytes a token reads, each once
        for phase in ["decode", "prefill"]:
            std = r.get("standard", {}).get(phase)
            par = r["parallel"][phase]
            ll = r.get("llama", {}).get(phase)
            ikv = r.get("ik", {}).get(phase)
            fmt = lambda v, spec="9.1f": format(v, spec) if v else f"{'-':>9}"
            ratio = lambda a, b: f"{a / b:8.2f}x" if a and b else f"{'-':>9}"
            line = (f"{r['file']:<28} {phase:<8} {fmt(std)} {fmt(par)} {fmt(ll)} "
                    f"{ratio(par, ll)} {fmt(ikv)} {ratio(par, ikv)} {ratio(par, std)}")
            if phase == "decode":
                line += f" {bound:9.1f} {100 * par / bound:7.0f}%"
            print(line)
            summary.append({"file": r["file"], "phase": phase, "standard_ts": std, "parallel_ts": par,
                            "llama_ts": ll, "ik_rtr_ts": ikv, "active_bytes": r["active"],
                            "bandwidth_bound_ts": bound if phase == "decode" else None})
        rss = r["parallel"]["rss"]
        if rss:
            print(f"{'':<24} memory   peak RSS {rss / 2**30:.2f} GiB = {rss / r['size']:.2f}x the file "
                  f"({r['size'] / 2**30:.2f} GiB; the KV cache of {PROMPT_TOKENS + GEN_TOKENS} positions "
                  f"is under 20 MB; limit: file + KV + 25%)")
        if "llama" in r and r["llama"].get("flash_attn") is not None:
            print(f"{'':<24} llama-bench flash_attn={r['llama']['flash_attn']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"bandwidth_gbs": bw, "threads": args.threads,
                                               "rows": summary}, indent=2))


if __name__ == "__main__":
    main()

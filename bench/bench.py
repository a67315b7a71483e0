#!/usr/bin/env python3
"""CPU benchmark: qwen standard and --parallel against llama.cpp's llama-bench (and, when given,
ik_llama.cpp's), same files, same run.

Makes Qwen3-0.6B- and Qwen3-4B-shaped GGUF files with random weights (Q8_0 with
../shared/tools/make_qwen3_gguf.py; Q4_K_M from the F32 file and the other --types from the
Q8_0 file with llama.cpp's llama-quantize, when it is found; the low-bit i-quants with an
importance matrix that llama-imatrix computes on the Q8_0 file over this repository's README), and
on request (`--sizes 30b-a3b`) a Qwen3-30B-A3B-shaped mixture of experts with the real layer
shape and 2 layers (F16 made, then Q8_0 and Q4_K_M by llama-quantize, and the `--moe-types`
asked for: IQ2_M with an importance matrix made on the F16 file), and the hybrid Qwen3.5 shapes
(`--sizes 3.5-0.8b 3.5-4b`: gated DeltaNet and gated attention, the Qwen3.5 vocabulary, the 4B
shape with 8 of its 32 layers) and the hybrid mixtures of experts (`--sizes 3.5-35b-a3b
next-80b-a3b`: Qwen3.5-35B-A3B and Qwen3-Next-80B-A3B, real layer shape, 4 layers: three gated
DeltaNet and one attention; Q8_0 made, other --moe-types requantized), measures the machine's
read bandwidth, then for each file prints tok/s of four tests:

  tg32        decode, 32 tokens after a 64-token prompt
  pp64        prefill of 64 tokens
  pp512       prefill of 512 tokens (`--prompt-tokens P` for another length), a run of its own
  tg32@d4096  decode, 32 tokens after 4096 tokens of context (`--depth D`)

(`--no-long` skips the last two) for

  - qwen standard mode (single thread; tg32, pp64 and pp512; skipped for the 4B and MoE files
    unless --standard-4b, and with --no-standard),
  - qwen --parallel with --threads N (tg32@d4096: a prefill of 4096 tokens, then decode),
  - llama-bench -t N -p 64,512 -n 32, and -p 0 -n 32 -d 4096 (when found), flash attention as
    llama-bench defaults,
  - with --ik-bench PATH (or --ik-dir DIR, its build/bin/llama-bench), any llama-bench-compatible
    binary run the same way; for ik_llama.cpp's (the fastest CPU engine for GGUF files) with
    -rtr 1 (run-time repacking), and -gp 4096,32 for the depth test (its llama-bench has no -d),

the ratios parallel / llama.cpp and parallel / ik, pp512 / pp64 of --parallel, decode as a
fraction of the bandwidth bound (read bandwidth / bytes of weights read per token: every tensor
of a dense file; for a mixture of experts only the routed experts' share of the expert tensors,
from `qwen --inspect --json`) and, for --parallel, peak resident memory against file + KV cache.
qwen's kernel plans are searched afresh in each invocation, into a plan cache of its own.

Figures are medians over runs after a warm-up run (as llama-bench does), all measured in this
invocation: on a shared machine only same-run ratios mean anything. With `--rounds N` every file
is measured N times with the engines taking turns (qwen, llama.cpp, ik, qwen, ...), so that a
load spike from another tenant hits one round rather than one engine; figures are then medians
over the rounds. Each ratio is `qwen compare`'s: the runs of every round pooled (qwen's warm-up
run left out), the ratio of median tok/s with its 95% bootstrap interval and a verdict (faster,
slower, or no difference the data can show; see docs/compare.md), printed under each row.

Needs: python3 with `gguf` and `numpy` (pip install gguf numpy); cargo. llama.cpp: see
docs/benchmarks.md (set LLAMA_CPP_DIR or put llama-bench on PATH).
"""

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT_TOKENS = 64
GEN_TOKENS = 32
LONG_PROMPT = 512
DEPTH = 4096
PRESETS = {"0.6b": "qwen3-0.6b", "4b": "qwen3-4b", "30b-a3b": "qwen3-30b-a3b",
           "3.5-0.8b": "qwen3.5-0.8b", "3.5-4b": "qwen3.5-4b",
           "3.5-35b-a3b": "qwen3.5-35b-a3b", "next-80b-a3b": "qwen3-next-80b-a3b"}
# The hybrid Qwen3.5 shapes carry the Qwen3.5 vocabulary; the 4B one keeps 8 of its 32 layers
# (whole groups of three DeltaNet layers and one attention layer, so the mix is the real one).
HYBRID_SIZES = {"3.5-0.8b", "3.5-4b", "3.5-35b-a3b"}
DENSE_LAYERS = {"3.5-4b": 8}
# The mixture of experts is benchmarked on its real layer shape with fewer layers (the whole
# model is 30 GiB at Q8_0): per-layer speed is what the comparison needs.
MOE_LAYERS = {"30b-a3b": 2, "3.5-35b-a3b": 4, "next-80b-a3b": 4}
# The hybrid mixtures of experts keep one group of three DeltaNet layers and one attention layer;
# their Q8_0 file comes from make_qwen3_gguf.py directly (the F16 one would be 9 and 14 GiB) and
# the other types are requantized from it.
HYBRID_MOE = {"3.5-35b-a3b", "next-80b-a3b"}
# Weight types of the 0.6B files (llama-quantize's names, lower case): what published Qwen3 files
# use. Q8_0 comes from make_qwen3_gguf.py, Q4_K_M from its F32 file, the rest requantized from
# the Q8_0 file (--allow-requantize; random weights, so the source's rounding is immaterial).
TYPES = ["q8_0", "q4_k_m", "q4_1", "q5_0", "q3_k_m", "iq4_xs"]
ALL_TYPES = TYPES + ["q5_1", "q2_k", "q3_k_s", "q3_k_l", "q4_0", "q5_k_m", "q6_k", "iq4_nl"]
# The low-bit i-quants of imatrix and unsloth "UD" files (llama-quantize's file types: IQ2_M and
# IQ3_M mix IQ2_S/IQ3_S with others, IQ3_XXS files hold IQ2_S and IQ3_S tensors too).
ALL_TYPES += ["iq2_xxs", "iq2_m", "iq3_xxs", "iq3_m", "iq1_m", "iq1_s", "iq2_xs", "iq2_s", "iq3_s"]
# llama-quantize refuses IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S and IQ3_XXS tensors without an
# importance matrix; the types whose files hold any of them get one.
IMATRIX_TYPES = {"iq2_xxs", "iq2_m", "iq3_xxs", "iq3_m", "iq1_m", "iq1_s", "iq2_xs", "iq2_s", "iq3_s"}
MOE_TYPES = ["q8_0", "q4_k_m", "iq2_m"]


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


def vocab_args(models_dir):
    """The real presets use Qwen3's full vocabulary, whose tokenizer the file embeds (the
    fixture is committed gzipped: unpacked once beside the benchmark's models)."""
    packed = ROOT / "tests/fixtures/tokenizer/tokenizer.json.gz"
    unpacked = Path(models_dir) / "tokenizer.json"
    if not unpacked.is_file() or unpacked.stat().st_mtime < packed.stat().st_mtime:
        unpacked.parent.mkdir(parents=True, exist_ok=True)
        tmp = unpacked.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(gzip.decompress(packed.read_bytes()))
        tmp.replace(unpacked)
    return ["--tokenizer", unpacked]


def shape_args(size, models_dir):
    """make_qwen3_gguf.py's arguments beyond the preset: the layer count kept and the
    vocabulary (Qwen3.5's, built by the tool, for the hybrid shapes; Qwen3's otherwise)."""
    layers = ["--layers", str(DENSE_LAYERS[size])] if size in DENSE_LAYERS else []
    vocab = ["--vocab", "qwen35"] if size in HYBRID_SIZES else vocab_args(models_dir)
    return layers + vocab


def have(path):
    """Whether `path` is a GGUF file to reuse. llama-quantize writes zeros where the header goes
    and the header last, so a run stopped midway leaves a file without the magic bytes: that one
    is removed and made again."""
    path = Path(path)
    if not path.exists():
        return False
    with open(path, "rb") as f:
        if f.read(4) == b"GGUF":
            return True
    log(f"bench: {path.name} is not a finished GGUF file (an interrupted run?): making it again")
    path.unlink()
    return False


def imatrix_for(model, args):
    """An importance matrix for `model` from llama-imatrix over the README (English prose and
    code, ~40 chunks of 128 tokens): the i-quants need one, and which text made it only shifts
    which weights round best; speed does not depend on it."""
    out = Path(f"{model}.imatrix.gguf")
    if have(out):
        return out
    imatrix = find_llama("llama-imatrix", args)
    if imatrix is None:
        return None
    run([imatrix, "-m", model, "-f", ROOT / "README.md", "-o", out, "-c", "128", "--chunks", "40",
         "-t", str(args.threads)])
    return out


def quantize_cmd(quantize, src, dst, ty, args, imatrix_src=None):
    """llama-quantize from `src` into `ty` (an imatrix made on `imatrix_src`, default `src`,
    where the type needs one), or None when a needed tool is missing."""
    cmd = [quantize, "--allow-requantize"]
    if ty in IMATRIX_TYPES:
        im = imatrix_for(imatrix_src or src, args)
        if im is None:
            log(f"bench: llama-imatrix not found, no {ty.upper()} file")
            return None
        cmd += ["--imatrix", im]
    return cmd + [src, dst, ty.upper()]


def make_models(args, tool):
    out = Path(args.models_dir)
    out.mkdir(parents=True, exist_ok=True)
    quantize = find_llama("llama-quantize", args)
    files = []
    for size in args.sizes:
        if size in MOE_LAYERS:
            files += make_moe_models(size, out, tool, quantize, args)
            continue
        preset, shape = PRESETS[size], shape_args(size, out)
        if size in DENSE_LAYERS:
            preset = f"{preset}-{DENSE_LAYERS[size]}l"
        q8 = out / f"{preset}-q8_0.gguf"
        types = args.types if size in args.q4km_sizes else ["q8_0"]
        if not have(q8):
            run([sys.executable, tool, q8, "--preset", PRESETS[size], "--type", "q8_0", *shape])
        for ty in types:
            path = out / f"{preset}-{ty}.gguf"
            if not have(path):
                if quantize is None:
                    log(f"bench: llama-quantize not found, no {ty.upper()} file for {preset}")
                    continue
                if ty == "q4_k_m":
                    f32 = out / f"{preset}-f32.gguf"
                    if not have(f32):
                        run([sys.executable, tool, f32, "--preset", PRESETS[size], "--type",
                             "f32", *shape])
                    run([quantize, f32, path, "Q4_K_M"])
                    f32.unlink()
                else:
                    cmd = quantize_cmd(quantize, q8, path, ty, args)
                    if cmd is None:
                        continue
                    run(cmd)
            files.append(path)
    return files


def make_moe_models(size, out, tool, quantize, args):
    """The --moe-types of the MoE preset (llama-quantize from F16: the F32 file would be 7 GiB;
    the hybrid ones from their Q8_0 file)."""
    preset, layers = PRESETS[size], MOE_LAYERS[size]
    stem = out / f"{preset}-{layers}l"
    files = []
    if size in HYBRID_MOE:
        q8 = Path(f"{stem}-q8_0.gguf")
        if not have(q8):
            run([sys.executable, tool, q8, "--preset", preset, "--layers", str(layers),
                 "--type", "q8_0", *shape_args(size, out)])
    for ty in args.moe_types:
        f = Path(f"{stem}-{ty}.gguf")
        if size in HYBRID_MOE and not have(f):
            if quantize is None:
                log(f"bench: llama-quantize not found, no {ty} file for {preset}")
                continue
            cmd = quantize_cmd(quantize, Path(f"{stem}-q8_0.gguf"), f, ty, args)
            if cmd is None:
                continue
            run(cmd)
        if not have(f):
            if quantize is None:
                log(f"bench: llama-quantize not found, no {ty} file for {preset}")
                continue
            f16 = Path(f"{stem}-f16.gguf")
            if not have(f16):
                run([sys.executable, tool, f16, "--preset", preset, "--layers", str(layers),
                     "--type", "f16", *vocab_args(out)])
            cmd = quantize_cmd(quantize, f16, f, ty, args)
            if cmd is None:
                continue
            run(cmd)
        files.append(f)
    return files


def has_mtp_block(binary, model):
    """Whether the file has a multi-token-prediction block that `--mtp` runs."""
    info = json.loads(run([binary, "-m", model, "--inspect", "--json"]).stdout)
    return bool((info.get("hybrid") or {}).get("mtp"))


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


def qwen_run(binary, model, extra, repeat, prompt_tokens=PROMPT_TOKENS, gen_tokens=GEN_TOKENS):
    """One qwen invocation with `repeat` + 1 runs; medians of prefill and decode tok/s after
    the first run (a warm-up, as llama-bench's), and the peak RSS."""
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
        "measured": without_warmup(report),
    }


def without_warmup(report):
    """The report as `qwen compare` should read it: its first run (the warm-up) left out of
    repeat.runs, the runs compare treats as its units."""
    out = dict(report)
    runs = (report.get("repeat") or {}).get("runs") or []
    if len(runs) > 1:
        out["repeat"] = dict(report["repeat"], runs=runs[1:])
    return out


def qwen(binary, model, extra, repeat, long_prompt, depth):
    """tg32 and pp64 (one invocation); a prefill of `long_prompt` tokens (a run of its own, so
    that decode is not timed over a longer context than llama-bench's tg32) unless 0; decode
    after `depth` tokens of context unless 0."""
    base = qwen_run(binary, model, extra, repeat)
    out = {"decode": base["decode"], "prefill": base["prefill"], "rss": base["rss"],
           "report": base["report"],
           "measured": {"decode": [base["measured"]], "prefill": [base["measured"]]}}
    if long_prompt:
        long = qwen_run(binary, model, extra, repeat, long_prompt, 1)
        out["long"] = long["prefill"]
        out["measured"]["long"] = [long["measured"]]
    if depth:
        # Each run prefills `depth` tokens: one measured run after the warm-up.
        deep = qwen_run(binary, model, extra, 1, depth, GEN_TOKENS)
        out["depth"] = deep["decode"]
        out["depth_rss"] = deep["rss"]
        out["measured"]["depth"] = [deep["measured"]]
    return out


def classify(test, long_prompt):
    """Which test a llama-bench JSON entry is (llama.cpp's -d or ik_llama.cpp's -gp)."""
    n_prompt, n_gen = test.get("n_prompt", 0), test.get("n_gen", 0)
    if test.get("n_depth") or "@pp" in str(test.get("test", "")):
        return "depth" if n_gen else None
    if n_gen == 0:
        return {PROMPT_TOKENS: "prefill", long_prompt: "long"}.get(n_prompt)
    return "decode" if n_prompt == 0 else None


def llama_bench(binary, model, threads, repeat, long_prompt, depth, ik=False):
    """llama-bench's tg32, pp64, the long prefill and tg32 at `depth` (ik_llama.cpp: with
    -rtr 1, the depth test as -gp)."""
    common = [binary, "-m", model, "-t", str(threads), "-r", str(repeat), "-o", "json"]
    if ik:
        common += ["-rtr", "1"]
    prompts = [PROMPT_TOKENS] + ([long_prompt] if long_prompt else [])
    runs = [["-p", ",".join(map(str, prompts)), "-n", str(GEN_TOKENS)]]
    if depth:
        runs.append(["-p", "0", "-n", "0", "-gp", f"{depth},{GEN_TOKENS}"] if ik
                    else ["-p", "0", "-n", str(GEN_TOKENS), "-d", str(depth)])
    out = {"measured": {}}
    for extra in runs:
        res = run(common + extra)
        for test in json.loads(res.stdout):
            key = classify(test, long_prompt)
            if key:
                out[key] = test["avg_ts"]
                out["measured"][key] = [test]
            out["flash_attn"] = test.get("flash_attn")
    return out


# The phase of `qwen compare`'s output that each test is.
PHASE_OF = {"decode": "decode", "prefill": "prefill", "long": "prefill", "depth": "decode"}


def combine(rounds, binary):
    """One figure per engine and test from the rounds: the median (peak memory: the largest);
    and each ratio of --parallel to another engine from `qwen compare` over every round's runs."""
    out = {}
    for name in rounds[0]:
        merged = dict(rounds[0][name])
        for key, value in rounds[0][name].items():
            values = [r[name].get(key) for r in rounds]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                merged[key] = max(values) if key.endswith("rss") else statistics.median(values)
        out[name] = merged
    compared = {}
    for other in [n for n in rounds[0] if n != "parallel"]:
        for key in PHASE_OF:
            result = compare(binary, rounds, other, "parallel", key)
            if result:
                compared[("parallel", other, key)] = result
    out["compared"] = compared
    return out


def compare(binary, rounds, a, b, key):
    """`qwen compare` of engine `b` against engine `a` on test `key`, every round's measured
    runs pooled in one file per engine; its row for the test's phase, or None."""
    items = {name: [x for r in rounds for x in (r[name].get("measured") or {}).get(key, [])]
             for name in (a, b)}
    if not all(items.values()):
        return None
    with tempfile.TemporaryDirectory(prefix="qwen-bench-compare-") as tmp:
        paths = []
        for name in (a, b):
            path = Path(tmp) / f"{name}-{key}.json"
            path.write_text(json.dumps(items[name]))
            paths.append(str(path))
        # Standard mode runs one thread, --parallel many: the thread counts differ by design.
        # ik_llama.cpp's llama-bench counts a tied output head a second time in its
        # model_n_params, so compare would take the two for different models; both ran this
        # very file.
        force = ["--force"] if "standard" in (a, b) or "ik" in (a, b) else []
        res = subprocess.run([str(binary), "compare", *paths, "--json", *force], text=True,
                             capture_output=True)
    if res.returncode != 0:
        log(f"bench: compare {b} with {a} on {key}: {res.stderr.strip()}")
        return None
    phases = [p for p in json.loads(res.stdout)["phases"] if p["phase"] == PHASE_OF[key]]
    return phases[0] if phases else None


def find_ik(args):
    """The ik_llama.cpp (or other llama-bench-compatible) binary of --ik-bench / --ik-dir."""
    if args.ik_bench:
        path = Path(args.ik_bench)
    elif args.ik_dir:
        path = next((Path(args.ik_dir) / sub / "llama-bench" for sub in ["build/bin", "bin"]
                     if (Path(args.ik_dir) / sub / "llama-bench").is_file()),
                    Path(args.ik_dir) / "build/bin/llama-bench")
    else:
        return None
    if not path.is_file():
        sys.exit(f"bench: {path}: no llama-bench there (--ik-bench PATH or --ik-dir DIR)")
    return path


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
    p.add_argument("--ik-bench", metavar="PATH",
                   help="a llama-bench-compatible binary to compare with as well "
                   "(ik_llama.cpp's: run with -rtr 1)")
    p.add_argument("--ik-dir", metavar="DIR", help="the same, as DIR/build/bin/llama-bench")
    p.add_argument("--prompt-tokens", type=int, default=LONG_PROMPT,
                   help="length of the long prefill test (default: %(default)s, pp512); "
                   "decode always follows a 64-token prompt")
    p.add_argument("--depth", type=int, default=DEPTH,
                   help="context of the long decode test (default: %(default)s)")
    p.add_argument("--no-long", action="store_true", help="skip the long prefill and decode tests")
    p.add_argument("--types", nargs="+", default=TYPES, choices=ALL_TYPES,
                   help="weight types of the --q4km-sizes (default: %(default)s)")
    p.add_argument("--moe-types", nargs="+", default=MOE_TYPES[:2], choices=MOE_TYPES,
                   help="weight types of the mixture-of-experts file (default: %(default)s)")
    p.add_argument("--no-standard", action="store_true", help="skip standard mode")
    p.add_argument("--json", help="also write all figures to this JSON file")
    p.add_argument("--mtp", type=int, metavar="N",
                   help="time qwen with --mtp N (speculative decoding) on files that have a "
                        "multi-token-prediction block; the others run without it")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure each file N times, the engines taking turns; medians over rounds, "
                   "ratios by qwen compare over every round's runs (default: %(default)s)")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")

    long_prompt = 0 if args.no_long or args.prompt_tokens == PROMPT_TOKENS else args.prompt_tokens
    depth = 0 if args.no_long else args.depth
    tool = find_make_tool(args)
    ik = find_ik(args)
    # qwen's kernel plans are searched afresh, in this run's conditions, into a cache of its
    # own (a plan searched on a busier day would otherwise stay cached).
    plan_cache = tempfile.mkdtemp(prefix="qwen-bench-plans-")
    os.environ["XDG_CACHE_HOME"] = plan_cache
    try:
        report(args, tool, ik, long_prompt, depth)
    finally:
        shutil.rmtree(plan_cache, ignore_errors=True)


def report(args, tool, ik, long_prompt, depth):
    """Builds, makes the files, measures every engine on each and prints the table."""
    run(["cargo", "build", "--release"], cwd=ROOT)
    binary = ROOT / "target/release/qwen"
    files = make_models(args, tool)
    bw = args.bandwidth or bandwidth(args.threads)
    lb = find_llama("llama-bench", args)
    if lb is None:
        log("bench: llama-bench not found: llama.cpp columns left empty")

    rows = []
    for f in files:
        size = f.stat().st_size
        row = {"file": f.name, "size": size, "active": active_bytes(binary, f)}
        big = "4b" in f.name or "30b" in f.name
        engines = {}
        mtp = ["--mtp", str(args.mtp)] if args.mtp and has_mtp_block(binary, f) else []
        if not args.no_standard and (not big or args.standard_4b):
            engines["standard"] = lambda: qwen(binary, f, mtp, 1, long_prompt, 0)
        par_flags = ["--parallel", "--threads", str(args.threads)] + mtp
        engines["parallel"] = lambda: qwen(binary, f, par_flags, args.repeat, long_prompt, depth)
        if lb:
            engines["llama"] = lambda: llama_bench(lb, f, args.threads, args.repeat, long_prompt, depth)
        if ik:
            engines["ik"] = lambda: llama_bench(ik, f, args.threads, args.repeat, long_prompt,
                                                depth, ik=True)
        rounds = []
        for i in range(args.rounds):
            if args.rounds > 1:
                log(f"bench: {f.name}: round {i + 1} of {args.rounds}")
            rounds.append({name: measure() for name, measure in engines.items()})
        row.update(combine(rounds, binary))
        rows.append(row)

    print(f"\nmachine: {rows[0]['parallel']['report']['machine']['cpu'] if rows else '?'}, "
          f"{args.threads} threads, read bandwidth {bw:.1f} GB/s")
    tests = [("decode", f"tg{GEN_TOKENS}"), ("prefill", f"pp{PROMPT_TOKENS}"),
             ("long", f"pp{long_prompt}"), ("depth", f"tg{GEN_TOKENS}@d{depth}")]
    print(f"{'file':<28} {'test':<11} {'standard':>9} {'parallel':>9} {'llama.cpp':>9} "
          f"{'par/llama':>9} {'ik -rtr 1':>9} {'par/ik':>8} {'par/std':>8} {'bw bound':>9} "
          f"{'of bound':>8}")
    summary = []
    fmt = lambda v: format(v, "9.1f") if v else f"{'-':>9}"
    def ratio(r, key, a, b, w=9):
        c = r.get("compared", {}).get((a, b, key))
        return format(c["ratio"], f"{w - 1}.2f") + "x" if c else f"{'-':>{w}}"

    for r in rows:
        bound = bw * 1e9 / r["active"]  # the weight bytes a token reads, each once
        for key, label in tests:
            std = r.get("standard", {}).get(key)
            par = r["parallel"].get(key)
            ll = r.get("llama", {}).get(key)
            ikv = r.get("ik", {}).get(key)
            if not any([std, par, ll, ikv]):
                continue
            line = (f"{r['file']:<28} {label:<11} {fmt(std)} {fmt(par)} {fmt(ll)} "
                    f"{ratio(r, key, 'parallel', 'llama')} {fmt(ikv)} "
                    f"{ratio(r, key, 'parallel', 'ik', 8)} {ratio(r, key, 'parallel', 'standard', 8)}")
            if key == "decode" and par:
                line += f" {bound:9.1f} {100 * par / bound:7.0f}%"
            print(line)
            compared = {b: c for b in ["llama", "ik", "standard"]
                        if (c := r["compared"].get(("parallel", b, key)))}
            for b, c in compared.items():
                print(f"{'':<28} {'':<11} par/{b} {c['ratio']:.2f}x, 95% CI "
                      f"[{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}], runs {c['b']['n']} and "
                      f"{c['a']['n']}, p {c['p_value']:.3g}: {verdict_words(c['verdict'])}")
            summary.append({"file": r["file"], "test": label, "standard_ts": std,
                            "parallel_ts": par, "llama_ts": ll, "ik_rtr_ts": ikv,
                            "active_bytes": r["active"],
                            "bandwidth_bound_ts": bound if key == "decode" else None,
                            "rounds": args.rounds,
                            "ratios": {b: {k: c[k] for k in
                                           ["ratio", "ci95", "p_value", "verdict", "unit"]}
                                       | {"n_parallel": c["b"]["n"], "n_other": c["a"]["n"]}
                                       for b, c in compared.items()}})
        par = r["parallel"]
        if par.get("long") and par.get("prefill"):
            print(f"{'':<28} pp{long_prompt} / pp{PROMPT_TOKENS} of --parallel: "
                  f"{par['long'] / par['prefill']:.2f}")
        rss = r["parallel"]["rss"]
        if rss:
            print(f"{'':<24} memory   peak RSS {rss / 2**30:.2f} GiB = {rss / r['size']:.2f}x the file "
                  f"({r['size'] / 2**30:.2f} GiB; the KV cache of {PROMPT_TOKENS + GEN_TOKENS} positions "
                  f"is under 20 MB; limit: file + KV + 25%)")
        if par.get("depth_rss"):
            print(f"{'':<24} memory   peak RSS at depth {depth}: "
                  f"{par['depth_rss'] / 2**30:.2f} GiB")
        for name in ["llama", "ik"]:
            if name in r and r[name].get("flash_attn") is not None:
                print(f"{'':<24} {name} llama-bench flash_attn={r[name]['flash_attn']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"bandwidth_gbs": bw, "threads": args.threads,
                                               "rows": summary}, indent=2))


def verdict_words(verdict):
    return "no difference the data can show" if verdict == "no difference" else verdict


if __name__ == "__main__":
    main()

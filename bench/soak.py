#!/usr/bin/env python3
"""Soak test: long runs of `qwen --parallel`, checking that memory stays flat (issue 17).

1. generation: one run that fills a 4096-position context (`--ignore-eos`), its resident memory
   sampled every 0.2 s;
2. interactive: 200 turns fed from a file to `-i`, the resident memory read after every turn.

The KV cache is allocated for the whole context up front and its pages are committed as
positions are written, so anonymous resident memory (RssAnon: the heap, the KV cache; not the
model file's mapped pages, which the OS may drop and reread under memory pressure) must grow by
the cache's bytes per position (2 x layers x kv_heads x head_dim x 2, f16) times the positions
used, and by nothing else: the "unexplained" growth (RssAnon growth minus that) after the
first step / turn is what must stay flat. Prints the peak (VmHWM, file pages included), the
growth and the verdict; exits 1 when the unexplained growth exceeds --max-growth-mib.

  python3 bench/soak.py                       # makes a Qwen3-0.6B-shaped Q8_0 file (random weights,
                                              # Qwen3 tokenizer) under target/soak/ first
  python3 bench/soak.py --model FILE.gguf --threads 2 --turns 200

Not part of `cargo test` (minutes of CPU). Needs python3 with gguf and numpy to make the model
(../shared/tools/make_qwen3_gguf.py), and a release build (cargo build --release).
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QWEN = ROOT / "target" / "release" / "qwen"
MAKER = ROOT.parent / "shared" / "tools" / "make_qwen3_gguf.py"
TOKENIZER = ROOT / "tests" / "fixtures" / "tokenizer"
MIB = 1024 * 1024

LINES = [
    "Hello, who are you?",
    "Tell me about the sea.",
    "Why is the sky blue?",
    "Write a line of a poem.",
    "What is two plus two?",
    "Name a colour.",
    "How far is the moon?",
    "Say something short.",
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def status_kib(pid, field):
    """A `VmRSS:`-style field of /proc/PID/status, in KiB (None once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def make_model(out):
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    log(f"making {out} (Qwen3-0.6B shape, Q8_0, random weights, Qwen3 tokenizer)")
    subprocess.run(
        [sys.executable, str(MAKER), str(out), "--preset", "qwen3-0.6b", "--type", "q8_0",
         "--vocab", "qwen3", "--tokenizer", str(TOKENIZER / "tokenizer.json"),
         "--chat-template", str(TOKENIZER / "tokenizer_config.json")],
        check=True)
    return out


def kv_bytes_per_position(model):
    out = subprocess.run([str(QWEN), "-m", str(model), "--inspect", "--json"],
                         capture_output=True, text=True, check=True)
    c = json.loads(out.stdout)["config"]
    return 2 * c["layers"] * c["kv_heads"] * c["head_dim"] * 2, os.path.getsize(model)


def soak_generation(model, threads, ctx, env):
    """One generation filling `ctx` positions; RSS sampled while it runs."""
    args = [str(QWEN), "-m", str(model), "--parallel", "--threads", str(threads),
            "--ctx-size", str(ctx), "--ignore-eos", "-t", str(ctx), "-p", "Once upon a time",
            "--json"]
    log("generation: " + " ".join(args[1:]))
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    samples = []
    err, out = [], []
    # Both pipes drained while it runs: the JSON report alone is larger than a pipe's buffer.
    readers = [
        threading.Thread(target=lambda: err.extend(proc.stderr.read().decode(errors="replace").splitlines())),
        threading.Thread(target=lambda: out.append(proc.stdout.read())),
    ]
    for r in readers:
        r.start()
    started = time.time()
    while proc.poll() is None:
        rss = status_kib(proc.pid, "RssAnon:")
        hwm = status_kib(proc.pid, "VmHWM:")
        if rss is not None and hwm is not None:
            samples.append((time.time() - started, rss, hwm))
        time.sleep(0.2)
    for r in readers:
        r.join()
    if proc.returncode != 0:
        sys.exit(f"generation failed ({proc.returncode}): {err[-3:]}")
    report = json.loads(out[0])
    return report, samples


def soak_interactive(model, threads, turns, ctx, gen, env):
    """`turns` lines through -i; RSS after every turn, with the positions the cache holds."""
    lines = [LINES[i % len(LINES)] + f" ({i + 1})" for i in range(turns)]
    path = ROOT / "target" / "soak" / "turns.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    args = [str(QWEN), "-m", str(model), "--parallel", "--threads", str(threads), "-i",
            "--no-think", "--ctx-size", str(ctx), "-t", str(gen)]
    log(f"interactive: {' '.join(args[1:])} < {path} ({turns} turns)")
    with open(path, "rb") as stdin:
        proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=env)
        per_turn = []
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            if not line.startswith("turn "):
                continue
            # turn 7: prompt 14 new tokens (+120 cached) ...; generated 8 tokens ...
            words = line.replace("(", " ").replace(")", " ").split()
            new = int(words[3])
            cached = int(words[words.index("new") + 2].lstrip("+"))
            generated = int(words[words.index("generated") + 1])
            rss = status_kib(proc.pid, "RssAnon:")
            hwm = status_kib(proc.pid, "VmHWM:")
            per_turn.append((new + cached + generated, rss, hwm))
        proc.wait()
    if proc.returncode != 0:
        sys.exit(f"interactive failed ({proc.returncode})")
    return per_turn


def unexplained_growth(first, last, kv_per_pos):
    """(RSS growth, KV growth, the rest) in bytes between two (positions, rss_kib) points."""
    rss = (last[1] - first[1]) * 1024
    kv = (last[0] - first[0]) * kv_per_pos
    return rss, kv, rss - kv


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--ctx", type=int, default=4096, help="context of the generation soak")
    ap.add_argument("--turns", type=int, default=200)
    ap.add_argument("--turn-tokens", type=int, default=8, help="tokens per interactive answer")
    ap.add_argument("--max-growth-mib", type=float, default=32.0,
                    help="allowed growth beyond the KV cache's (MiB)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--only", choices=["generation", "interactive"], default=None)
    a = ap.parse_args()
    if not QWEN.exists():
        sys.exit("build first: cargo build --release")
    model = a.model or make_model(ROOT / "target" / "soak" / "qwen3-0.6b-q8_0-vocab.gguf")
    kv_per_pos, file_size = kv_bytes_per_position(model)
    env = dict(os.environ, XDG_CACHE_HOME=str(ROOT / "target" / "soak" / "cache"))
    log(f"model {model} ({file_size / MIB:.0f} MiB), KV cache {kv_per_pos} bytes per position")

    ok = True
    figures = {"model": str(model), "file_mib": file_size / MIB, "kv_bytes_per_position": kv_per_pos}

    if a.only != "interactive":
        ok &= generation_soak(a, model, kv_per_pos, env, figures)
    if a.only != "generation":
        ok &= interactive_soak(a, model, kv_per_pos, env, figures)
    if a.json:
        a.json.write_text(json.dumps(figures, indent=2))
    log("soak: " + ("memory flat (growth is the KV cache's)" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


def generation_soak(a, model, kv_per_pos, env, figures):
    report, samples = soak_generation(model, a.threads, a.ctx, env)
    n_gen, n_prompt = report["n_gen"], report["n_prompt"]
    steps = report["decode"]["samples_ns"]
    # "After the first step": the first sample a second after the prompt pass; its position
    # from the decode steps' own times (each step is slower than the last as attention grows).
    # (The step times leave out sampling and printing, so this drifts later in the run: only
    # the first second is counted this way.) "At the end": the largest sample, taken before
    # the engine, its cache with it, is freed, when every position has been written.
    t0 = (report["load_ms"] + report["compile_ms"]) / 1e3 + report["prefill"]["total_ns"] / 1e9
    first = next((s for s in samples if s[0] > t0 + 1.0), samples[0])
    last = max(samples, key=lambda s: s[1])
    elapsed, done = t0, 0
    while done < len(steps) and elapsed < first[0]:
        elapsed += steps[done] / 1e9
        done += 1
    first_pos, last_pos = n_prompt + done, n_prompt + len(steps)
    rss, kv, rest = unexplained_growth((first_pos, first[1]), (last_pos, last[1]), kv_per_pos)
    peak = max(s[2] or 0 for s in samples) * 1024
    log(f"generation: {n_prompt} prompt + {n_gen} generated tokens, stop {report['stop_reason']}; "
        f"decode {report['decode']['avg_ts']:.1f} tok/s mean")
    log(f"  RssAnon {first[1] / 1024:.0f} MiB at position {first_pos} -> {last[1] / 1024:.0f} MiB at "
        f"{last_pos}; growth {rss / MIB:.1f} MiB, KV cache {kv / MIB:.1f} MiB, "
        f"unexplained {rest / MIB:+.1f} MiB; peak {peak / MIB:.0f} MiB")
    ok = report["stop_reason"] == "context_full" and abs(rest) < a.max_growth_mib * MIB
    figures["generation"] = dict(n_prompt=n_prompt, n_gen=n_gen, stop=report["stop_reason"],
                                 first_position=first_pos, last_position=last_pos,
                                 rss_first_mib=first[1] / 1024, rss_last_mib=last[1] / 1024,
                                 kv_growth_mib=kv / MIB, unexplained_mib=rest / MIB,
                                 peak_mib=peak / MIB, decode_tok_s=report["decode"]["avg_ts"])
    return ok


def interactive_soak(a, model, kv_per_pos, env, figures):
    ok = True
    per_turn = soak_interactive(model, a.threads, a.turns, 4 * a.ctx, a.turn_tokens, env)
    if len(per_turn) != a.turns:
        log(f"interactive: {len(per_turn)} turns answered of {a.turns}")
        ok = False
    rss, kv, rest = unexplained_growth(per_turn[0], per_turn[-1], kv_per_pos)
    worst = max(unexplained_growth(per_turn[0], t, kv_per_pos)[2] for t in per_turn)
    marks = [n for n in (2, 5, 10, 25, 50, 100, 150, 200) if n <= len(per_turn)]
    series = {n: unexplained_growth(per_turn[0], per_turn[n - 1], kv_per_pos)[2] / MIB for n in marks}
    log("  unexplained growth after turn " + ", ".join(f"{n}: {v:+.1f}" for n, v in series.items()) + " MiB")
    peak_rss = max(t[2] for t in per_turn) * 1024
    log(f"interactive: {len(per_turn)} turns, {per_turn[-1][0]} positions at the end")
    log(f"  RssAnon {per_turn[0][1] / 1024:.0f} MiB after turn 1 -> {per_turn[-1][1] / 1024:.0f} MiB after "
        f"turn {len(per_turn)}; growth {rss / MIB:.1f} MiB, KV cache {kv / MIB:.1f} MiB, unexplained "
        f"{rest / MIB:+.1f} MiB (largest over the turns {worst / MIB:+.1f}); peak {peak_rss / MIB:.0f} MiB")
    ok &= worst < a.max_growth_mib * MIB
    figures["interactive"] = dict(turns=len(per_turn), positions=per_turn[-1][0],
                                  rss_first_mib=per_turn[0][1] / 1024,
                                  rss_last_mib=per_turn[-1][1] / 1024, kv_growth_mib=kv / MIB,
                                  unexplained_mib=rest / MIB, worst_unexplained_mib=worst / MIB,
                                  unexplained_by_turn_mib=series,
                                  peak_mib=peak_rss / MIB)
    return ok


if __name__ == "__main__":
    main()

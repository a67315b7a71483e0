#!/usr/bin/env python3
"""`--mtp` on files with a multi-token-prediction block: what verifying k drafted tokens costs
against a plain decode step, and decode speed at the acceptance a block gives.

For each file (made by make_qwen3_gguf.py --mtp, and rewritten by bench/mtp_models.py into
blocks that agree with the trunk): a plain `--parallel` decode of -t tokens (median ms per step
over --repeat runs after a warm-up), then `--mtp N` for each N asked: the median time of the
verification passes by their length (the last accepted token plus up to N drafts), the median
draft time per round, the acceptance rate and decode tok/s. Everything in one invocation, the
runs of each file back to back, alternating `--rounds` times; every ratio is taken within a
round and reported as the median over the rounds with their range: only the ratios of one run
mean anything on a shared machine.

  bench/mtp_bench.py QWEN_BINARY FILE... [--drafts 1 2 3 4] [-t 32] [--threads 2] [--repeat 2]
                     [--rounds 3]
"""
import argparse
import json
import statistics
import subprocess
import sys


def qwen(binary, model, extra, threads, tokens, repeat):
    cmd = [binary, "-m", model, "--token-ids", "1,2,3,4,5,6,7,8", "-t", str(tokens), "--ignore-eos", "--parallel",
           "--threads", str(threads), "--json", "--repeat", str(repeat + 1), *extra]
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def tok_s(report):
    """Median decode tok/s over the measured runs (the first of --repeat, a warm-up, left out)."""
    samples = report["repeat"]["decode"]["samples_ts"]
    return statistics.median(samples[1:] or samples)


def verify_ms(report):
    """Median time of the verification passes by their length (tokens -> ms, count)."""
    return {v["n_tokens"]: (statistics.median(v["samples_ns"]) / 1e6, v["count"])
            for v in report["mtp"]["verify"]}


def spread(values, unit="x", digits=2):
    """`median` (min-max over the rounds when there are several)."""
    med = f"{statistics.median(values):.{digits}f}{unit}"
    if len(values) < 2:
        return med
    return f"{med} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--drafts", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("-t", "--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1,
                    help="plain and --mtp runs alternate this many times; every ratio is taken "
                         "within a round (a machine whose bandwidth drifts moves whole rounds)")
    a = ap.parse_args()
    for f in a.files:
        plain_ms, speedup, verify, last = [], {n: [] for n in a.drafts}, {}, {}
        for _ in range(a.rounds):
            step_ms = 1000 / tok_s(qwen(a.binary, f, [], a.threads, a.tokens, a.repeat))
            plain_ms.append(step_ms)
            for n in a.drafts:
                r = qwen(a.binary, f, ["--mtp", str(n)], a.threads, a.tokens, a.repeat)
                speedup[n].append(tok_s(r) * step_ms / 1000)
                for k, (ms, count) in verify_ms(r).items():
                    verify.setdefault((n, k), []).append((ms / step_ms, count))
                last[n] = r["mtp"]
        print(f"\n{f}\n  plain decode: {spread(plain_ms, ' ms', 1)} per step")
        for n in a.drafts:
            m = last[n]
            passes = ", ".join(
                f"{k} tok {spread([x for x, _ in v])} (n={sum(c for _, c in v)})"
                for (d, k), v in sorted(verify.items()) if d == n)
            print(f"  --mtp {n}: {spread(speedup[n])} plain decode, acceptance "
                  f"{100 * m['acceptance_rate']:.1f}%, {m['tokens_per_pass']:.2f} tokens per pass, "
                  f"drafts {m['draft_avg_ns'] / 1e6:.1f} ms per round; verify passes against a "
                  f"plain step: {passes}")


if __name__ == "__main__":
    main()

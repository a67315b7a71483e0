#!/usr/bin/env bash
# Type-checks the CUDA backend (`--features cuda-check`) on a machine without a CUDA toolkit or GPU.
#
# Nothing to install: the `ci-check` feature of luminal_cudarc skips its build script's search for
# `cuda.h` and the link directives, and the driver/cuBLAS/NVRTC bindings are pre-generated Rust.
# `cargo check` and `cargo clippy` never link, so no CUDA library is needed either. A real build
# (`--features cuda`) needs the toolkit: see docs/gpu.md.
#
# The `metal` feature cannot be checked off macOS (luminal_metal's dependencies build Objective-C);
# on other systems it stops with one compile_error! line, which this script also confirms.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo check --features cuda-check"
cargo check --all-targets --features cuda-check
echo "== cargo clippy --features cuda-check"
cargo clippy --all-targets --features cuda-check -- -D warnings

if [[ "$(uname -s)" != Darwin ]]; then
    echo "== cargo check --features metal (expected: one clear error off macOS)"
    if out=$(cargo check --features metal 2>&1); then
        echo "error: --features metal built on $(uname -s); expected a compile_error!" >&2
        exit 1
    fi
    grep -q "feature \`metal\` needs macOS" <<<"$out" || {
        echo "$out" >&2
        echo "error: --features metal failed for another reason than the macOS check" >&2
        exit 1
    }
fi
echo "cuda-check: ok"

#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and the CUDA toolkit: builds the CUDA backend and compares it with
# llama.cpp's references (f32 and f16, every fixture model, whole and chunked prefill). Prints the
# largest logit difference per model; a test that finds no device prints "skipped: ...".
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,compute_cap,memory.total --format=csv
# luminal_cuda's NVRTC kernels include cuda_fp16.h from /usr/local/cuda/include.
[[ -e /usr/local/cuda/include/cuda_fp16.h ]] || echo "warning: /usr/local/cuda/include/cuda_fp16.h missing" >&2
cargo test --release --features cuda --test gpu_numerics -- --nocapture --test-threads 1

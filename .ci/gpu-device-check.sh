#!/usr/bin/env bash
# The CUDA check on a GPU machine, which has no Rust toolchain: it runs the folder that
# .ci/gpu-carry.sh built and packed on a machine with cargo (binaries, stub, tools, run.sh;
# the fixtures are the checkout's).
#
#   bash .ci/gpu-carry.sh                     here (no GPU needed): builds target/gpu-carry
#   bash .ci/gpu-device-check.sh [FOLDER]     on the GPU machine (the same as bash FOLDER/run.sh)
#
# On a remote runner: send the checkout with target/gpu-carry, then run bash target/gpu-carry/run.sh.
# See run.sh (.ci/gpu-run.sh) for what it runs and where the results go.
set -euo pipefail
cd "$(dirname "$0")/.."
folder=${1:-target/gpu-carry}
[[ -f $folder/run.sh ]] || {
    echo "error: no $folder/run.sh: build it first with bash .ci/gpu-carry.sh (on a machine with cargo)" >&2
    exit 1
}
exec bash "$folder/run.sh"

#!/usr/bin/env bash
# The CUDA check on a GPU machine that has no Rust: `run.sh` of the folder .ci/gpu-carry.sh packs.
#
#   bash target/gpu-carry/run.sh             on the GPU machine (results in $OUT)
#   bash target/gpu-carry/run.sh --dry-run   anywhere: the carried stub driver instead of a GPU
#
# Finds the driver and PyTorch's CUDA 13 libraries (cuBLAS, cuBLASLt, NVRTC) and sets the library
# path, prints nvidia-smi, checks that NVRTC compiles a cuda_fp16.h kernel, runs the GPU numerics
# tests against llama.cpp's references (f32 and f16, whole and chunked prefill), writes
# Qwen3-4B-shaped F16 and Q8_0 files (in the background, while the tests run) and times prompt and
# decode with `qwen --backend cuda --kernel-timing --json`. Every step has a timeout inside one
# budget (QWEN_GPU_BUDGET_S, default 450 s), so one hang cannot eat the device time; a step that
# fails does not stop the next. Results go to $OUT (default: ./gpu-out), at most 8 files: run.log,
# numerics.log, bench-*.json (4) and summary.txt.
#
# The dry run checks what needs no GPU: library discovery (the nvidia-* packages must be importable
# by python3, e.g. through PYTHONPATH), the one-line error without a device, the model writer (small
# files), the JSON report (a CPU run) and the summary. Exit status: 0 when every step passed.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DRY=0
case "${1:-}" in
"") ;;
--dry-run) DRY=1 ;;
-h | --help)
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "error: unknown argument '$1' (run.sh takes --dry-run or nothing)" >&2
    exit 2
    ;;
esac
(($# <= 1)) || {
    echo "error: run.sh takes at most one argument" >&2
    exit 2
}

OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
# A rerun into the same folder starts afresh.
rm -f "$OUT"/run.log "$OUT"/numerics.log "$OUT"/bench-*.json "$OUT"/summary.txt
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qwen-gpu.XXXXXX") || exit 1
BUDGET=${QWEN_GPU_BUDGET_S:-450}
START=$SECONDS
STEPS="$WORK/steps.txt"
BIN="$HERE/bin"
# The checkout's fixtures (it travels with the call; run.sh runs from its root).
QWEN_FIXTURES=${QWEN_FIXTURES:-$PWD/tests/fixtures}
[[ -d $QWEN_FIXTURES/models ]] || {
    echo "error: no fixtures at $QWEN_FIXTURES: run run.sh from the checkout's root (or set QWEN_FIXTURES)" >&2
    exit 2
}
export XDG_CACHE_HOME="$WORK/xdg" QWEN_FIXTURES PYTHONUNBUFFERED=1
: >"$STEPS"
exec > >(tee -a "$OUT/run.log") 2>&1

note() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - START)); }
record() { printf '%-28s %s\n' "$1" "$2" >>"$STEPS"; }

# step NAME MAX_SECONDS COMMAND...: runs COMMAND with a timeout of MAX_SECONDS or what is left of
# the budget, whichever is less, and records how it ended.
step() {
    local name=$1 want=$2 left t0 rc
    shift 2
    left=$((BUDGET - (SECONDS - START)))
    ((want < left)) || want=$left
    if ((want < 10)); then
        record "$name" "skipped: the ${BUDGET}s budget is spent"
        return 1
    fi
    note "$name (timeout ${want}s)"
    t0=$SECONDS
    if declare -F "$1" >/dev/null; then
        # A function of this script: run in a child bash, which inherits the exported functions.
        timeout -k 10 "$want" bash -c '"$@"' "$1" "$@"
    else
        timeout -k 10 "$want" "$@"
    fi
    rc=$?
    if ((rc == 124 || rc == 137)); then
        record "$name" "TIMED OUT after ${want}s"
    elif ((rc != 0)); then
        record "$name" "FAILED (exit $rc, $((SECONDS - t0))s)"
    else
        record "$name" "ok ($((SECONDS - t0))s)"
    fi
    return "$rc"
}

# The folders python3's `nvidia` package (PyTorch's nvidia-* wheels) spans.
nvidia_roots() {
    python3 - <<'EOF' 2>/dev/null
import os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
roots = list(getattr(nvidia, "__path__", []))
if getattr(nvidia, "__file__", None):
    roots.append(os.path.dirname(nvidia.__file__))
print("\n".join(dict.fromkeys(roots)))
EOF
}

# The folder holding library $1: the nvidia-* packages first (the GPU machine's own CUDA 13 build,
# matching its toolkit), then the toolkit's and the system's folders.
find_library() {
    local lib=$1 root hit dir
    while read -r root; do
        [[ -n $root ]] || continue
        hit=$(find -L "$root" -maxdepth 4 -name "$lib" 2>/dev/null | head -1)
        [[ -n $hit ]] && { dirname "$hit"; return 0; }
    done <<<"$NVIDIA_ROOTS"
    for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
        $(ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l {print $NF}' | xargs -r -n1 dirname); do
        [[ -e $dir/$lib ]] && { echo "$dir"; return 0; }
    done
    return 1
}

# The driver's folder: the container's driver mount, else where ldconfig knows libcuda.so.1.
find_driver() {
    local dir
    if ((DRY)); then
        echo "$HERE/stub"
        return 0
    fi
    for dir in /usr/local/nvidia/lib64 /usr/local/nvidia/lib \
        $(ldconfig -p 2>/dev/null | awk '$1 == "libcuda.so.1" {print $NF}' | xargs -r -n1 dirname) \
        /usr/lib/x86_64-linux-gnu /usr/lib64; do
        [[ -e $dir/libcuda.so.1 ]] && { echo "$dir"; return 0; }
    done
    return 1
}

setup_libraries() {
    local dirs=() dir lib
    NVIDIA_ROOTS=$(nvidia_roots)
    echo "python3 nvidia packages: ${NVIDIA_ROOTS:-none}"
    dir=$(find_driver) || {
        echo "error: no libcuda.so.1 (looked in /usr/local/nvidia/lib64 and ldconfig's list)"
        return 1
    }
    echo "driver:      $dir/libcuda.so.1 -> $(readlink -f "$dir/libcuda.so.1")"
    dirs+=("$dir")
    for lib in libcublas.so.13 libcublasLt.so.13 libnvrtc.so.13; do
        dir=$(find_library "$lib") || {
            echo "error: no $lib in the nvidia packages, /usr/local/cuda or ldconfig's list"
            return 1
        }
        printf '%-18s %s\n' "$lib:" "$(readlink -f "$dir/$lib")"
        [[ " ${dirs[*]} " == *" $dir "* ]] || dirs+=("$dir")
    done
    LD_LIBRARY_PATH=$(IFS=:; echo "${dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export LD_LIBRARY_PATH
    # Any other CUDA library a later build may need (libcudart, libcurand), searched the same way.
    for lib in $(ldd "$BIN/qwen" "$BIN/gpu_numerics" | awk '/=> not found/ {print $1}' | sort -u); do
        dir=$(find_library "$lib") || continue
        printf '%-18s %s\n' "$lib:" "$(readlink -f "$dir/$lib")"
        LD_LIBRARY_PATH=$dir:$LD_LIBRARY_PATH
    done
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    ldd "$BIN/qwen"
    if ldd "$BIN/qwen" "$BIN/gpu_numerics" | grep -q "not found"; then
        echo "error: a library the binaries need is not found"
        return 1
    fi
}

show_gpu() {
    if ! command -v nvidia-smi >/dev/null; then
        echo "no nvidia-smi on this machine"
        ((DRY))
        return
    fi
    nvidia-smi && nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm \
        --format=csv | tee "$WORK/gpu.csv"
}

# luminal_cuda's NVRTC kernels include cuda_fp16.h from /usr/local/cuda/include (a fixed path): if
# only the nvidia packages have it, that path is made to point at theirs.
check_fp16_header() {
    local want=/usr/local/cuda/include/cuda_fp16.h found root
    if [[ -e $want ]]; then
        echo "NVRTC header: $want"
        compile_check "$(dirname "$want")"
        return
    fi
    while read -r root; do
        [[ -n $root ]] || continue
        found=$(find -L "$root" -maxdepth 4 -name cuda_fp16.h 2>/dev/null | head -1)
        [[ -n $found ]] && break
    done <<<"$NVIDIA_ROOTS"
    if [[ -z ${found:-} ]]; then
        echo "error: no cuda_fp16.h in /usr/local/cuda/include or the nvidia packages"
        return 1
    fi
    if ((DRY)); then
        echo "would link /usr/local/cuda/include -> $(dirname "$found") (dry run: left alone)"
        compile_check "$(dirname "$found")"
    elif [[ ! -e /usr/local/cuda/include ]]; then
        mkdir -p /usr/local/cuda && ln -s "$(dirname "$found")" /usr/local/cuda/include &&
            echo "linked /usr/local/cuda/include -> $(dirname "$found")" &&
            compile_check /usr/local/cuda/include
    else
        echo "error: /usr/local/cuda/include exists without cuda_fp16.h (found $found)"
        return 1
    fi
}

# NVRTC (the one on the library path) compiles a cuda_fp16.h kernel with include folder $1.
compile_check() {
    local dir
    dir=$(find_library libnvrtc.so.13) || return 1
    python3 "$HERE/tools/nvrtc_check.py" "$dir/libnvrtc.so.13" "$1"
}

# One precision's numerics test; on a GPU a missing device fails it instead of skipping.
numerics() {
    local test=$1 log="$WORK/$1.log"
    if ((DRY)); then
        "$BIN/gpu_numerics" --exact "cuda::$test" --nocapture --test-threads 1 2>&1 | tee "$log"
        ((PIPESTATUS[0] == 0)) && grep -q "skipped: no CUDA device" "$log"
    else
        QWEN_REQUIRE_GPU=1 "$BIN/gpu_numerics" --exact "cuda::$test" --nocapture --test-threads 1 2>&1 |
            tee "$log"
    fi
    local rc=$?
    cat "$log" >>"$OUT/numerics.log"
    return "$rc"
}

# Without a device, `--backend cuda` must stop with one `error:` line (no panic) and exit non-zero.
no_device_error() {
    local err="$WORK/no-device.err"
    if "$BIN/qwen" --backend cuda -m "$QWEN_FIXTURES/models/tiny-f32.gguf" --token-ids 1,2 -t 1 \
        >/dev/null 2>"$err"; then
        echo "error: qwen --backend cuda succeeded without a GPU"
        return 1
    fi
    cat "$err"
    [[ $(wc -l <"$err") -eq 1 ]] && grep -q "^error: no cuda device: " "$err"
}

write_models() {
    local args=(--shape qwen3-4b)
    ((DRY)) && args=(--shape tiny)
    python3 "$HERE/tools/write_qwen3_gguf.py" "$WORK/model-f16.gguf" "${args[@]}" --type f16 &&
        python3 "$HERE/tools/write_qwen3_gguf.py" "$WORK/model-q8_0.gguf" "${args[@]}" --type q8_0
}

# bench NAME FILE [qwen flags]: prompt of PROMPT tokens, DECODE steps; JSON to $OUT/bench-NAME.json.
bench() {
    local name=$1 file=$2 ids
    shift 2
    ids=$(seq 0 $((PROMPT - 1)) | awk '{printf "%s%d", (NR > 1 ? "," : ""), 1 + ($1 * 7919) % 500}')
    "$BIN/qwen" --backend "$BACKEND" -m "$file" --token-ids "$ids" -t "$DECODE" --ignore-eos \
        --ctx-size $((PROMPT + DECODE + 16)) --kernel-timing --json "$@" >"$OUT/bench-$name.json"
}

export -f note record step nvidia_roots find_library show_gpu check_fp16_header compile_check numerics \
    no_device_error write_models bench
export DRY HERE BIN OUT WORK STEPS BUDGET START

main() {
    local ok=1 writer
    echo "run.sh $( ((DRY)) && echo --dry-run) from $HERE; results in $OUT; budget ${BUDGET}s"
    echo "fixtures: $QWEN_FIXTURES"
    cat "$HERE/BUILD-INFO" 2>/dev/null
    # Not under `step`: it sets the library path for the steps that follow (and takes a second).
    note "libraries"
    if setup_libraries; then
        record "libraries" "ok"
        export NVIDIA_ROOTS
    else
        record "libraries" "FAILED"
        record "(rest)" "not run: the binaries cannot start without these libraries"
        summarize
        return 1
    fi
    step "nvidia-smi" 30 show_gpu || ok=0
    step "NVRTC and cuda_fp16.h" 30 check_fp16_header || ok=0

    # The model files are written while the numerics tests run (no timing is taken meanwhile).
    note "writing the model files in the background"
    (step "write F16 and Q8_0 files" 200 write_models) &
    writer=$!

    : >"$OUT/numerics.log"
    step "numerics f32" 150 numerics cuda_f32_matches_llama_cpp || ok=0
    step "numerics f16" 150 numerics cuda_f16_matches_llama_cpp || ok=0
    if ((DRY)); then
        step "no-device error" 30 no_device_error || ok=0
    fi

    wait "$writer" || ok=0
    if [[ -s $WORK/model-q8_0.gguf ]]; then
        step "inspect the written file" 30 "$BIN/qwen" --inspect -m "$WORK/model-q8_0.gguf" || ok=0
        if ((DRY)); then
            export BACKEND=cpu PROMPT=16 DECODE=8
        else
            export BACKEND=cuda PROMPT=512 DECODE=64
        fi
        step "bench F16 --parallel (f16)" 90 bench f16-parallel "$WORK/model-f16.gguf" --parallel || ok=0
        step "bench Q8_0 --parallel (f16)" 90 bench q8_0-parallel "$WORK/model-q8_0.gguf" --parallel || ok=0
        step "bench F16 standard (f32)" 90 bench f16-f32 "$WORK/model-f16.gguf" || ok=0
        step "bench Q8_0 standard (f32)" 90 bench q8_0-f32 "$WORK/model-q8_0.gguf" || ok=0
    else
        record "benchmarks" "not run: no model files"
        ok=0
    fi
    summarize
    ((ok))
}

summarize() {
    note "summary"
    python3 "$HERE/tools/gpu_summary.py" --steps "$STEPS" --gpu "$WORK/gpu.csv" \
        --numerics "$OUT/numerics.log" --total $((SECONDS - START)) "$OUT"/bench-*.json \
        >"$OUT/summary.txt" 2>&1
    cat "$OUT/summary.txt"
}

main
rc=$?
rm -rf "$WORK"
exit "$rc"

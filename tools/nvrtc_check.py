#!/usr/bin/env python3
"""Compiles one f16 kernel as luminal_cuda's are compiled (NVRTC, sm_75, cuda_fp16.h from the
include folder), so that a missing header or an NVRTC that cannot load shows before the tests do.
Needs no GPU. Prints the PTX version, which the driver must accept.

  nvrtc_check.py LIBNVRTC_SO INCLUDE_DIR     e.g. nvrtc_check.py libnvrtc.so.13 /usr/local/cuda/include
"""
import ctypes
import sys

SOURCE = b"""
#include "cuda_fp16.h"
extern "C" __global__ void kernel(__half *out, const __half *a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __hadd(a[i], __float2half(1.0f));
}
"""


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: nvrtc_check.py LIBNVRTC INCLUDE_DIR")
    nvrtc = ctypes.CDLL(sys.argv[1])
    version = (ctypes.c_int(), ctypes.c_int())
    nvrtc.nvrtcVersion(ctypes.byref(version[0]), ctypes.byref(version[1]))
    prog = ctypes.c_void_p()
    if nvrtc.nvrtcCreateProgram(ctypes.byref(prog), SOURCE, b"check.cu", 0, None, None) != 0:
        sys.exit("error: nvrtcCreateProgram failed")
    opts = [b"--gpu-architecture=sm_75", b"--include-path=" + sys.argv[2].encode()]
    rc = nvrtc.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(prog, log)
    if rc != 0:
        sys.exit(f"error: NVRTC {version[0].value}.{version[1].value} could not compile a cuda_fp16.h "
                 f"kernel with --include-path={sys.argv[2]}: {log.value.decode(errors='replace').strip()}")
    nvrtc.nvrtcGetPTXSize(prog, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetPTX(prog, ptx)
    ptx_version = next((l.split()[1] for l in ptx.value.decode().splitlines() if l.startswith(".version")), "?")
    print(f"NVRTC {version[0].value}.{version[1].value} compiled a cuda_fp16.h kernel for sm_75: PTX ISA {ptx_version}")


if __name__ == "__main__":
    main()

"""Compile every kernel of the CUDA backend for a real GPU target, on a machine without one.

    pip install -e '.[gpu]'            # numba-cuda with the CUDA toolkit's compiler (NVVM)
    python benchmarks/check_cuda_compiles.py [--cc 9.0]

numba compiles the rule functions of ``immunesim.kernels`` (``@njit``) as device functions of
each ``@cuda.jit`` kernel; this script makes it do so for every kernel of
``immunesim.backends.cuda`` with the argument types the backend launches them with, and
reports the size of the PTX and whether any float64 multiply-add was fused (it must not be:
fused and unfused arithmetic round differently, and the CPU fuses nothing). It exits non-zero
if a kernel fails to compile or a kernel was added without a signature here.
"""

import argparse

import numba.cuda.dispatcher as D
from numba import cuda

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--cc", default="9.0", help="compute capability (default 9.0, H100/H200)")
cc = tuple(int(v) for v in parser.parse_args().cc.split("."))


class _Device:
    compute_capability = cc


# Device functions ask the current device for its compute capability; there is none here.
D.get_current_device = lambda: _Device()

import immunesim.backends.cuda as C  # noqa: E402

# Argument types of each kernel, as the backend launches it (numba's type strings; ``[::1]``
# is a C-contiguous array, as CuPy hands them over). Scalars: int64, uint8, uint64.
CELLS = ("int64[::1], int8[::1], int8[::1], int8[::1], int32[::1], int32[::1], int32[::1], "
         "int16[::1], uint8[::1], uint8[::1]")  # the cell arrays, in CELL_FIELDS order
I4 = "int64, int64, int64, int64"
# fmt: off
sig = {
    "_scatter_min": "int64, int32[::1], int64[::1], int64[::1]",
    "_release_claims": "int64, int32[::1], int64[::1]",
    "_deplete": f"{I4}, int64[::1], int8[::1], int32[::1], int32[::1], uint8[::1], uint8[::1], "
                "uint8[::1], uint8, uint64[::1], int64[::1]",
    "_production_flags": "int64, int64, int64, int32[::1], uint8[::1], uint64, uint64, "
                         "int32[::1]",
    "_place_births": f"{I4}, int64, int64, int32[::1], int64[::1], uint64[::1], {CELLS}, "
                     "int32[::1], int64[:, ::1], int64",
    "_move_proposals": f"{I4}, int64[::1], int8[::1], int32[::1], int32[::1], uint8[::1], "
                       "int32[::1], uint8[::1], int8[:, ::1], uint64[::1], uint64[::1], "
                       "uint64[::1], int8[::1], int32[::1], int64[::1]",
    "_apply_moves": "int64, int64, int32[::1], int32[::1], int32[::1], int32[::1], int64[::1], "
                    "int64[::1]",
    "_kill_proposals": f"{I4}, int64[::1], int8[::1], int8[::1], int32[::1], int32[::1], "
                       "uint8[::1], uint8[::1], int32[::1], uint8[::1], int64[::1], int32[::1], "
                       "int64[::1]",
    "_apply_kills": "int64, int64, int32[::1], int32[::1], uint8[::1], int16[::1], int32[::1], "
                    "int64[::1], int64[::1], int64[:, ::1], int64[::1], int64[::1]",
    "_activate": f"{I4}, int64[::1], int8[::1], int8[::1], int32[::1], int32[::1], uint8[::1], "
                 "int16[::1], int32[::1], uint8[::1], int64[:, ::1], int64[::1], uint64[::1], "
                 "uint64[::1], int64[:, ::1]",
    "_division_proposals": f"{I4}, int64[::1], int8[::1], int8[::1], int32[::1], int32[::1], "
                           "uint8[::1], int16[::1], int32[::1], uint64[::1], int64[::1], "
                           "int32[::1], int64[::1]",
    "_winners": "int64, int32[::1], int64[::1], int64[::1], int32[::1]",
    "_place_daughters": f"{I4}, int64, int32[::1], int32[::1], int64[::1], {CELLS}, "
                        "int32[::1], int64[:, ::1], uint64",
    "_secrete": "int64, int64, int8[::1], int8[::1], int32[::1], int32[::1], uint8[::1], "
                "int64[:, ::1], int64[::1]",
    "_diffuse_decay": "int64, int64[:, ::1], int64[:, ::1], uint8[::1], int64[::1], int64, "
                      "int64[::1], int64[:, ::1]",
    "_circulate": "int64, int64[:, ::1], int64[::1], int64[::1], int64[::1]",
    "_react": "int64, int64[:, ::1], uint8[::1], int64[::1], int64[::1], float64[::1]",
    "_death": "int64, int64, int64, int64[::1], int8[::1], int8[::1], uint8[::1], int32[::1], "
              "int16[::1], uint64[::1]",
    "_compact": f"int64, int64, int64[::1], {CELLS}, int32[::1], int64[:, ::1], {CELLS}",
    "_count": "int64, int64, int8[::1], int8[::1], int8[::1], int32[::1], int32[::1], "
              "uint8[::1], uint8[::1], int64[:, :, ::1]",
}
# fmt: on
kernels = {
    n for n, v in vars(C).items() if type(v).__name__ == "CUDADispatcher" and n.startswith("_")
}
missing = kernels - set(sig)
if missing:
    raise SystemExit(f"kernels without a signature here: {sorted(missing)}")
fused = 0
for name, args in sig.items():
    ptx, _ = cuda.compile_ptx(getattr(C, name).py_func, f"({args},)", cc=cc)
    fma = sum(1 for line in ptx.splitlines() if "fma.rn.f64" in line)
    fused += fma
    print(f"{name:22s} {len(ptx):7d} characters of PTX, fused f64 multiply-adds: {fma}")
print(f"{len(sig)} kernels compiled for sm_{cc[0]}{cc[1]}")
if fused:
    raise SystemExit("fused float64 multiply-adds would break parity with the CPU")

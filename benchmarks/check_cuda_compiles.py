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
from numba import cuda, types

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--cc", default="9.0", help="compute capability (default 9.0, H100/H200)")
cc = tuple(int(v) for v in parser.parse_args().cc.split("."))


class _Device:
    compute_capability = cc


# Device functions ask the current device for its compute capability; there is none here.
D.get_current_device = lambda: _Device()

import immunesim.backends.cuda as C  # noqa: E402

i64, i32, i16, i8 = types.int64, types.int32, types.int16, types.int8
u8, u64, f64 = types.uint8, types.uint64, types.float64


def A(t, nd=1):  # noqa: N802 - a C-contiguous array type, as CuPy hands them over
    return types.Array(t, nd, "C")


#: The cell arrays in CELL_FIELDS order (dtypes of immunesim.state.State).
cell = (A(i64), A(i8), A(i8), A(i8), A(i32), A(i32), A(i32), A(i16), A(u8), A(u8))
#: Argument types of each kernel, as the backend launches it.
sig = {
    "_scatter_min": (i64, A(i32), A(i64), A(i64)),
    "_release_claims": (i64, A(i32), A(i64)),
    "_deplete": (
        i64,
        i64,
        i64,
        i64,
        A(i64),
        A(i8),
        A(i32),
        A(i32),
        A(u8),
        A(u8),
        A(u8),
        u8,
        A(u64),
        A(i64),
    ),
    "_production_flags": (i64, i64, i64, A(i32), A(u8), u64, u64, A(i32)),
    "_place_births": (i64, i64, i64, i64, i64, i64, A(i32), A(i64), A(u64))
    + cell
    + (A(i32), A(i64, 2), i64),
    "_move_proposals": (
        i64,
        i64,
        i64,
        i64,
        A(i64),
        A(i8),
        A(i32),
        A(i32),
        A(u8),
        A(i32),
        A(u8),
        A(i8, 2),
        A(u64),
        A(u64),
        A(u64),
        A(i8),
        A(i32),
        A(i64),
    ),
    "_apply_moves": (i64, i64, A(i32), A(i32), A(i32), A(i32), A(i64), A(i64)),
    "_kill_proposals": (
        i64,
        i64,
        i64,
        i64,
        A(i64),
        A(i8),
        A(i8),
        A(i32),
        A(i32),
        A(u8),
        A(u8),
        A(i32),
        A(u8),
        A(i64),
        A(i32),
        A(i64),
    ),
    "_apply_kills": (
        i64,
        i64,
        A(i32),
        A(i32),
        A(u8),
        A(i16),
        A(i32),
        A(i64),
        A(i64),
        A(i64, 2),
        A(i64),
        A(i64),
    ),
    "_activate": (
        i64,
        i64,
        i64,
        i64,
        A(i64),
        A(i8),
        A(i8),
        A(i32),
        A(i32),
        A(u8),
        A(i16),
        A(i32),
        A(u8),
        A(i64, 2),
        A(i64),
        A(u64),
        A(u64),
        A(i64, 2),
    ),
    "_division_proposals": (
        i64,
        i64,
        i64,
        i64,
        A(i64),
        A(i8),
        A(i8),
        A(i32),
        A(i32),
        A(u8),
        A(i16),
        A(i32),
        A(u64),
        A(i64),
        A(i32),
        A(i64),
    ),
    "_winners": (i64, A(i32), A(i64), A(i64), A(i32)),
    "_place_daughters": (i64, i64, i64, i64, i64, A(i32), A(i32), A(i64))
    + cell
    + (A(i32), A(i64, 2), u64),
    "_secrete": (i64, i64, A(i8), A(i8), A(i32), A(i32), A(u8), A(i64, 2), A(i64)),
    "_diffuse_decay": (i64, A(i64, 2), A(i64, 2), A(u8), A(i64), i64, A(i64), A(i64, 2)),
    "_circulate": (i64, A(i64, 2), A(i64), A(i64), A(i64)),
    "_react": (i64, A(i64, 2), A(u8), A(i64), A(i64), A(f64)),
    "_death": (i64, i64, i64, A(i64), A(i8), A(i8), A(u8), A(i32), A(i16), A(u64)),
    "_compact": (i64, i64, A(i64)) + cell + (A(i32), A(i64, 2)) + cell,
    "_count": (i64, i64, A(i8), A(i8), A(i8), A(i32), A(i32), A(u8), A(u8), A(i64, 3)),
}
kernels = {
    n for n, v in vars(C).items() if type(v).__name__ == "CUDADispatcher" and n.startswith("_")
}
missing = kernels - set(sig)
if missing:
    raise SystemExit(f"kernels without a signature here: {sorted(missing)}")
fused = 0
for name, args in sig.items():
    ptx, _ = cuda.compile_ptx(getattr(C, name).py_func, args, cc=cc)
    fma = sum(1 for line in ptx.splitlines() if "fma.rn.f64" in line)
    fused += fma
    print(f"{name:22s} {len(ptx):7d} characters of PTX, fused f64 multiply-adds: {fma}")
print(f"{len(sig)} kernels compiled for sm_{cc[0]}{cc[1]}")
if fused:
    raise SystemExit("fused float64 multiply-adds would break parity with the CPU")

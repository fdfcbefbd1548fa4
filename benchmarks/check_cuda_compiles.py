"""Compile every kernel of the CUDA backend for a real GPU target, on a machine without one.

    pip install -e '.[gpu]'            # numba-cuda with the CUDA toolkit's compiler (NVVM)
    python benchmarks/check_cuda_compiles.py [--cc 9.0]

The CUDA backend makes one kernel per phase body (:mod:`immunesim.backends.cuda`), and numba
compiles the body and every rule it calls as device functions. This script runs a short
simulation on the CPU backend through a recorder that notes every primitive the phases
launch, with the numba types of its arguments, then compiles the CUDA kernel of each for
the target with those types (C-contiguous arrays, as CuPy hands them over). It reports the
size of the PTX and whether any float64 multiply-add was fused (it must not be: fused and
unfused arithmetic round differently, and the CPU fuses nothing), and exits non-zero if a
kernel fails to compile.
"""

import argparse
import types as pytypes

import numba
import numba.cuda.dispatcher as D
import numpy as np
from numba import cuda
from numba.core import types

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--cc", default="9.0", help="compute capability (default 9.0, H100/H200)")
cc = tuple(int(v) for v in parser.parse_args().cc.split("."))


class _Device:
    compute_capability = cc


# Device functions ask the current device for its compute capability; there is none here.
D.get_current_device = lambda: _Device()

import immunesim.backends.cuda as C  # noqa: E402
from immunesim.backends import numba_cpu  # noqa: E402
from immunesim.engine import simulation  # noqa: E402

ACC = numba.typeof(np.zeros((1, 1), np.int64))
FLAG = numba.typeof(np.zeros(1, np.int32))
OFFSET = numba.typeof(np.zeros(1, np.int64))
launched: dict[tuple, tuple] = {}


def _recording(name, fn, make):
    def call(*args, **kw):
        launched[make(*args)] = True
        return fn(*args, **kw)

    return call


recorder = pytypes.SimpleNamespace(**vars(numba_cpu))
recorder.for_cells = _recording(
    "for_cells",
    numba_cpu.for_cells,
    lambda body, n, t, c, s, p, *_: (
        "cell map",
        (body,),
        (types.int64, ACC, *map(numba.typeof, (t, c, s, p))),
    ),
)
recorder.for_sites = _recording(
    "for_sites",
    numba_cpu.for_sites,
    lambda body, n, t, c, s, p, *_: ("site map", (body,), (ACC, *map(numba.typeof, (t, c, s, p)))),
)
recorder.append = _recording(
    "append",
    numba_cpu.append,
    lambda w, pl, n, t, c, s, p, *_: ("append", (w, pl), tuple(map(numba.typeof, (t, c, s, p)))),
)
recorder.scatter_min = _recording(
    "scatter_min",
    numba_cpu.scatter_min,
    lambda n, c, s: ("scatter-min", (), (types.int64, numba.typeof(c), numba.typeof(s))),
)

simulation.get_backend = lambda name: ("numba", recorder)
simulation.warm_up("numba")

fused = compiled = 0
for what, bodies, argtypes in launched:
    if what == "cell map":
        kernels = [(C._made(C._cell_map, *bodies), argtypes)]
    elif what == "site map":
        kernels = [(C._made(C._site_map, *bodies), argtypes)]
    elif what == "append":
        wins, place = bodies
        kernels = [
            (C._made(C._winners, wins), (types.int64, FLAG, *argtypes)),
            (C._made(C._placing, place), (types.int64, FLAG, OFFSET, ACC, *argtypes)),
        ]
    else:
        kernels = [(C._scatter_min, argtypes)]
    for kernel, sig in kernels:
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
        fma = sum(1 for line in ptx.splitlines() if "fma.rn.f64" in line)
        fused += fma
        compiled += 1
        name = "+".join(b.__name__ for b in bodies) or "scatter_min"
        print(
            f"{what:12s} {name:34s} {len(ptx):7d} characters of PTX, fused f64 multiply-adds: {fma}"
        )
print(f"{compiled} kernels compiled for sm_{cc[0]}{cc[1]}")
if fused:
    raise SystemExit("fused float64 multiply-adds would break parity with the CPU")

"""The per-step numbers the kernels read: named parameter slots and fixed-point units.

Probabilities are 53-bit integer thresholds (see :mod:`immunesim.rng`); molecule quantities
are integers in internal units of ``1 / MOL_SCALE`` user units, so that every kernel does
integer arithmetic (plus float products that are truncated at once), and the same rules
give the same bits on every backend. :func:`immunesim.engine.parameters.build_params` fills
these from a scenario; this module imports no schema.

The rows of ``sites.mol`` are laid out by :class:`immunesim.model.layers.Layers`.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from immunesim.model.layers import Layers

#: Internal molecule units per user unit (a power of two: ``q >> MOL_SHIFT`` is user units).
#: Fine enough that what floor rounding leaves behind in a decaying layer (below
#: ``1 / fraction`` internal units per site) is negligible in user units.
MOL_SHIFT = 20
MOL_SCALE = 1 << MOL_SHIFT

#: The molecular layers are stored as int32 (arithmetic on them is int64); the most a site
#: can hold, 2048 user units less one internal unit. A value beyond it is stored as
#: ``MOL_MAX`` and the layer's flag in ``sites.saturated`` is set: the host reports it
#: (:meth:`immunesim.engine.Simulation.step`). The shipped scenarios stay below a third of
#: it (damage in tissue, the largest).
MOL_DTYPE = np.int32
MOL_MAX = int(np.iinfo(MOL_DTYPE).max)

#: Antigen look-up table: index = antigen in units of ``2**-LUT_BITS`` user units, clipped
#: to ``LUT_SIZE - 1`` (so the table covers 0 .. 512 user units in steps of 1/8).
LUT_BITS = 3
LUT_SIZE = 4096

ZONE_NAMES = ("marrow", "lymphoid", "tissue")
ZONE_CODE = {name: i for i, name in enumerate(ZONE_NAMES)}

# Named slots of ``KernelParams.ip`` (int64): counts, layer rows, amounts in internal units
# per step, and 53-bit thresholds per step.
IP_N_SPEC = 0  #: number of specificity classes
IP_GC_DIVISIONS = 1  #: germinal-centre divisions of an activated B cell
IP_CAR_STIM_STEPS = 2  #: steps a kill keeps a CAR-T cell stimulated
IP_LAYER_AUTOAG = 3  #: row of the autoantigen layer
IP_LAYER_VACC0 = 4  #: row of the first vaccine-antigen layer
IP_LAYER_IC = 5  #: row of the immune-complex layer
IP_LAYER_DAMAGE = 6  #: row of the tissue-damage layer
IP_LAYER_CYTO = 7  #: row of the cytokine layer
IP_CYTO_PER_KILL = 8  #: cytokine released by a CAR-T kill (internal units)
IP_AG_SOURCE = 9  #: autoantigen source per tissue site per step (internal units)
IP_OTHER_AG = 10  #: antigen index seen by B cells of the ``other`` class
IP_THR_GC_DIVIDE = 11  #: division threshold of an activated B cell with divisions left
IP_THR_DIFFERENTIATE = 12  #: differentiation threshold of an activated B cell
IP_THR_MEMORY_FATE = 13  #: memory (rather than plasmablast) fate threshold
IP_THR_LLPC = 14  #: plasmablast-to-LLPC threshold on a marrow niche
IP_THR_CAR_KILL = 15  #: kill threshold of an effector CAR-T cell
IP_THR_CAR_DIVIDE = 16  #: division threshold of a stimulated CAR-T cell
IP_THR_CAR_MEMORY = 17  #: threshold of a CAR-T daughter joining the memory pool
IP_THR_CAR_KILL_MEMORY = 18  #: kill threshold of a memory CAR-T cell
IP_CAR_MAX_GENERATIONS = 19  #: divisions after which a CAR-T cell stops dividing
IP_THR_PRODUCE = 20  #: naive-B production threshold of a free marrow site
IP_N_SELF = 21  #: number of autoreactive classes (``self`` and the further autoantibodies)
IP_AUTOAB_SHARE = 22  #: autoantigen share the further autoantibodies' B cells see (fixed point)
IP_THR_DISPLACE = 23  #: niche-displacement threshold of a plasmablast of a foreign-antigen class
IP_THR_DISPLACE_SELF = 24  #: niche-displacement threshold of an autoreactive plasmablast
N_IP = 25

# Slots of ``KernelParams.fp`` (float factors used only in products truncated at once).
FP_BINDING = 0  #: immune-complex formation per internal unit of antibody and antigen
N_FP = 1

#: Fixed-point fractions: ``f`` is stored as ``round(f * 2**FRAC_BITS)`` and applied as
#: ``(q * f) >> FRAC_BITS`` (pure integer arithmetic; exact on every backend for
#: ``q < 2**43``, i.e. below 8.6e9 user units per site).
FRAC_BITS = 20

# Slots of ``KernelParams.fx`` (fixed-point fractions per step).
FX_DAMAGE_PER_IC = 0  #: damage made by an immune complex in tissue
FX_AG_PER_DAMAGE = 1  #: autoantigen released by damage
FX_CYTO_PER_DAMAGE = 2  #: cytokine released by damage
FX_DIFFUSION = 3  #: fraction a site sends to each von Neumann neighbour
N_FX = 4

#: The parameters as one argument of a kernel (all numpy arrays on the CPU, device arrays on
#: a GPU):
#:
#: - ``ip`` int64[N_IP], ``fp`` float64[N_FP], ``fx`` int64[N_FX]: the named slots above;
#: - ``thr_move``, ``thr_homing``, ``thr_stay``, ``thr_divide``: uint64[N_KINDS] per-step
#:   thresholds of each kind (homeostatic division for ``thr_divide``);
#: - ``thr_death``: uint64[N_CLASSES] per cell class (:data:`~immunesim.model.cells.CLASS_NAMES`);
#: - ``home``: int8[N_KINDS] home zone code or -1; ``markers``: uint8[N_KINDS] marker masks;
#: - ``secrete``: int64[N_KINDS] amount a cell of the kind secretes per step (internal units);
#:   ``secrete_row``: int64[N_KINDS] row it secretes into (plus the cell's specificity when
#:   ``secrete_spec`` uint8[N_KINDS] is 1: a per-specificity layer), -1 for none;
#: - ``spec_cum``: uint64[n_spec] cumulative thresholds of a new naive B cell's specificity;
#: - ``decay``, ``circulate``: int64[n_layers] fixed-point fractions per step;
#:   ``diffuses``: uint8[n_layers];
#: - ``lut_naive``, ``lut_memory``: uint64[LUT_SIZE] activation thresholds by antigen index,
#:   scaled by the immunosuppression in force (:meth:`Params.kernel_params`).
KernelParams = namedtuple(
    "KernelParams",
    "ip fp fx thr_move thr_homing thr_stay thr_divide thr_death home markers secrete "
    "secrete_row secrete_spec spec_cum decay circulate diffuses lut_naive lut_memory",
)


@dataclass(frozen=True)
class Substeps:
    """Sub-steps of one step: processes that may happen more than once a step (moves,
    kills) run in ``move`` and ``kill`` sub-steps, each drawing anew; diffusion runs in
    ``diffuse`` sub-steps so that its explicit scheme stays stable at any time step."""

    move: int = 1
    kill: int = 1
    diffuse: int = 1


@dataclass
class Params:
    """Per-step parameters of one scenario.

    Attributes:
        k: the kernels' parameters (:data:`KernelParams`) without immunosuppression, as
            numpy arrays (a GPU backend's ``prepare`` gives a copy on the device).
        lut_naive_p, lut_memory_p: float64[LUT_SIZE] per-step activation probabilities by
            antigen index, without immunosuppression.
        layers: rows of the molecular layers.
        dt_hours: the time step.
        diffusion: ``k.fx[FX_DIFFUSION]`` on the host (the molecular phase passes it to its
            kernels as a scalar): the fraction sent to each neighbour per diffusion sub-step.
        substeps: the sub-steps of a step (:class:`Substeps`).
        displaces: whether any plasmablast can displace a plasma cell from its niche (the
            phase is skipped when none can).
    """

    k: KernelParams
    lut_naive_p: np.ndarray
    lut_memory_p: np.ndarray
    layers: Layers
    dt_hours: float
    diffusion: int
    substeps: Substeps = Substeps()
    displaces: bool = False

    @property
    def spec_names(self) -> tuple[str, ...]:
        return self.layers.spec_names

    def activation_luts(self, factor: float) -> tuple[np.ndarray, np.ndarray]:
        """Activation thresholds uint64[LUT_SIZE] scaled by an immunosuppression ``factor``
        in [0, 1]."""
        scale = float(1 << 53)
        naive = np.floor(np.clip(self.lut_naive_p * factor, 0, 1) * scale).astype(np.uint64)
        memory = np.floor(np.clip(self.lut_memory_p * factor, 0, 1) * scale).astype(np.uint64)
        return naive, memory


def fixed(fraction: float) -> int:
    """A fraction in [0, 1] as a fixed-point integer (see ``FRAC_BITS``)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"a per-step fraction must lie in [0, 1], got {fraction}")
    return int(round(fraction * (1 << FRAC_BITS)))


__all__ = [
    "FRAC_BITS",
    "KernelParams",
    "LUT_BITS",
    "LUT_SIZE",
    "MOL_SCALE",
    "MOL_SHIFT",
    "Params",
    "Substeps",
    "ZONE_CODE",
    "ZONE_NAMES",
    "fixed",
]

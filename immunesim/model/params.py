"""Scenario values turned into the per-step numbers the kernels read.

Probabilities become 53-bit integer thresholds (see :mod:`immunesim.rng`); molecule
quantities become integers in internal units of ``1 / MOL_SCALE`` user units, so that every
kernel does integer arithmetic (plus float products that are truncated at once), and the
same rules give the same bits on every backend.

Layer order of ``State.mol`` (shape ``(n_layers, L*L)``, int64):
``antibody[spec] for spec in specificities`` | ``autoantigen`` | ``vaccine_antigen[v]`` |
``immune_complex`` | ``damage`` | ``cytokine``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from immunesim.model.cells import KIND_NAMES, N_KINDS, Kind, marker_mask, specificity_names
from immunesim.rng import rate_threshold, threshold
from immunesim.scenario import Scenario

#: Internal molecule units per user unit (a power of two: ``q >> MOL_SHIFT`` is user units).
#: Fine enough that what floor rounding leaves behind in a decaying layer (below
#: ``1 / fraction`` internal units per site) is negligible in user units.
MOL_SHIFT = 20
MOL_SCALE = 1 << MOL_SHIFT

#: Antigen look-up table: index = antigen in units of ``2**-LUT_BITS`` user units, clipped
#: to ``LUT_SIZE - 1`` (so the table covers 0 .. 512 user units in steps of 1/8).
LUT_BITS = 3
LUT_SIZE = 4096

ZONE_NAMES = ("marrow", "lymphoid", "tissue")
ZONE_CODE = {name: i for i, name in enumerate(ZONE_NAMES)}

#: Death-class index of memory CAR-T cells (``N_KINDS``); other cells use their kind.
CAR_T_MEMORY_CLASS = N_KINDS

# Indices into ``Params.ip`` (integer parameters).
IP_SEED = 0
IP_L = 1
IP_N_SPEC = 2
IP_GC_DIVISIONS = 3
IP_CAR_STIM_STEPS = 4
IP_LAYER_AUTOAG = 5
IP_LAYER_VACC0 = 6
IP_LAYER_IC = 7
IP_LAYER_DAMAGE = 8
IP_LAYER_CYTO = 9
IP_CYTO_PER_KILL = 10
IP_AG_SOURCE = 11
IP_OTHER_AG = 12
IP_SECRETE_PB = 13
IP_SECRETE_LLPC = 14
IP_THR_GC_DIVIDE = 15
IP_THR_DIFFERENTIATE = 16
IP_THR_MEMORY_FATE = 17
IP_THR_LLPC = 18
IP_THR_CAR_KILL = 19
IP_THR_CAR_DIVIDE = 20
IP_THR_CAR_MEMORY = 21
IP_THR_CAR_KILL_MEMORY = 22
IP_CAR_MAX_GENERATIONS = 23
N_IP = 24

# Indices into ``Params.fp`` (float factors used only in products that are truncated at once).
FP_BINDING = 0
N_FP = 1

#: Fixed-point fractions: ``f`` is stored as ``round(f * 2**FRAC_BITS)`` and applied as
#: ``(q * f) >> FRAC_BITS`` (pure integer arithmetic; exact on every backend for
#: ``q < 2**43``, i.e. below 8.6e9 user units per site).
FRAC_BITS = 20

# Indices into ``Params.fx`` (fixed-point fractions per step).
FX_DAMAGE_PER_IC = 0
FX_AG_PER_DAMAGE = 1
FX_CYTO_PER_DAMAGE = 2
FX_DIFFUSION = 3
N_FX = 4


@dataclass(frozen=True)
class Layers:
    """Indices of the molecular layers."""

    n_spec: int
    n_vaccines: int

    @property
    def autoantigen(self) -> int:
        return self.n_spec

    def vaccine_antigen(self, v: int) -> int:
        return self.n_spec + 1 + v

    @property
    def immune_complex(self) -> int:
        return self.n_spec + 1 + self.n_vaccines

    @property
    def damage(self) -> int:
        return self.immune_complex + 1

    @property
    def cytokine(self) -> int:
        return self.immune_complex + 2

    @property
    def n_layers(self) -> int:
        return self.immune_complex + 3

    def names(self, spec_names: tuple[str, ...]) -> list[str]:
        out = [f"antibody_{s}" for s in spec_names]
        out.append("autoantigen")
        out += [f"antigen_{v}" for v in spec_names[1:-1]]
        out += ["immune_complex", "damage", "cytokine"]
        return out


@dataclass
class Params:
    """Per-step parameters of one scenario (all arrays are numpy, read by kernels).

    Attributes:
        ip: int64[N_IP] integer parameters and thresholds (``IP_*`` indices).
        fp: float64[N_FP] factors (``FP_*`` indices), per step, per internal unit.
        fx: int64[N_FX] fixed-point fractions per step (``FX_*`` indices).
        thr_move, thr_homing, thr_stay, thr_divide: uint64[N_KINDS] thresholds per kind.
        thr_death: uint64[N_KINDS + 1] per death class (kind; memory CAR-T last).
        home: int8[N_KINDS] home zone code or -1.
        markers: uint8[N_KINDS] marker mask per kind.
        spec_cum: uint64[n_spec] cumulative thresholds for a new naive B cell's specificity.
        lut_naive, lut_memory: uint64[LUT_SIZE] activation thresholds by antigen (user units)
            without immunosuppression; :meth:`activation_luts` scales them.
        decay: int64[n_layers] fixed-point fraction lost per step.
        circulate: int64[n_layers] fixed-point fraction exchanged with the circulation per
            step.
        diffuses: uint8[n_layers] whether a layer diffuses.
        thr_produce: uint64 threshold for naive-B production at a free marrow site.
    """

    ip: np.ndarray
    fp: np.ndarray
    fx: np.ndarray
    thr_move: np.ndarray
    thr_homing: np.ndarray
    thr_stay: np.ndarray
    thr_divide: np.ndarray
    thr_death: np.ndarray
    home: np.ndarray
    markers: np.ndarray
    spec_cum: np.ndarray
    lut_naive_p: np.ndarray
    lut_memory_p: np.ndarray
    decay: np.ndarray
    circulate: np.ndarray
    diffuses: np.ndarray
    thr_produce: int
    layers: Layers
    spec_names: tuple[str, ...]
    dt_hours: float

    def activation_luts(self, factor: float) -> tuple[np.ndarray, np.ndarray]:
        """Activation thresholds scaled by an immunosuppression ``factor`` in [0, 1]."""
        scale = float(1 << 53)
        naive = np.floor(np.clip(self.lut_naive_p * factor, 0, 1) * scale).astype(np.uint64)
        memory = np.floor(np.clip(self.lut_memory_p * factor, 0, 1) * scale).astype(np.uint64)
        return naive, memory


def _per_step(rate_per_day: float, dt_hours: float) -> float:
    return float(-np.expm1(-rate_per_day * dt_hours / 24.0))


def _units(amount: float) -> int:
    """User units to internal integer units (rounded)."""
    return int(round(amount * MOL_SCALE))


def build_params(s: Scenario, seed: int) -> Params:
    """Compile a scenario into :class:`Params` for a run with ``seed``."""
    dt = s.time.dt_hours
    per_day_steps = 24.0 / dt
    vacc = s.specificities.vaccines
    spec_names = specificity_names(vacc)
    layers = Layers(n_spec=len(spec_names), n_vaccines=len(vacc))

    kinds = [getattr(s.cells, name) for name in KIND_NAMES]
    thr_move = np.array([rate_threshold(k.move_rate_per_day, dt) for k in kinds], np.uint64)
    thr_homing = np.array([threshold(k.homing) for k in kinds], np.uint64)
    thr_stay = np.array([threshold(k.stay) for k in kinds], np.uint64)
    thr_divide = np.array([rate_threshold(k.division_rate_per_day, dt) for k in kinds], np.uint64)
    death = [rate_threshold(1.0 / k.lifespan_days, dt) for k in kinds]
    car = next((t for t in s.therapy if t.type == "car_t"), None)
    mem_life = car.memory_lifespan_days if car is not None else 313.0
    death.append(rate_threshold(1.0 / mem_life, dt))
    thr_death = np.array(death, np.uint64)
    home = np.array([ZONE_CODE.get(k.home, -1) for k in kinds], np.int8)

    from immunesim.model.cells import MARKERS

    sp = s.specificities
    probs = [sp.autoreactive_fraction] + [sp.vaccine_fraction] * len(vacc)
    if sum(probs) > 1.0:
        probs = [p / sum(probs) for p in probs]
    cum = np.cumsum(probs)
    spec_cum = np.array([threshold(c) for c in cum] + [1 << 53], np.uint64)

    a = s.activation
    antigen = np.arange(LUT_SIZE, dtype=np.float64) / (1 << LUT_BITS)
    sense_naive = antigen**a.hill / (antigen**a.hill + a.naive_half_saturation**a.hill)
    sense_mem = antigen**a.hill / (antigen**a.hill + a.memory_half_saturation**a.hill)
    lut_naive_p = _per_step(a.naive_rate_per_day, dt) * sense_naive
    lut_memory_p = _per_step(a.memory_rate_per_day, dt) * sense_mem

    m = s.molecules
    n_layers = layers.n_layers
    decay = np.zeros(n_layers)
    decay[: layers.n_spec] = _per_step(np.log(2) / m.antibody_half_life_days, dt)
    decay[layers.autoantigen] = _per_step(np.log(2) / m.autoantigen_half_life_days, dt)
    for v in range(len(vacc)):
        decay[layers.vaccine_antigen(v)] = _per_step(
            np.log(2) / m.vaccine_antigen_half_life_days, dt
        )
    decay[layers.immune_complex] = _per_step(np.log(2) / m.complex_half_life_days, dt)
    decay[layers.damage] = _per_step(np.log(2) / m.damage_half_life_days, dt)
    decay[layers.cytokine] = _per_step(np.log(2) / m.cytokine_half_life_days, dt)
    circulate = np.zeros(n_layers)
    circ = _per_step(m.circulation_per_day, dt)
    circulate[: layers.n_spec] = circ
    circulate[layers.autoantigen] = circ
    for v in range(len(vacc)):
        circulate[layers.vaccine_antigen(v)] = circ
    circulate[layers.cytokine] = circ
    diffuses = np.ones(n_layers, np.uint8)
    diffuses[layers.damage] = 0
    diffuses[layers.immune_complex] = 0

    ip = np.zeros(N_IP, np.int64)
    ip[IP_SEED] = seed
    ip[IP_L] = s.lattice.size
    ip[IP_N_SPEC] = layers.n_spec
    ip[IP_GC_DIVISIONS] = a.divisions
    stim_days = car.stimulation_days if car is not None else 1.0
    ip[IP_CAR_STIM_STEPS] = max(1, int(round(stim_days * per_day_steps)))
    ip[IP_LAYER_AUTOAG] = layers.autoantigen
    ip[IP_LAYER_VACC0] = layers.vaccine_antigen(0)
    ip[IP_LAYER_IC] = layers.immune_complex
    ip[IP_LAYER_DAMAGE] = layers.damage
    ip[IP_LAYER_CYTO] = layers.cytokine
    ip[IP_CYTO_PER_KILL] = _units(m.cytokine_per_kill)
    ip[IP_AG_SOURCE] = _units(m.autoantigen_source_per_day / per_day_steps)
    ip[IP_OTHER_AG] = min(LUT_SIZE - 1, int(round(a.other_antigen * (1 << LUT_BITS))))
    ip[IP_SECRETE_PB] = _units(m.plasmablast_secretion_per_day / per_day_steps)
    ip[IP_SECRETE_LLPC] = _units(m.llpc_secretion_per_day / per_day_steps)
    ip[IP_THR_GC_DIVIDE] = rate_threshold(a.division_rate_per_day, dt)
    ip[IP_THR_DIFFERENTIATE] = rate_threshold(a.differentiation_rate_per_day, dt)
    ip[IP_THR_MEMORY_FATE] = threshold(a.memory_fraction)
    ip[IP_THR_LLPC] = rate_threshold(a.llpc_rate_per_day, dt)
    if car is not None:
        ip[IP_THR_CAR_KILL] = rate_threshold(car.kill_rate_per_day, dt)
        ip[IP_THR_CAR_DIVIDE] = rate_threshold(car.division_rate_per_day, dt)
        ip[IP_THR_CAR_MEMORY] = threshold(car.memory_fraction)
        ip[IP_THR_CAR_KILL_MEMORY] = rate_threshold(
            car.kill_rate_per_day * car.memory_kill_factor, dt)
        ip[IP_CAR_MAX_GENERATIONS] = car.max_generations

    fp = np.zeros(N_FP)
    # Immune-complex formation per step: k * Ab * Ag with Ab, Ag in user units; in
    # internal units formed_int = k_step * Ab_int * Ag_int / MOL_SCALE.
    fp[FP_BINDING] = _per_step_linear(m.binding_rate, dt) / MOL_SCALE
    fx = np.zeros(N_FX, np.int64)
    fx[FX_DAMAGE_PER_IC] = fixed(_per_step_linear(m.damage_per_complex, dt))
    fx[FX_AG_PER_DAMAGE] = fixed(_per_step_linear(m.autoantigen_release_per_damage, dt))
    fx[FX_CYTO_PER_DAMAGE] = fixed(_per_step_linear(m.cytokine_per_damage, dt))
    fx[FX_DIFFUSION] = fixed(m.diffusion)

    return Params(
        ip=ip,
        fp=fp,
        fx=fx,
        thr_move=thr_move,
        thr_homing=thr_homing,
        thr_stay=thr_stay,
        thr_divide=thr_divide,
        thr_death=thr_death,
        home=home,
        markers=MARKERS.copy(),
        spec_cum=spec_cum,
        lut_naive_p=lut_naive_p,
        lut_memory_p=lut_memory_p,
        decay=np.array([fixed(f) for f in decay], np.int64),
        circulate=np.array([fixed(f) for f in circulate], np.int64),
        diffuses=diffuses,
        thr_produce=rate_threshold(s.production.naive_b_per_site_per_day, dt),
        layers=layers,
        spec_names=spec_names,
        dt_hours=dt,
    )


def fixed(fraction: float) -> int:
    """A fraction in [0, 1] as a fixed-point integer (see ``FRAC_BITS``)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"a per-step fraction must lie in [0, 1], got {fraction}")
    return int(round(fraction * (1 << FRAC_BITS)))


def _per_step_linear(rate_per_day: float, dt_hours: float) -> float:
    """A rate constant per day as a per-step amount factor (linear in dt)."""
    return rate_per_day * dt_hours / 24.0


__all__ = [
    "Params",
    "Layers",
    "build_params",
    "MOL_SCALE",
    "MOL_SHIFT",
    "ZONE_NAMES",
    "ZONE_CODE",
    "Kind",
    "marker_mask",
]

"""A scenario's values turned into the per-step numbers the kernels read
(:class:`~immunesim.model.params.Params`): rates become 53-bit thresholds per step, amounts
become internal integer units per step, fractions become fixed-point integers."""

from __future__ import annotations

import math

import numpy as np

from immunesim.model import cd4
from immunesim.model.cells import KIND_NAMES, MARKERS, specificity_names
from immunesim.model.layers import LAYERS, Layers
from immunesim.model.params import (
    FP_BINDING,
    FX_AG_PER_DAMAGE,
    FX_CYTO_PER_DAMAGE,
    FX_DAMAGE_PER_IC,
    FX_DIFFUSION,
    IP_AG_SOURCE,
    IP_AUTOAB_SHARE,
    IP_CAR_MAX_GENERATIONS,
    IP_CAR_STIM_STEPS,
    IP_CYTO_PER_KILL,
    IP_GC_DIVISIONS,
    IP_LAYER_AUTOAG,
    IP_LAYER_CYTO,
    IP_LAYER_DAMAGE,
    IP_LAYER_IC,
    IP_LAYER_VACC0,
    IP_N_SELF,
    IP_N_SPEC,
    IP_OTHER_AG,
    IP_THR_CAR_DIVIDE,
    IP_THR_CAR_KILL,
    IP_THR_CAR_KILL_MEMORY,
    IP_THR_CAR_MEMORY,
    IP_THR_DIFFERENTIATE,
    IP_THR_DISPLACE,
    IP_THR_DISPLACE_SELF,
    IP_THR_GC_DIVIDE,
    IP_THR_LLPC,
    IP_THR_MEMORY_FATE,
    IP_THR_PRODUCE,
    LUT_BITS,
    LUT_SIZE,
    MOL_SCALE,
    N_FP,
    N_FX,
    N_IP,
    ZONE_CODE,
    KernelParams,
    Params,
    Substeps,
    fixed,
)
from immunesim.rng import rate_threshold, threshold
from immunesim.scenario import SITE_UM, Scenario

#: Lifespan of memory CAR-T cells when a scenario has no CAR-T product (days).
_DEFAULT_MEMORY_LIFESPAN = 313.0


def substeps(rates_per_day, dt_hours: float) -> int:
    """Sub-steps a step needs so that no process with one of these rates has more than one
    event in expectation per sub-step (events that repeat: moves, kills)."""
    most = max((float(r) for r in rates_per_day), default=0.0) * dt_hours / 24.0
    return max(1, math.ceil(most - 1e-12))


def per_substep(rate_per_day: float, dt_hours: float, n: int) -> int:
    """Threshold of a repeating event of a rate per day in one of ``n`` sub-steps of a
    step: probability ``rate * dt / n`` (at most 1), so the mean number of events per day
    is the rate, whatever the time step."""
    return threshold(min(1.0, rate_per_day * dt_hours / 24.0 / n))


#: Largest fraction of a site's molecules sent to each neighbour in one diffusion sub-step
#: (the explicit scheme is stable up to 0.25; below 0.2 it is also smooth).
MAX_DIFFUSION_FRACTION = 0.2


def diffusion_per_substep(s: Scenario) -> tuple[float, int]:
    """``(fraction, substeps)``: the fraction each site sends to each von Neumann neighbour
    per sub-step (``D dt / h**2`` over the sub-steps), and how many sub-steps a step takes."""
    f = s.molecules.diffusion_um2_per_day * s.time.dt_hours / 24.0 / SITE_UM**2
    n = max(1, math.ceil(f / MAX_DIFFUSION_FRACTION - 1e-12))
    return f / n, n


def _per_step(rate_per_day: float, dt_hours: float) -> float:
    """A rate per day as the probability of at least one event in a step."""
    return float(-np.expm1(-rate_per_day * dt_hours / 24.0))


def _per_step_linear(rate_per_day: float, dt_hours: float) -> float:
    """A rate constant per day as a per-step amount factor (linear in dt)."""
    return rate_per_day * dt_hours / 24.0


def _units(amount: float) -> int:
    """User units to internal integer units (rounded)."""
    return int(round(amount * MOL_SCALE))


def build_params(s: Scenario) -> Params:
    """Compile a scenario into :class:`~immunesim.model.params.Params`."""
    dt = s.time.dt_hours
    per_day_steps = 24.0 / dt
    vacc = s.specificities.vaccines
    autoab = s.specificities.autoantibodies
    layers = Layers(specificity_names(vacc, autoab), 1 + len(autoab))

    kinds = [getattr(s.cells, name) for name in KIND_NAMES]
    n_move = substeps([k.move_rate_per_day for k in kinds], dt)
    thr_move = np.array([per_substep(k.move_rate_per_day, dt, n_move) for k in kinds], np.uint64)
    thr_homing = np.array([threshold(k.homing) for k in kinds], np.uint64)
    thr_stay = np.array([threshold(k.stay) for k in kinds], np.uint64)
    thr_divide = np.array([rate_threshold(k.division_rate_per_day, dt) for k in kinds], np.uint64)
    death = [rate_threshold(1.0 / k.lifespan_days, dt) for k in kinds]
    car = next((t for t in s.therapy if t.type == "car_t"), None)
    mem_life = car.memory_lifespan_days if car is not None else _DEFAULT_MEMORY_LIFESPAN
    death.append(rate_threshold(1.0 / mem_life, dt))  # the memory CAR-T class
    home = np.array([ZONE_CODE.get(k.home, -1) for k in kinds], np.int8)

    sp = s.specificities
    probs = (
        [sp.autoreactive_fraction]
        + [sp.autoantibody_fraction] * len(autoab)
        + [sp.vaccine_fraction] * len(vacc)
    )
    if sum(probs) > 1.0:
        probs = [p / sum(probs) for p in probs]
    cum = np.cumsum(probs)
    spec_cum = np.array([threshold(c) for c in cum] + [1 << 53], np.uint64)

    a = s.activation
    antigen = np.arange(LUT_SIZE, dtype=np.float64) / (1 << LUT_BITS)
    hill = np.float64(a.hill)
    with np.errstate(over="ignore"):  # a huge half-saturation: no activation (inf -> 0)
        sense_naive = antigen**hill / (antigen**hill + np.float64(a.naive_half_saturation) ** hill)
        sense_mem = antigen**hill / (antigen**hill + np.float64(a.memory_half_saturation) ** hill)
    lut_naive_p = _per_step(a.naive_rate_per_day, dt) * sense_naive
    lut_memory_p = _per_step(a.memory_rate_per_day, dt) * sense_mem

    m = s.molecules
    circ = _per_step(m.circulation_per_day, dt)
    rows = layers.rows()
    decay = [_per_step(np.log(2) / getattr(m, layer.half_life), dt) for layer, _ in rows]
    circulate = [circ if layer.circulates else 0.0 for layer, _ in rows]
    diffuses = np.array([layer.diffuses for layer, _ in rows], np.uint8)

    secrete = np.zeros(len(KIND_NAMES), np.int64)
    secrete_row = np.full(len(KIND_NAMES), -1, np.int64)
    secrete_spec = np.zeros(len(KIND_NAMES), np.uint8)
    for layer in LAYERS:
        for kind_name, key in layer.secreted_by:
            k = KIND_NAMES.index(kind_name)
            secrete[k] = _units(getattr(m, key) / per_day_steps)
            secrete_row[k] = layers.index(layers.members(layer)[0])
            secrete_spec[k] = layer.per == "specificity"

    ip = np.zeros(N_IP, np.int64)
    ip[IP_N_SPEC] = layers.n_spec
    ip[IP_N_SELF] = layers.n_self
    ip[IP_AUTOAB_SHARE] = fixed(sp.autoantigen_share)
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
    ip[IP_THR_GC_DIVIDE] = rate_threshold(a.division_rate_per_day, dt)
    ip[IP_THR_DIFFERENTIATE] = rate_threshold(a.differentiation_rate_per_day, dt)
    ip[IP_THR_MEMORY_FATE] = threshold(a.memory_fraction)
    ip[IP_THR_LLPC] = rate_threshold(a.llpc_rate_per_day, dt)
    ip[IP_THR_DISPLACE] = rate_threshold(a.niche_displacement_per_day, dt)
    ip[IP_THR_DISPLACE_SELF] = rate_threshold(
        a.niche_displacement_per_day * a.autoreactive_niche_displacement, dt
    )
    ip[IP_THR_PRODUCE] = rate_threshold(s.production.naive_b_per_site_per_day, dt)
    n_kill = substeps([car.kill_rate_per_day] if car is not None else [], dt)
    if car is not None:
        ip[IP_THR_CAR_KILL] = per_substep(car.kill_rate_per_day, dt, n_kill)
        ip[IP_THR_CAR_DIVIDE] = rate_threshold(car.division_rate_per_day, dt)
        ip[IP_THR_CAR_MEMORY] = threshold(car.memory_fraction)
        ip[IP_THR_CAR_KILL_MEMORY] = per_substep(
            car.kill_rate_per_day * car.memory_kill_factor, dt, n_kill
        )
        ip[IP_CAR_MAX_GENERATIONS] = car.max_generations

    fp = np.zeros(N_FP)
    # Immune-complex formation per step: k * Ab * Ag with Ab, Ag in user units; in
    # internal units formed_int = k_step * Ab_int * Ag_int / MOL_SCALE.
    fp[FP_BINDING] = _per_step_linear(m.binding_rate, dt) / MOL_SCALE
    fx = np.zeros(N_FX, np.int64)
    fx[FX_DAMAGE_PER_IC] = fixed(_per_step_linear(m.damage_per_complex, dt))
    fx[FX_AG_PER_DAMAGE] = fixed(_per_step_linear(m.autoantigen_release_per_damage, dt))
    fx[FX_CYTO_PER_DAMAGE] = fixed(_per_step_linear(m.cytokine_per_damage, dt))
    diffusion, n_diffuse = diffusion_per_substep(s)
    fx[FX_DIFFUSION] = fixed(diffusion)

    p = Params(
        k=None,  # type: ignore[arg-type]  # set below, with the tables unscaled
        lut_naive_p=lut_naive_p,
        lut_memory_p=lut_memory_p,
        layers=layers,
        dt_hours=dt,
        diffusion=int(fx[FX_DIFFUSION]),
        substeps=Substeps(move=n_move, kill=n_kill, diffuse=n_diffuse),
        displaces=bool(ip[IP_THR_DISPLACE] or ip[IP_THR_DISPLACE_SELF]),
    )
    naive, memory = p.activation_luts(1.0)
    p.k = KernelParams(
        ip=ip,
        fp=fp,
        fx=fx,
        thr_move=thr_move,
        thr_homing=thr_homing,
        thr_stay=thr_stay,
        thr_divide=thr_divide,
        thr_death=np.array(death, np.uint64),
        home=home,
        markers=MARKERS.copy(),
        secrete=secrete,
        secrete_row=secrete_row,
        secrete_spec=secrete_spec,
        spec_cum=spec_cum,
        decay=np.array([fixed(f) for f in decay], np.int64),
        circulate=np.array([fixed(f) for f in circulate], np.int64),
        diffuses=diffuses,
        lut_naive=naive,
        lut_memory=memory,
    )
    return p


def t_helper_threshold(s: Scenario, n_lymphoid_sites: int, count: int, day: float) -> int:
    """Per-step T-helper production threshold of a free lymphoid site when ``count`` T
    helpers live on ``day``: homeostasis drives production toward the target density, scaled
    by the CD4 pool's :func:`~immunesim.model.cd4.help_factor` (after lymphodepletion the
    follicles' helpers come back as the body's CD4 T cells do)."""
    pr = s.production
    target = pr.t_helper_target_density * n_lymphoid_sites * cd4.help_factor(s, day)
    if target <= 0:
        return 0
    drive = max(0.0, 1.0 - count / target)
    return rate_threshold(pr.t_helper_per_site_per_day * drive, s.time.dt_hours)


__all__ = ["build_params", "diffusion_per_substep", "per_substep", "substeps", "t_helper_threshold"]

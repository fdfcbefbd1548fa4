"""Metrics (one row per sampling step) and the clinical endpoints of a run.

Time-series columns (counts are agents on the lattice unless the name says otherwise):

- ``step``, ``day``;
- one column per cell kind (``naive_b`` ... ``car_t``), ``car_t_memory``;
- ``<kind>_self``: anti-dsDNA (class ``self``) cells of the B lineage;
- ``b_cells``: CD19+ B-lineage cells (naive, activated, memory B and plasmablasts);
  ``lymph_node_b_cells``: those in the lymphoid zone;
- blood, cells per microlitre (:mod:`immunesim.model.blood`: the cells crossing it, in
  quasi-steady state with the lattice, through the scenario's ``[scale]``):
  ``b_cells_per_ul`` (CD19+), ``naive_b_per_ul``, ``plasmablasts_per_ul`` and
  ``car_t_per_ul``; ``cd4_per_ul`` is the body's CD4 T-cell pool
  (:mod:`immunesim.model.cd4`), whose share in the follicles is the ``t_helper`` agents;
- ``naive_fraction``: naive B among CD20+ B cells;
- one column per molecular layer whose ``metric`` says so (:data:`~immunesim.model.layers.
  LAYERS`), in user units: ``antibody_<spec>``, ``autoantigen``, ``immune_complex``,
  ``cytokine`` (mean per site), then ``damage`` (mean per tissue site); ``anti_dsdna`` is
  ``antibody_self`` and ``anti_<name>`` is ``antibody_<name>`` for each further
  autoantibody; ``antibody_other`` counts each ``other`` agent's antibody
  ``specificities.other_antibody_weight`` times (those agents sample the repertoire the
  model does not follow); ``total_igg`` sums the antibody of every class;
- ``kills``: CAR-T kills since the previous row;
- ``disease_score``: SLEDAI-like score (see :func:`disease_score`), added after the run.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from immunesim.model import blood, cd4
from immunesim.model.cells import (
    CAR_T_MEMORY_CLASS,
    KIND_NAMES,
    N_KINDS,
    Kind,
    kinds_bearing,
    kinds_of_lineage,
)
from immunesim.model.layers import LAYERS
from immunesim.model.params import MOL_SCALE, ZONE_CODE

if TYPE_CHECKING:  # pragma: no cover
    from immunesim.engine import Simulation
    from immunesim.scenario import Scenario


#: Second names of layer columns: ``anti_dsdna`` is the antibody of the class ``self``; a
#: further autoantibody ``<name>`` is also ``anti_<name>`` (:func:`metric_aliases`).
METRIC_ALIASES = {"antibody_self": "anti_dsdna"}


def metric_aliases(autoantibodies: tuple[str, ...] | list[str] = ()) -> dict[str, str]:
    """Second names of layer columns for a scenario's further autoantibodies."""
    return METRIC_ALIASES | {f"antibody_{a}": f"anti_{a}" for a in autoantibodies}


def metrics_row(sim: Simulation) -> dict[str, Any]:
    """Metrics of a simulation's current state (the fast engine's or the Mesa reference's:
    both give ``count_cells()``, ``layer_totals()`` and ``layer_total(row, zone)``)."""
    p, s = sim.params, sim.scenario
    counts = sim.count_cells()  # [class, spec, zone]
    by_class = counts.sum(axis=(1, 2))
    row: dict[str, Any] = {"step": sim.step_index, "day": round(sim.day, 6)}
    for k, name in enumerate(KIND_NAMES):
        row[name] = int(by_class[k])
    row["car_t"] = int(by_class[Kind.CAR_T] + by_class[CAR_T_MEMORY_CLASS])
    row["car_t_memory"] = int(by_class[CAR_T_MEMORY_CLASS])
    for k in kinds_of_lineage("B"):
        row[f"{KIND_NAMES[k]}_self"] = int(counts[k, 0].sum())
    cd19 = kinds_bearing("CD19")
    b = int(sum(by_class[k] for k in cd19))
    row["b_cells"] = b
    row["lymph_node_b_cells"] = int(sum(counts[k, :, ZONE_CODE["lymphoid"]].sum() for k in cd19))
    by_kind_zone = counts[:N_KINDS].sum(axis=1).astype(np.float64)
    by_kind_zone[Kind.CAR_T] += counts[CAR_T_MEMORY_CLASS].sum(axis=0)
    car_ul = blood.car_t_in_blood(s, sim.day, row["car_t"], sim.count_car_t)
    kappa = blood.kill_rates(s, sim.day, car_ul)
    in_blood = blood.blood_cells(by_kind_zone, s, kappa) * blood.per_ul(s)
    row["b_cells_per_ul"] = float(sum(in_blood[k] for k in cd19))
    row["naive_b_per_ul"] = float(in_blood[Kind.NAIVE_B])
    row["plasmablasts_per_ul"] = float(in_blood[Kind.PLASMABLAST])
    row["cd4_per_ul"] = cd4.pool_per_ul(s, sim.day)
    row["car_t_per_ul"] = float(in_blood[Kind.CAR_T])
    L = s.lattice.size
    cd20 = sum(by_class[k] for k in kinds_bearing("CD20"))
    row["naive_fraction"] = float(by_class[Kind.NAIVE_B] / cd20) if cd20 else math.nan
    n_sites = L * L
    totals = sim.layer_totals()
    layers = p.layers
    tissue_layers: list[str] = []
    aliases = metric_aliases(layers.autoantibodies)
    for layer in LAYERS:
        members = layers.members(layer)
        if layer.metric == "tissue":
            tissue_layers.extend(members)
        elif layer.metric == "site":
            for name in members:
                row[name] = totals[layers.index(name)] / MOL_SCALE / n_sites
            if layer.name == "antibody":  # every specificity: the IgG a clinic measures
                row["antibody_other"] *= s.specificities.other_antibody_weight
                row["total_igg"] = sum(row[name] for name in members)
            for name in members:
                if name in aliases:
                    row[aliases[name]] = row[name]
    n_tissue = max(1, sim.geometry.count("tissue"))
    for name in tissue_layers:
        total = sim.layer_total(layers.index(name), "tissue")
        row[name] = float(total) / MOL_SCALE / n_tissue
    row["kills"] = int(sim.kills_since_sample)
    return row


# --------------------------------------------------------------------------- disease score


def disease_score(df: pd.DataFrame, s: Scenario) -> pd.Series:
    """SLEDAI-like disease activity: organ involvement ``12 * D / (D + D_half)`` from tissue
    damage ``D`` (``D_half`` is ``endpoints.score_damage_half``), plus 2 points for raised
    anti-dsDNA and 2 for immune complexes
    (complement consumption) above the seronegativity fraction of their baseline."""
    base = baseline(df, s)
    half = s.endpoints.score_damage_half
    organ = 12.0 * df["damage"] / (df["damage"] + half)
    frac = s.endpoints.seronegative_fraction
    dsdna = 2.0 * (df["anti_dsdna"] > frac * base.get("anti_dsdna", math.inf))
    ic = 2.0 * (df["immune_complex"] > frac * base.get("immune_complex", math.inf))
    return organ + dsdna + ic


def baseline(df: pd.DataFrame, s: Scenario) -> dict[str, float]:
    """Values at the baseline day (the last row at or before ``endpoints.baseline_day``)."""
    hit = np.flatnonzero(df["day"].to_numpy() <= s.endpoints.baseline_day + 1e-9)
    return df.iloc[hit[-1]].to_dict() if hit.size else {}


def with_score(df: pd.DataFrame, s: Scenario) -> pd.DataFrame:
    """The time series with ``disease_score`` added."""
    out = df.copy()
    out["disease_score"] = disease_score(df, s) if len(df) else []
    return out


# --------------------------------------------------------------------------- endpoints


def _first_day(days: pd.Series, cond: pd.Series) -> float | None:
    """The first of ``days`` where ``cond`` holds (both of the same rows), or None."""
    hit = np.flatnonzero(cond.to_numpy(dtype=bool))
    return float(days.iloc[hit[0]]) if hit.size else None


def _first_lasting(days: pd.Series, cond: pd.Series, min_days: float) -> float | None:
    """The first day of the first stretch of rows where ``cond`` holds that lasts at least
    ``min_days`` (from its first row to the first row after it where ``cond`` fails; a
    stretch that runs to the last row lasts to that row), or None. With ``min_days`` 0,
    the first day ``cond`` holds."""
    d = days.to_numpy(dtype=float)
    c = cond.to_numpy(dtype=bool)
    if min_days <= 0:
        return _first_day(days, cond)
    i = 0
    while i < c.size:
        if not c[i]:
            i += 1
            continue
        j = i
        while j < c.size and c[j]:
            j += 1
        end = d[j] if j < c.size else d[-1]
        if end - d[i] >= min_days - 1e-9:
            return float(d[i])
        i = j
    return None


#: Days after a vaccination over which its fold rise is measured (the peak of a primary
#: or booster IgG response falls within 2-6 weeks).
VACCINE_RESPONSE_DAYS = 56.0


def _value_at(df: pd.DataFrame, col: str, day: float) -> float | None:
    """``col`` in the first row at or after ``day``, or None."""
    hit = np.flatnonzero(df["day"].to_numpy() >= day - 1e-9)
    return float(df[col].iloc[hit[0]]) if hit.size else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return float(a / b)


#: Days after a later CAR-T infusion over which its expansion is measured (a first
#: infusion peaks in its second week).
CAR_T_EXPANSION_DAYS = 28.0


def _later_expansion(df: pd.DataFrame, s: Scenario, t: Any) -> float | None:
    """Peak CAR-T count within :data:`CAR_T_EXPANSION_DAYS` after a later infusion over the
    count just after it (the cells present the day before plus the infused agents); ``None``
    where the run ends too soon to tell."""
    day = float(t.day)
    end = day + CAR_T_EXPANSION_DAYS
    before = df.loc[df["day"] < day - 1e-9, "car_t"]
    if not len(before) or float(df["day"].iloc[-1]) < end - 1e-9:
        return None
    start = float(before.iloc[-1]) + round(s.car_t_agents(t))
    window = df.loc[(df["day"] >= day - 1e-9) & (df["day"] <= end + 1e-9), "car_t"]
    return _ratio(float(window.max()), start)


def endpoints(df: pd.DataFrame, s: Scenario, infused_car_t: int = 0) -> dict[str, Any]:
    """Clinical endpoints of a run (DESIGN section 6) from its scored time series.

    Days are relative to day 0 (infusion); ``None`` where an endpoint was not reached (or the
    run did not last long enough to tell).
    """
    e = s.endpoints
    base = baseline(df, s)
    after = df[df["day"] >= 0]
    out: dict[str, Any] = {"baseline_day": e.baseline_day, "last_day": float(df["day"].iloc[-1])}
    if not base:
        out["note"] = "the run ended before the baseline day"
        return out
    # B-cell depletion and return as a clinic sees them: CD19+ cells in blood
    b0 = base["b_cells_per_ul"]
    out["baseline_b_cells_per_ul"] = b0
    blood_b = after["b_cells_per_ul"]
    dep = _first_day(after["day"], blood_b < e.depletion_fraction * b0)
    out["b_cell_depletion_day"] = dep
    recon = None
    if dep is not None:
        later = after[after["day"] > dep]
        recon = _first_day(later["day"], later["b_cells_per_ul"] >= e.reconstitution_fraction * b0)
    out["b_cell_reconstitution_day"] = recon
    # the lowest B-cell counts in blood and in the lymph nodes (a biopsy), relative to baseline
    out["blood_b_cells_lowest_relative"] = _ratio(float(blood_b.min()), b0) if len(after) else None
    ln = after["lymph_node_b_cells"] if "lymph_node_b_cells" in after else None
    out["lymph_node_b_cells_lowest_relative"] = (
        _ratio(float(ln.min()), base.get("lymph_node_b_cells"))
        if ln is not None and len(ln)
        else None
    )
    # CD4 T cells in blood after the baseline day (a conditioning course comes before day
    # 0): the lowest count, and the first day back at the recovery threshold after it
    treated = df[df["day"] > e.baseline_day + 1e-9]
    if "cd4_per_ul" in treated and len(treated):
        t_cells = treated["cd4_per_ul"]
        low = int(np.argmin(t_cells.to_numpy()))
        out["cd4_lowest_per_ul"] = float(t_cells.iloc[low])
        out["cd4_recovery_day"] = (
            _first_day(treated["day"].iloc[low:], t_cells.iloc[low:] >= e.cd4_recovered_per_ul)
            if t_cells.iloc[low] < e.cd4_recovered_per_ul
            else None
        )
    if recon is not None:
        nf = _value_at(df, "naive_fraction", recon)
        out["returning_b_naive_fraction"] = nf
        out["returning_b_phenotype"] = "naive" if nf is not None and nf >= 0.5 else "memory"
    else:
        out["returning_b_naive_fraction"] = None
        out["returning_b_phenotype"] = None

    cars = sorted((t for t in s.therapy if t.type == "car_t"), key=lambda t: t.day)
    # the first infusion's expansion: before any later infusion
    first = after[after["day"] < cars[1].day - 1e-9] if len(cars) > 1 else after
    if infused_car_t > 0 and len(first):
        peak_idx = first["car_t"].idxmax()
        out["car_t_infused_agents"] = int(infused_car_t)
        out["car_t_peak_day"] = float(first.loc[peak_idx, "day"])
        first_agents = round(s.car_t_agents(cars[0])) if len(cars) > 1 else infused_car_t
        out["car_t_fold_expansion"] = float(first.loc[peak_idx, "car_t"] / first_agents)
        seen = after[after["car_t_per_ul"] >= e.car_t_detection_per_ul]  # blood, detection limit
        out["car_t_last_detected_day"] = float(seen["day"].iloc[-1]) if len(seen) else None
        lod = e.car_t_detection_per_ul
        out["car_t_detected_at_end"] = bool(after["car_t_per_ul"].iloc[-1] >= lod)
        out["car_t_persisting_at_end"] = bool(after["car_t"].iloc[-1] > 0)
    # each later infusion (re-treatment, another product): whether its cells expanded
    for later in cars[1:]:
        out[f"car_t_day{later.day:g}_fold_expansion"] = _later_expansion(df, s, later)

    ads0 = base["anti_dsdna"]
    out["anti_dsdna_day90_relative"] = _ratio(_value_at(df, "anti_dsdna", 90.0), ads0)
    rel = out["anti_dsdna_day90_relative"]
    out["anti_dsdna_seronegative_day90"] = (
        None if rel is None else bool(rel < e.seronegative_fraction)
    )
    out["anti_dsdna_seroconversion_day"] = _first_day(
        after["day"], after["anti_dsdna"] < e.seronegative_fraction * ads0
    )

    # every autoantibody at months 3 and 12: relative to baseline and seronegative or not
    negative = []
    for name in ("dsdna", *s.specificities.autoantibodies):
        col, a0 = f"anti_{name}", base.get(f"anti_{name}")
        for label, day in (("month3", 90.0), ("month12", 365.0)):
            r = _ratio(_value_at(df, col, day), a0)
            out[f"anti_{name}_{label}_relative"] = r
            flag = None if r is None else bool(r < e.seronegative_fraction)
            out[f"anti_{name}_seronegative_{label}"] = flag
        negative.append(flag)
    known_neg = [f for f in negative if f is not None]
    out["autoantibodies_seronegative_month12_fraction"] = (
        float(np.mean(known_neg)) if known_neg else None
    )

    vaccines = s.specificities.vaccines
    for label, day in (("month3", 90.0), ("month12", 365.0)):
        rels = [
            _ratio(_value_at(df, f"antibody_{v}", day), base[f"antibody_{v}"]) for v in vaccines
        ]
        for v, r in zip(vaccines, rels, strict=True):
            out[f"vaccine_{v}_{label}_relative"] = r
        known = [r for r in rels if r is not None]
        out[f"protective_titre_{label}_relative"] = float(np.mean(known)) if known else None
    # each vaccination: the fold rise of its antigen's titre over the following 8 weeks
    for t in s.therapy:
        if t.type == "vaccination" and f"antibody_{t.antigen}" in df:
            col, day = f"antibody_{t.antigen}", float(t.day)
            end = day + VACCINE_RESPONSE_DAYS
            window = df.loc[(df["day"] > day) & (df["day"] <= end + 1e-9), col]
            seen = out["last_day"] >= end - 1e-9  # None where the run ended too soon to tell
            rise = _ratio(float(window.max()), _value_at(df, col, day)) if seen else None
            out[f"vaccine_{t.antigen}_day{t.day:g}_fold_rise"] = rise

    for label, day in (("month3", 90.0), ("month12", 365.0)):
        # total IgG (every class): hypogammaglobulinaemia after depletion
        if "total_igg" in df:
            out[f"total_igg_{label}_relative"] = _ratio(
                _value_at(df, "total_igg", day), base.get("total_igg")
            )

    if "disease_score" in df:
        score = after["disease_score"]
        out["baseline_disease_score"] = float(base["disease_score"])
        rem = _first_day(after["day"], score <= e.remission_score)
        out["remission_day"] = rem
        relapse = None
        if rem is not None:
            later = after[after["day"] > rem]
            relapse = _first_lasting(
                later["day"], later["disease_score"] > e.remission_score, e.relapse_min_days
            )
        out["relapse_day"] = relapse
        out["remission_durable"] = rem is not None and relapse is None
        out["remission_duration_days"] = (
            None if rem is None else (relapse if relapse is not None else out["last_day"]) - rem
        )
        out["final_disease_score"] = float(score.iloc[-1]) if len(score) else None
        # clinical response (SRI-4 style) and its loss: a flare back to within the response
        # margin of the baseline score
        responding = score <= out["baseline_disease_score"] - e.response_points
        resp = _first_day(after["day"], responding)
        out["response_day"] = resp
        lost = None
        if resp is not None:
            later = after["day"] > resp
            lost = _first_lasting(after["day"][later], ~responding[later], e.relapse_min_days)
        out["response_lost_day"] = lost

    # CRS proxy: over days 0-28, the CAR-T burst in blood and the cytokine its kills raise
    cyto0 = base["cytokine"]
    window = after[after["day"] <= 28.0]
    peak = float(window["cytokine"].max()) if len(window) else None
    out["crs_proxy_peak_cytokine_relative"] = _ratio(peak, cyto0) if cyto0 else None
    rise = None if peak is None else max(0.0, peak - cyto0)
    out["crs_proxy_cytokine_rise"] = rise
    car_peak = float(window["car_t_per_ul"].max()) if len(window) else None
    out["crs_proxy_car_t_peak_per_ul"] = car_peak
    value, cuts = (
        (car_peak, e.crs_grade_car_t_per_ul)
        if e.crs_grade_by == "car_t"
        else (rise, e.crs_grade_cytokine)
    )
    out["crs_proxy_grade"] = None if value is None else int(sum(value >= g for g in cuts))
    return out

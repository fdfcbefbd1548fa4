"""The initial state of a run: cells at their initial densities, autoantigen and damage in
tissue (DESIGN section 2). Everything is drawn from the seed's site keys, so the initial
lattice does not depend on the backend."""

from __future__ import annotations

import numpy as np

from immunesim.engine.geometry import Geometry
from immunesim.model.cells import KINDS, N_KINDS, Kind
from immunesim.model.params import MOL_MAX, MOL_SCALE, Params
from immunesim.rng import ONE53, S_INIT, S_INIT_SPEC, site_keys, threshold
from immunesim.scenario import Scenario
from immunesim.state import BORN, State, allocate, slots_for


def initial_state(s: Scenario, p: Params, g: Geometry, seed: int) -> State:
    """A new state (numpy arrays) holding the scenario's initial cells and molecules."""
    n_sites = g.n_sites
    keys = np.empty(n_sites, np.uint64)
    site_keys(seed, 0, S_INIT, n_sites, keys)
    r = keys >> np.uint64(11)
    spec_keys = np.empty(n_sites, np.uint64)
    site_keys(seed, 0, S_INIT_SPEC, n_sites, spec_keys)
    rs = (spec_keys >> np.uint64(11)).astype(np.float64) / ONE53
    ini = s.initial
    n_spec = p.layers.n_spec
    n_vacc = p.layers.n_vaccines
    lymph = g.mask("lymphoid")
    c1 = threshold(ini.t_helper)
    c2 = threshold(min(1.0, ini.t_helper + ini.naive_b))
    c3 = threshold(min(1.0, ini.t_helper + ini.naive_b + ini.memory_b))
    kind = np.full(n_sites, -1, np.int8)
    kind[lymph & (r < c1)] = Kind.T_HELPER
    kind[lymph & (r >= c1) & (r < c2)] = Kind.NAIVE_B
    kind[lymph & (r >= c2) & (r < c3)] = Kind.MEMORY_B
    kind[(g.niche.reshape(-1) != 0) & (r < threshold(ini.llpc))] = Kind.LLPC
    # the kinds an extension seeds: on the sites of their zone still free, each taking the
    # next slice of the site's draw
    start = c3
    for code, k in enumerate(KINDS):
        if k.initial is not None:
            end = threshold(min(1.0, start / ONE53 + getattr(ini, k.name)))
            kind[g.mask(k.initial[0]) & (kind < 0) & (r >= start) & (r < end)] = code
            start = end

    spec = np.full(n_sites, n_spec - 1, np.int8)  # 'other'
    # naive B: the marrow output distribution
    cum = p.k.spec_cum.astype(np.float64) / ONE53
    naive_spec = np.searchsorted(cum, rs, side="right").clip(0, n_spec - 1)
    spec = np.where(kind == Kind.NAIVE_B, naive_spec, spec)

    n_auto = p.layers.n_self - 1

    def _mixed(self_frac: float, auto_frac: float, vacc_frac: float) -> np.ndarray:
        """Classes in the proportions ``self``, each further autoantibody, the vaccines
        (split evenly), ``other`` (the rest)."""
        edges = np.cumsum([self_frac] + [auto_frac] * n_auto + [vacc_frac / n_vacc] * n_vacc)
        return np.searchsorted(edges, rs, side="right").clip(0, n_spec - 1)

    spec = np.where(
        kind == Kind.MEMORY_B,
        _mixed(
            ini.memory_self_fraction,
            ini.memory_autoantibody_fraction,
            2 * s.specificities.vaccine_fraction * n_vacc,
        ),
        spec,
    )
    spec = np.where(
        kind == Kind.LLPC,
        _mixed(ini.llpc_self_fraction, ini.llpc_autoantibody_fraction, ini.llpc_vaccine_fraction),
        spec,
    )

    sites = np.flatnonzero(kind >= 0)
    n = sites.size
    st = allocate(g.L, p.layers.n_layers, g.zone, g.niche, g.toward, slots_for(n, g.L))
    c = st.cells
    c.uid[:n] = np.arange(n)
    c.kind[:n] = kind[sites]
    c.spec[:n] = spec[sites]
    c.x[:n] = sites % g.L
    c.y[:n] = sites // g.L
    c.alive[:n] = 1
    st.occ[sites] = np.arange(n, dtype=np.int32)
    st.n = n
    st.next_uid = n
    for code in range(N_KINDS):
        st.ledger[code, BORN] += int(np.count_nonzero(c.kind[:n] == code))
    tissue = g.mask("tissue")
    for row, amount in ((p.layers.autoantigen, ini.autoantigen), (p.layers.damage, ini.damage)):
        q = int(round(amount * MOL_SCALE))
        if q > MOL_MAX:
            st.sites.saturated[row] = 1
        st.mol[row, tissue] = min(q, MOL_MAX)
    return st


__all__ = ["initial_state"]

"""Molecular layers: diffusion, decay, circulation and the disease reactions.

All quantities are int64 in internal units. An amount that is a fraction of a quantity is
``(q * f) >> FRAC_BITS`` with ``f`` a fixed-point fraction: integer arithmetic, the same bits
on every backend. The one mass-action product (immune-complex formation) is a float product
truncated at once (never fused into an add). Diffusion moves whole units between sites and
conserves mass exactly.
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb
import numpy as np

from immunesim.kernels.common import capped
from immunesim.model.params import (
    FP_BINDING,
    FRAC_BITS,
    FX_AG_PER_DAMAGE,
    FX_CYTO_PER_DAMAGE,
    FX_DAMAGE_PER_IC,
    IP_AG_SOURCE,
    IP_LAYER_AUTOAG,
    IP_LAYER_CYTO,
    IP_LAYER_DAMAGE,
    IP_LAYER_IC,
    MOL_MAX,
)

TISSUE = 2

#: Diffusion, decay and exchange with the circulation of every layer: ``diffusion`` is the
#: fixed-point fraction a site sends to each neighbour in a diffusion sub-step, ``dst``
#: int32[n_layers, L*L] the layers after it; ``last`` is 1 on a step's last diffusion
#: sub-step, which also decays the layers and gives to the circulation (0 on the others);
#: ``share`` and ``rest`` int64[n_layers] what each site gets back from the circulation pool
#: (``share``, plus one unit at the ``rest`` lowest sites).
Transport = namedtuple("Transport", "L diffusion dst share rest last")


_FRAC_BITS = np.int64(FRAC_BITS)
_MOL_MAX = np.int64(MOL_MAX)
_U_FRAC_BITS = np.uint64(FRAC_BITS)


@nb.njit(inline="always", cache=True)
def portion(q, f):
    """``floor(q * f / 2**FRAC_BITS)`` for a quantity ``q >= 0`` and fixed-point fraction
    ``f``."""
    return (q * f) >> _FRAC_BITS


@nb.njit(inline="always", cache=True)
def portion_u32(q, f):
    """:func:`portion` of a quantity ``0 <= q < 2**32`` (every stored layer value, an int32
    that is never negative, and a site's value after diffusion: :func:`site_after`) and a
    fraction ``0 <= f < 2**32``: the same value, computed as
    the product of two unsigned 32-bit integers, which x86 multiplies in vectors (one
    ``vpmuludq`` for four products, where a 64-bit product takes three and its signed shift
    more) and a GPU in one wide multiply. Used where the bound is known: the CPU's
    diffusion took 1.5 times as long with :func:`portion` (``benchmarks/README.md``)."""
    return nb.int64((nb.uint64(nb.uint32(q)) * nb.uint64(nb.uint32(f))) >> _U_FRAC_BITS)


@nb.njit(inline="always", cache=True)
def _product_i32(a, b):
    """``a * b`` for two values that int32s hold, as the product of two sign-extended
    32-bit integers (one ``vpmuldq`` for four products on x86; see :func:`portion_u32`)."""
    return nb.int64(nb.int32(a)) * nb.int64(nb.int32(b))


@nb.njit(inline="always", cache=True)
def diffuse_decay(q, q_w, q_e, q_n, q_s, n_neighbours, d, decay):
    """New value of a site holding ``q`` after diffusion then decay.

    Each site sends ``portion(q, d)`` to each of its ``n_neighbours`` von Neumann neighbours
    (2 to 4: nothing leaves the lattice) and receives theirs (``q_w .. q_s`` are the
    neighbours' values, 0 where there is none); then it loses ``portion(q, decay)``.
    """
    q = (
        q
        - n_neighbours * portion(q, d)
        + portion(q_w, d)
        + portion(q_e, d)
        + portion(q_n, d)
        + portion(q_s, d)
    )
    return q - portion(q, decay)


@nb.njit(inline="always", cache=True)
def site_after(q, sent, n_neighbours, received, decay):
    """:func:`diffuse_decay` from portions: the new value of a site holding ``q`` that sends
    ``sent`` (its ``portion(q, d)``) to each of its ``n_neighbours`` neighbours and receives
    ``received`` from them in all, then loses ``portion(q, decay)`` (not capped).

    Before decay the site holds at most ``MOL_MAX + 4``: with every value at most
    ``MOL_MAX`` and ``n * d <= 1`` (the sub-steps keep ``d <= 0.2``), it keeps
    ``q - n * portion(q, d) <= (1 - n d) q + n`` and receives at most ``n d MOL_MAX``
    (portions round down). So the decay's product is that of two unsigned 32-bit
    integers (:func:`portion_u32`)."""
    q = q - n_neighbours * sent + received
    return q - portion_u32(q, decay)


@nb.njit(inline="always", cache=True)
def circulate_site(q, frac, share, extra):
    """Exchange with the circulation: a site gives ``portion(q, frac)`` to the pool and
    receives an equal share of the pool (``share``, plus ``extra`` of the remainder)."""
    return q - portion(q, frac) + share + extra


# Inlined into each caller, so compiled with the caller's options: compiled on its own, the
# copy in numba's cache is the one the first caller made, and one made for the reference's
# loop (which counts array references) slowed the engine's exchange pass 2.5-fold (22 ms
# instead of 9 at 1000^2, two threads).
@nb.njit(inline="always", cache=True)
def react_site(s, mol, sat, zone, ip, fx, fp):
    """Disease reactions at site ``s`` (in place): autoantibody + autoantigen form immune
    complexes; in tissue, complexes cause damage, and damage (plus a baseline source)
    releases autoantigen and cytokine."""
    ab_l = 0  # antibody of specificity 'self' (anti-dsDNA)
    ag_l = ip[IP_LAYER_AUTOAG]
    ic_l = ip[IP_LAYER_IC]
    ab = mol[ab_l, s]
    ag = mol[ag_l, s]
    limit = ab if ab < ag else ag
    product = nb.float64(ab) * nb.float64(ag) * fp[FP_BINDING]
    formed = limit if product >= nb.float64(limit) else nb.int64(product)
    ab -= formed
    ag -= formed
    ic = capped(nb.int64(mol[ic_l, s]) + formed, sat, ic_l)  # int64 in the CUDA simulator too
    mol[ab_l, s] = ab
    mol[ic_l, s] = ic
    if zone[s] == TISSUE:
        dmg_l = ip[IP_LAYER_DAMAGE]
        dmg = capped(mol[dmg_l, s] + portion(ic, fx[FX_DAMAGE_PER_IC]), sat, dmg_l)
        mol[dmg_l, s] = dmg
        ag += ip[IP_AG_SOURCE] + portion(dmg, fx[FX_AG_PER_DAMAGE])
        cy_l = ip[IP_LAYER_CYTO]
        mol[cy_l, s] = capped(mol[cy_l, s] + portion(dmg, fx[FX_CYTO_PER_DAMAGE]), sat, cy_l)
    mol[ag_l, s] = capped(ag, sat, ag_l)


# --------------------------------------------------------------------------- phase bodies
# Site bodies: ``(layer, site, x, y)`` name the item (see :mod:`immunesim.kernels.common`).


@nb.njit(inline="always", cache=True)
def diffuse(layer, site, x, y, t, c, s, p):
    """Diffusion of ``layer`` at ``site`` into ``t.dst``, then, on the step's last diffusion
    sub-step, decay; tallies what the site then gives to the circulation in bin ``layer``."""
    L = t.L
    src = s.mol
    q_w = src[layer, site - 1] if x > 0 else 0
    q_e = src[layer, site + 1] if x < L - 1 else 0
    q_n = src[layer, site - L] if y > 0 else 0
    q_s = src[layer, site + L] if y < L - 1 else 0
    n_nb = (
        (1 if x > 0 else 0)
        + (1 if x < L - 1 else 0)
        + (1 if y > 0 else 0)
        + (1 if y < L - 1 else 0)
    )
    d = t.diffusion if p.diffuses[layer] != 0 else 0
    if t.last == 0:
        q = diffuse_decay(src[layer, site], q_w, q_e, q_n, q_s, n_nb, d, 0)
        t.dst[layer, site] = capped(q, s.saturated, layer)
        return layer, 0
    q = capped(
        diffuse_decay(src[layer, site], q_w, q_e, q_n, q_s, n_nb, d, p.decay[layer]),
        s.saturated,
        layer,
    )
    t.dst[layer, site] = q
    return layer, portion(q, p.circulate[layer])


#: Rows of one layer that :func:`diffuse_rows` takes at a time (a CPU task).
DIFFUSE_ROWS = 16


#: int32 rows of the CPU's and the GPU's diffusion buffers per block of rows of a layer (the
#: rows around the block; the GPU also three rows of the block in turn).
CPU_BUFFER_ROWS, GPU_BUFFER_ROWS = 2, 5


def diffusion_buffer_shape(n_layers: int, L: int, block_rows: int, rows: int) -> tuple:
    """``(tasks, rows, L)``: the int32 buffer that diffuses ``n_layers`` layers of ``L x L``
    sites in place, ``rows`` rows of ``L`` for each block of ``block_rows`` rows of a layer
    (a task)."""
    return (n_layers * -(-L // block_rows), rows, L)


def gpu_diffuse_rows(simulated: bool) -> int:
    """Rows of one layer that a block of GPU threads diffuses in place: 64, and 8 in numba's
    CUDA simulator, so that tests on small lattices cross blocks of rows."""
    return 8 if simulated else 64


@nb.njit(inline="always", cache=True)
def _row_portions(src, base, L, d, out):
    for x in range(L):
        out[x] = portion_u32(src[base + x], d)


@nb.njit(cache=True, nogil=True)
def rows_halo(layer, y0, y1, t, s, p, halo):  # pragma: no cover - compiled
    """What the rows just above and just below rows ``y0 .. y1 - 1`` of ``layer`` send to
    each neighbour (``portion(q, d)``; 0 beyond the lattice) into ``halo[0]`` and
    ``halo[1]``: read before any block of rows is written, so that :func:`diffuse_rows` can
    write its rows in place. Returns 0."""
    L = t.L
    src = s.mol[layer]
    d = t.diffusion if p.diffuses[layer] != 0 else 0
    if y0 > 0:
        _row_portions(src, (y0 - 1) * L, L, d, halo[0])
    else:
        halo[0, :] = 0
    if y1 < L:
        _row_portions(src, y1 * L, L, d, halo[1])
    else:
        halo[1, :] = 0
    return 0


@nb.njit(cache=True, nogil=True)
def diffuse_rows(layer, y0, y1, t, s, p, halo):  # pragma: no cover - compiled
    """:func:`diffuse` of rows ``y0 .. y1 - 1`` of ``layer`` into ``t.dst``, which may be
    ``s.mol`` itself: what each site sends to a neighbour (``portion(q, d)``) is computed
    once per site instead of once per neighbour, from a row before that row is written
    (three rows of it kept), and the rows' neighbours above and below come from ``halo``
    (:func:`rows_halo`, made before any block was written). The same integer sums, so the
    same bits, in one copy of the layers. Returns what the rows give to the circulation on
    the step's last sub-step (0 on the others)."""
    L = t.L
    src = s.mol[layer]
    dst = t.dst[layer]
    d = t.diffusion if p.diffuses[layer] != 0 else 0
    decay = p.decay[layer] if t.last != 0 else 0
    circulate = p.circulate[layer] if t.last != 0 else 0
    above = halo[0].astype(np.int64)  # what the row above sends (0 above the lattice)
    here = np.empty(L, np.int64)
    below = np.empty(L, np.int64)
    row = np.empty(L, np.int64)  # the row's own values, read before it is written
    _row_portions(src, y0 * L, L, d, here)
    gift = 0
    for y in range(y0, y1):
        if y + 1 < y1:
            _row_portions(src, (y + 1) * L, L, d, below)  # not yet written
        else:
            below[:] = halo[1]
        base = y * L
        # the loop below then reads none of the memory it writes (written in place, the
        # row would overlap it, and the compiler's vector loop would give way to a scalar one)
        row[:] = src[base : base + L]
        vertical = (1 if y > 0 else 0) + (1 if y < L - 1 else 0)
        peak = nb.int64(0)
        for x in range(L):
            n_nb = vertical + (1 if x > 0 else 0) + (1 if x < L - 1 else 0)
            q = row[x] - _product_i32(n_nb, here[x]) + above[x] + below[x]
            if x > 0:
                q += here[x - 1]
            if x < L - 1:
                q += here[x + 1]
            q -= portion_u32(q, decay)  # q <= MOL_MAX + 4 (site_after)
            peak = max(peak, q)
            q = min(q, _MOL_MAX)  # int32 storage (flagged below)
            dst[base + x] = q
            gift += portion_u32(q, circulate)
        if peak > _MOL_MAX:
            s.saturated[layer] = 1
        above, here, below = here, below, above
    return gift


@nb.njit(inline="always", cache=True)
def exchange(layer, site, x, y, t, c, s, p):
    """``site`` exchanges every layer with the circulation (:func:`circulate_site`), then
    its disease reactions run (:func:`react_site`)."""
    for row in range(s.mol.shape[0]):
        f = p.circulate[row]
        if f > 0:
            q = circulate_site(s.mol[row, site], f, t.share[row], 1 if site < t.rest[row] else 0)
            s.mol[row, site] = capped(q, s.saturated, row)
    react_site(site, s.mol, s.saturated, s.zone, p.ip, p.fx, p.fp)
    return 0, 0

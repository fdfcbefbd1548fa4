"""Cells into slots: births, daughters, infusions and compaction.

A backend decides which slot a new or moved cell takes (a serial pass on the CPU, a prefix
sum on the GPU: the same slots); these bodies write it. What every field of a slot gets is
derived from :data:`immunesim.model.fields.CELL_FIELDS`: :func:`clear_cell` gives a new cell
every persistent field's ``fill`` value and :func:`copy_cell` moves every persistent field,
so a new field needs no change here. Scratch fields are left alone (a phase fills them
before it reads them). The two are generated from the field table, the way Brian2
generates code from templates: numba cannot loop over the differently typed arrays of a
named tuple.
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb

from immunesim.kernels.common import CAR_T, NAIVE_B, T_HELPER
from immunesim.kernels.contact import daughter_states
from immunesim.kernels.lifecycle import PRODUCE_NAIVE_B, new_specificity
from immunesim.kernels.move import won
from immunesim.model.fields import CELL_FIELDS, CLAIM_FREE
from immunesim.model.params import IP_N_SPEC, IP_THR_CAR_MEMORY
from immunesim.rng import S_CAR_MEMORY, rand53

#: New CAR-T cells: the ``j``-th goes to slot ``n + j`` on ``site[j]`` (int64[count]) with uid
#: ``next_uid + j`` and receptor mask ``mask``.
Infusion = namedtuple("Infusion", "L n next_uid site mask")

#: Compaction into ``dst`` (:class:`~immunesim.model.fields.Cells`: the same arrays on the
#: CPU, which compacts in place; spare arrays on a GPU).
Compaction = namedtuple("Compaction", "L dst")


def _generated(name: str, args: str, lines: list[str]):
    """An inlined numba function compiled from generated source lines."""
    src = f"def {name}({args}):\n" + "".join(f"    {line}\n" for line in lines)
    namespace: dict = {}
    exec(compile(src, f"<immunesim.kernels.slots.{name}>", "exec"), namespace)  # noqa: S102
    fn = namespace[name]
    fn.__doc__ = src
    return nb.njit(inline="always")(fn)


#: ``clear_cell(c, m)``: every persistent field of slot ``m`` to its fill value.
clear_cell = _generated(
    "clear_cell", "c, m", [f"c.{f.name}[m] = {f.fill}" for f in CELL_FIELDS if f.persistent]
)
#: ``copy_cell(src, i, dst, w)``: every persistent field of slot ``i`` to slot ``w``.
copy_cell = _generated(
    "copy_cell",
    "src, i, dst, w",
    [f"dst.{f.name}[w] = src.{f.name}[i]" for f in CELL_FIELDS if f.persistent],
)


@nb.njit(inline="always", cache=True)
def write_cell(c, s, m, uid, kind, state, spec, counter, car_mask, site, L):
    """Put a new live cell in slot ``m`` on ``site``: the given values, every other
    persistent field its fill value (age 0)."""
    clear_cell(c, m)
    c.uid[m] = uid
    c.kind[m] = kind
    c.state[m] = state
    c.spec[m] = spec
    c.counter[m] = counter
    c.car_mask[m] = car_mask
    c.x[m] = site % L
    c.y[m] = site // L
    c.alive[m] = 1
    s.occ[site] = m


@nb.njit(inline="always", cache=True)
def newborn(code, seed, step, site, spec_cum, n_other_spec):
    """``(kind, specificity)`` of the cell that production code ``code`` (naive B or T
    helper, see :func:`immunesim.kernels.lifecycle.production_at`) makes at ``site``."""
    if code == PRODUCE_NAIVE_B:
        return NAIVE_B, new_specificity(seed, step, site, spec_cum)
    return T_HELPER, n_other_spec


# --------------------------------------------------------------------------- phase bodies
# Bodies of ordered appends: ``place(i, j, t, c, s, p)`` puts the ``j``-th winner's cell in
# its slot (see :mod:`immunesim.engine.contract`).


@nb.njit(inline="always", cache=True)
def place_newborn(site, j, t, c, s, p):
    """The ``j``-th producing site's new cell (``t``: :data:`~immunesim.kernels.lifecycle.
    Births`); tallies a birth of its kind."""
    k, sp = newborn(s.claim[site], t.seed, t.step, site, p.spec_cum, p.ip[IP_N_SPEC] - 1)
    s.claim[site] = CLAIM_FREE
    write_cell(c, s, t.n + j, t.next_uid + j, k, 0, sp, 0, 0, site, t.L)
    return k, 1


@nb.njit(inline="always", cache=True)
def wins_site(i, t, c, s, p):
    """Whether cell ``i`` won the site it proposed."""
    return won(i, c, s)


@nb.njit(inline="always", cache=True)
def place_daughter(i, j, t, c, s, p):
    """Cell ``i`` divides: its daughter goes to slot ``t.n + j`` on the site it won; the
    parent's state and counter change as :func:`~immunesim.kernels.contact.daughter_states`
    says (a CAR-T daughter joins the memory pool with the memory probability). Tallies a
    birth of its kind."""
    k = c.kind[i]
    joins = k == CAR_T and rand53(t.seed, t.step, c.uid[i], S_CAR_MEMORY) < nb.uint64(
        p.ip[IP_THR_CAR_MEMORY]
    )
    parent, daughter, n = daughter_states(k, c.state[i], c.counter[i], joins)
    c.state[i] = parent
    c.counter[i] = n
    write_cell(
        c, s, t.n + j, t.next_uid + j, k, daughter, c.spec[i], n, c.car_mask[i], c.want[i], t.L
    )
    return k, 1


@nb.njit(inline="always", cache=True)
def infuse(j, t, c, s, p):
    """The ``j``-th infused CAR-T cell (``t``: :data:`Infusion`), of the ``other`` class."""
    write_cell(
        c, s, t.n + j, t.next_uid + j, CAR_T, 0, p.ip[IP_N_SPEC] - 1, 0, t.mask, t.site[j], t.L
    )
    return 0, 0


@nb.njit(inline="always", cache=True)
def is_alive(i, t, c, s, p):
    """Whether cell ``i`` is alive (it keeps a slot at compaction)."""
    return c.alive[i] != 0


@nb.njit(inline="always", cache=True)
def move_to_slot(i, j, t, c, s, p):
    """The ``j``-th live cell moves to slot ``j`` of ``t.dst`` (``t``: :data:`Compaction`)."""
    copy_cell(c, i, t.dst, j)
    s.occ[c.y[i] * t.L + c.x[i]] = j
    return 0, 0


__all__ = [
    "Compaction",
    "Infusion",
    "clear_cell",
    "copy_cell",
    "infuse",
    "is_alive",
    "move_to_slot",
    "newborn",
    "place_daughter",
    "place_newborn",
    "wins_site",
    "write_cell",
]

"""The phases of a step, written once over a backend's primitives.

Each phase maps the bodies of :mod:`immunesim.kernels` over cells or sites with the
primitives of :mod:`immunesim.engine.contract` and books what they tally (births, deaths
and conversions in the ledger, kills): the same code drives the CPU and the GPU, so a phase
has one definition whatever runs it.

A phase takes the state and the prepared :class:`~immunesim.model.params.Params` (``p.k``
holds the kernels' parameters with the activation tables in force).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from immunesim.kernels import contact, lifecycle, molecules, move, slots
from immunesim.kernels.common import Tick
from immunesim.kernels.lifecycle import Births, Depletion
from immunesim.kernels.molecules import Transport
from immunesim.kernels.slots import Compaction, Infusion
from immunesim.model.cells import N_CLASSES, N_KINDS, Kind
from immunesim.model.params import Params
from immunesim.state import BORN, COMPACT_SHARE, CONV_IN, CONV_OUT, DIED, State


class Phases:
    """The step's phases on one backend.

    Args:
        backend: a module satisfying :class:`~immunesim.engine.contract.Backend`.
    """

    def __init__(self, backend: ModuleType):
        self.b = backend

    # ------------------------------------------------------------------ therapy
    def deplete(
        self,
        st: State,
        p: Params,
        seed: int,
        step: int,
        target_mask: int,
        thr_zone: np.ndarray,
        car_mask: int = 0,
    ):
        """Therapy depletion: every live cell bearing a marker of ``target_mask`` dies with
        its kind's threshold in its zone (``thr_zone``: uint64[3] per zone, or
        uint64[kinds, 3]: :func:`~immunesim.kernels.lifecycle.kind_zone_thresholds`); with
        ``car_mask`` non-zero, only the CAR-T cells whose receptor recognises one of its
        markers. Returns the number killed (a device scalar on a GPU)."""
        t = Depletion(
            seed,
            step,
            st.L,
            int(target_mask),
            self.b.asarray(lifecycle.kind_zone_thresholds(thr_zone)),
            np.uint8(car_mask),
        )
        return self.b.for_cells(lifecycle.deplete, st.n, t, st.cells, st.sites, p.k)[0]

    def infuse(self, st: State, p: Params, sites: np.ndarray, target_mask: int) -> None:
        """CAR-T cells on ``sites`` (int64[count], free sites), in slots and uids after the
        last ones."""
        count = int(sites.size)
        if count == 0:
            return
        self.b.reserve(st, count)
        t = Infusion(st.L, st.n, st.next_uid, self.b.asarray(sites), int(target_mask))
        self.b.for_cells(slots.infuse, count, t, st.cells, st.sites, p.k)
        st.n += count
        st.next_uid += count
        st.ledger[Kind.CAR_T, BORN] += count

    # ------------------------------------------------------------------ production
    def produce(self, st: State, p: Params, seed: int, step: int, thr_t_helper: int) -> None:
        """Naive B cells at free marrow sites, T helpers at free lymphoid sites, in site
        order (room is made for them once they are drawn)."""
        t = Births(seed, step, st.L, st.n, st.next_uid, np.uint64(thr_t_helper))
        made = self.b.for_sites(lifecycle.mark_production, 1, t, st.cells, st.sites, p.k)[0]
        self.b.reserve(st, made)
        self._born(
            st,
            *self.b.append(
                lifecycle.makes_cell,
                slots.place_newborn,
                st.L * st.L,
                t,
                st.cells,
                st.sites,
                p.k,
                N_KINDS,
                self._room(st),
            ),
        )

    def _room(self, st: State):
        """What an append calls once it knows how many cells it adds: room made for them,
        and the cell arrays to place them into."""

        def room(count: int):
            self.b.reserve(st, count)
            return st.cells

        return room

    def _born(self, st: State, count: int, tally) -> None:
        if st.n + count > st.capacity:  # a phase's room was wrong: slots were overwritten
            raise RuntimeError(
                f"{count} new cells overflowed the {st.capacity - st.n} free cell slots"
            )
        st.n += count
        st.next_uid += count
        st.ledger[:, BORN] += tally

    # ------------------------------------------------------------------ movement
    def move(self, st: State, p: Params, seed: int, step: int) -> None:
        """Random walk with homing; one cell per site. Runs ``p.substeps.move`` sub-steps,
        sub-step ``j`` of step ``step`` drawing with tick ``step * substeps + j``."""
        n = p.substeps.move
        for sub in range(n):
            t = Tick(seed, step * n + sub, st.L)
            self._propose_resolve(move.propose_move, st, p, t)
            self.b.for_cells(move.apply_move, st.n, t, st.cells, st.sites, p.k)
            self._release(st, p, t)

    def _propose_resolve(self, propose, st: State, p: Params, t):
        """Every cell's proposal, each conflict to the lowest key; returns the proposals'
        tally."""
        tally = self.b.for_cells(propose, st.n, t, st.cells, st.sites, p.k)
        self.b.scatter_min(st.n, st.cells, st.sites)
        return tally

    def _release(self, st: State, p: Params, t) -> None:
        self.b.for_cells(move.release_claim, st.n, t, st.cells, st.sites, p.k)

    # ------------------------------------------------------------------ contact
    def kill(self, st: State, p: Params, seed: int, step: int):
        """CAR-T cells kill marker-bearing neighbours; each victim dies once, and the
        attacker with the lowest key is credited (stimulated). Returns the number of kills
        (a device scalar on a GPU). Runs ``p.substeps.kill`` sub-steps, drawing with ticks
        as :meth:`move` does."""
        n = p.substeps.kill
        kills = 0
        for sub in range(n):
            t = Tick(seed, step * n + sub, st.L)
            self._propose_resolve(contact.propose_kill, st, p, t)
            kills = (
                kills + self.b.for_cells(contact.apply_kill, st.n, t, st.cells, st.sites, p.k)[0]
            )
            self._release(st, p, t)
        return kills

    def activate(self, st: State, p: Params, seed: int, step: int) -> None:
        """Activation with T help, differentiation, plasmablast to LLPC; conversions go to
        the ledger."""
        t = Tick(seed, step, st.L)
        tally = self.b.for_cells(
            contact.activate, st.n, t, st.cells, st.sites, p.k, N_KINDS * N_KINDS
        ).reshape(N_KINDS, N_KINDS)  # [from, to]
        st.ledger[:, CONV_OUT] += tally.sum(axis=1)
        st.ledger[:, CONV_IN] += tally.sum(axis=0)

    def displace(self, st: State, p: Params, seed: int, step: int) -> None:
        """Competition for marrow niches: plasmablasts displace long-lived plasma cells from
        neighbouring niches and settle there; each resident goes to the proposal with the
        lowest key. A displacement is a conversion (plasmablast to long-lived plasma cell)
        and the displaced cell's death (booked when it leaves, in :meth:`death`)."""
        if not p.displaces:
            return
        t = Tick(seed, step, st.L)
        self._propose_resolve(contact.propose_displace, st, p, t)
        moved = self.b.for_cells(contact.apply_displace, st.n, t, st.cells, st.sites, p.k)[0]
        self._release(st, p, t)
        st.ledger[Kind.PLASMABLAST, CONV_OUT] += moved
        st.ledger[Kind.LLPC, CONV_IN] += moved

    def divide(self, st: State, p: Params, seed: int, step: int) -> None:
        """Activated B cells, stimulated CAR-T and homeostatic divisions into free sites;
        daughters take slots and uids in parent order (room is made for every proposal)."""
        t = Tick(seed, step, st.L)
        self.b.reserve(st, self._propose_resolve(contact.propose_division, st, p, t)[0])
        births = Births(seed, step, st.L, st.n, st.next_uid, np.uint64(0))
        born = self.b.append(
            slots.wins_site,
            slots.place_daughter,
            st.n,
            births,
            st.cells,
            st.sites,
            p.k,
            N_KINDS,
            self._room(st),
        )
        self._release(st, p, t)
        self._born(st, *born)

    # ------------------------------------------------------------------ molecules
    def molecules(self, st: State, p: Params) -> None:
        """Secretion, diffusion and decay, exchange with the circulation, reactions.

        The circulation pool of a layer is the exact integer sum of what every site gives,
        so it does not depend on the order of the sum; it is shared equally, the remainder
        going one unit each to the lowest site indices.
        """
        b, n_layers, n_sites = self.b, st.mol.shape[0], st.L * st.L
        b.for_cells(lifecycle.secrete, st.n, Tick(0, 0, st.L), st.cells, st.sites, p.k)
        none = b.xp.zeros(n_layers, np.int64)
        n = p.substeps.diffuse
        scratch = b.diffusion_scratch(st)
        for sub in range(n):
            dst = b.spare_mol(st)
            t = Transport(st.L, p.diffusion, dst, none, none, int(sub == n - 1))
            pool = b.diffuse(t, st.cells, st.sites, p.k, n_layers, scratch)
            if dst is not st.mol:
                st.aux["mol_next"], st.sites = st.mol, st.sites._replace(mol=dst)
        share = pool // n_sites
        t = t._replace(share=share, rest=pool - share * n_sites)
        b.for_sites(molecules.exchange, 1, t, st.cells, st.sites, p.k)

    # ------------------------------------------------------------------ death
    def death(self, st: State, p: Params, seed: int, step: int) -> None:
        """Deaths by lifespan; every cell that died this step leaves its site, and its death
        goes to the ledger. Its slot is given back at the next compaction, which runs once
        more than ``1 / COMPACT_SHARE`` of the used slots hold dead cells (it keeps slot
        order; see :data:`~immunesim.state.COMPACT_SHARE`)."""
        died = self.b.for_cells(
            lifecycle.age, st.n, Tick(seed, step, st.L), st.cells, st.sites, p.k, N_KINDS
        )
        st.ledger[:, DIED] += died
        st.dead += int(died.sum())
        if st.dead * COMPACT_SHARE > st.n:
            self.compact(st, p)

    def compact(self, st: State, p: Params) -> None:
        """Every live cell to the lowest free slot, in slot order."""
        dst = self.b.spare_cells(st)
        st.n, _ = self.b.append(
            slots.is_alive, slots.move_to_slot, st.n, Compaction(st.L, dst), st.cells, st.sites, p.k
        )
        st.dead = 0
        if dst is not st.cells:
            st.aux["spare"], st.cells = st.cells, dst

    # ------------------------------------------------------------------ observation
    def count_cells(self, st: State, p: Params) -> np.ndarray:
        """Cell counts, int64[N_CLASSES, n_spec, 3] by class (kinds, then memory CAR-T),
        specificity and zone, on the host."""
        n_spec = p.layers.n_spec
        tally = self.b.for_cells(
            lifecycle.census,
            st.n,
            Tick(0, 0, st.L),
            st.cells,
            st.sites,
            p.k,
            N_CLASSES * n_spec * 3,
        )
        return self.b.to_host(tally).reshape(N_CLASSES, n_spec, 3)


__all__ = ["Phases"]

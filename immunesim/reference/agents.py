"""The cells of the reference model as Mesa agents on a Moore grid.

Each agent is a :class:`mesa.discrete_space.CellAgent` with the attributes the fast
engine keeps in its arrays (kind, specificity, state bits, counter, age) and one method per
phase in which it acts. Every decision compares a draw of the model's random generator,
``random.getrandbits(53)``, with the same 53-bit integer threshold the fast engine compares
its counter-based hash with (``Params`` holds them), through the kernels' scalar rules
(:mod:`immunesim.reference.rules`).

What differs from the fast engine is only how the rules are executed: agents act one at a
time in a random order and see what the agents before them did (a site another cell has
just left can be entered, a victim already killed is not attacked again), and a cell that
dies leaves the grid at once. The fast engine updates synchronously instead: every cell
decides from the state at the start of the phase and conflicts go to the lowest priority
key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mesa.discrete_space import CellAgent

from immunesim.engine.geometry import DX, DY
from immunesim.model.cells import N_KINDS, STATE_CAR_T_MEMORY, Kind, kinds_of_lineage
from immunesim.model.params import (
    IP_LAYER_CYTO,
    IP_THR_CAR_MEMORY,
    IP_THR_DIFFERENTIATE,
    IP_THR_LLPC,
)
from immunesim.reference import rules

if TYPE_CHECKING:  # pragma: no cover
    from mesa.discrete_space import Cell

    from immunesim.reference.model import ReferenceModel

#: Offsets of the Moore directions 0..7 as Mesa connection keys (the kernels' order).
DIRECTIONS = tuple(zip(DX.tolist(), DY.tolist(), strict=True))

_NAIVE_B, _ACTIVATED_B, _MEMORY_B = int(Kind.NAIVE_B), int(Kind.ACTIVATED_B), int(Kind.MEMORY_B)
_PLASMABLAST, _LLPC, _CAR_T = int(Kind.PLASMABLAST), int(Kind.LLPC), int(Kind.CAR_T)


class ImmuneCell(CellAgent):
    """A cell on the lattice; the behaviour every kind shares (movement, division, death).

    Attributes:
        kind: its :class:`~immunesim.model.cells.Kind` as an ``int``.
        spec: specificity class (0 self, then the further autoantibodies, the vaccines,
            and last other).
        state: state bits (CAR-T cells: memory flag and generation).
        counter: divisions left (activated B) or stimulated steps left (CAR-T).
        age: steps since birth.
    """

    model: ReferenceModel

    def __init__(
        self,
        model: ReferenceModel,
        cell: Cell,
        kind: int,
        spec: int,
        state: int = 0,
        counter: int = 0,
        age: int = 0,
    ):
        super().__init__(model)
        self.kind = int(kind)
        self.spec = int(spec)
        self.state = int(state)
        self.counter = int(counter)
        self.age = int(age)
        self.cell = cell

    @property
    def site(self) -> int:
        """Index of the agent's site in the molecular layers (``y * L + x``)."""
        x, y = self.cell.coordinate
        return y * self.model.L + x

    def draw(self) -> int:
        """A uniform 53-bit integer, compared with the rules' thresholds."""
        return self.random.getrandbits(53)

    # ------------------------------------------------------------------ phases
    def move(self) -> None:
        """Random walk with homing: a step to a free Moore neighbour."""
        p = self.model.params.k
        k = self.kind
        if self.draw() >= p.thr_move[k]:
            return
        here = self.cell
        zone = here.zone
        d = self.random.randrange(8)
        hz = rules.away_from_home(k, zone, p.home)
        if hz >= 0 and self.draw() < p.thr_homing[k]:
            mask = self.model.state.toward[hz, self.site]
            if mask != 0:
                d = rules.homeward(mask, self.draw())
        target = here.connections.get(DIRECTIONS[d])  # None off the lattice
        if target is None or not target.is_empty:
            return
        if rules.leaves_home(k, zone, target.zone, p.home) and self.draw() < p.thr_stay[k]:
            return
        self.move_to(target)

    def divide(self) -> None:
        """Division into a random free Moore neighbour, at the kind's rate."""
        p = self.model.params.k
        thr = rules.division_threshold(self.kind, self.state, self.counter, p.thr_divide, p.ip)
        if thr == 0 or self.draw() >= thr:
            return
        free = [c for c in self.cell.neighborhood if c.is_empty]
        if not free:
            return
        joins_memory = self.kind == _CAR_T and self.draw() < p.ip[IP_THR_CAR_MEMORY]
        self.state, daughter, self.counter = rules.daughter_states(
            self.kind, self.state, self.counter, joins_memory
        )
        self.daughter(self.random.choice(free), daughter)

    def daughter(self, cell: Cell, state: int) -> ImmuneCell:
        """A new cell of the same kind, specificity and counter on ``cell``."""
        return type(self)(self.model, cell, self.kind, self.spec, state, self.counter)

    def grow_old(self) -> None:
        """Death at the rate of the cell's lifespan, else one step older, its stimulation
        wearing off (:func:`~immunesim.kernels.lifecycle.countdown`)."""
        p = self.model.params.k
        if self.draw() < p.thr_death[rules.cell_class(self.kind, self.state)]:
            self.remove()
            return
        self.age += 1
        self.counter = rules.countdown(self.kind, self.counter)

    def secrete(self) -> None:
        """Add what its kind secretes (plasmablasts and plasma cells: antibody of their
        specificity) to its site."""
        k = self.model.params.k
        row, amount = rules.secretion(
            self.kind, self.spec, k.secrete, k.secrete_row, k.secrete_spec
        )
        if amount > 0:
            self.model.state.mol[row, self.site] += amount


class BCell(ImmuneCell):
    """A B-lineage cell: naive, activated, memory B, plasmablast or long-lived plasma cell
    (its ``kind`` changes as it activates and differentiates)."""

    def activate(self) -> None:
        """Activation with antigen and T help, differentiation, settling in a niche."""
        m = self.model
        ip = m.params.k.ip
        k = self.kind
        if k == _NAIVE_B or k == _MEMORY_B:
            a = rules.antigen_at(self.spec, self.site, m.state.mol, ip)
            thr = rules.activation_threshold(k, a, *m.activation_tables)
            if self.draw() < thr and self.has_t_help():
                self.kind, self.counter = rules.activated(k, ip)
        elif k == _ACTIVATED_B:
            if self.counter == 0 and self.draw() < ip[IP_THR_DIFFERENTIATE]:
                self.kind, self.counter = rules.differentiated(self.draw(), ip)
        elif k == _PLASMABLAST:
            if self.cell.niche and self.draw() < ip[IP_THR_LLPC]:
                self.kind, self.counter = _LLPC, 0

    def displace(self) -> None:
        """A plasmablast displaces a long-lived plasma cell on a neighbouring niche, at its
        class's rate: the resident dies and the plasmablast settles on the niche as a
        long-lived plasma cell."""
        if self.kind != _PLASMABLAST:
            return
        if self.draw() >= rules.displacement_threshold(self.spec, self.model.params.k.ip):
            return
        residents = [a for a in self.cell.neighborhood.agents if a.kind == _LLPC and a.cell.niche]
        if not residents:
            return
        resident = self.random.choice(residents)
        niche = resident.cell
        resident.remove()
        self.move_to(niche)
        self.kind, self.counter = _LLPC, 0

    def has_t_help(self) -> bool:
        """Whether a T helper sits on a Moore neighbour."""
        return any(isinstance(a, THelper) for a in self.cell.neighborhood.agents)


class THelper(ImmuneCell):
    """A CD4 T helper: gives help to B cells on its Moore neighbours."""


class CarTCell(ImmuneCell):
    """A CAR-T cell: kills neighbours bearing its target markers, divides while stimulated,
    joins the memory pool or contracts.

    Attributes:
        car_mask: the marker mask its CAR recognises.
    """

    def __init__(
        self,
        model: ReferenceModel,
        cell: Cell,
        spec: int,
        car_mask: int,
        state: int = 0,
        counter: int = 0,
        age: int = 0,
    ):
        super().__init__(model, cell, _CAR_T, spec, state, counter, age)
        self.car_mask = int(car_mask)

    @property
    def memory(self) -> bool:
        """Whether the cell belongs to the persistent memory pool."""
        return bool(self.state & STATE_CAR_T_MEMORY)

    def kill(self) -> None:
        """Kill one random neighbour bearing a target marker, at the kill rate; a kill
        releases cytokine at the victim's site and stimulates the cell."""
        m = self.model
        ip = m.params.k.ip
        if self.draw() >= rules.kill_threshold(self.state, ip):
            return
        markers = m.params.k.markers
        targets = [
            a for a in self.cell.neighborhood.agents if rules.bears(markers, a.kind, self.car_mask)
        ]
        if not targets:
            return
        victim = self.random.choice(targets)
        self.counter, cytokine = rules.stimulated(ip)
        m.state.mol[ip[IP_LAYER_CYTO], victim.site] += cytokine
        victim.remove()
        m.kills_since_sample += 1

    def daughter(self, cell: Cell, state: int) -> CarTCell:
        return CarTCell(self.model, cell, self.spec, self.car_mask, state, self.counter)


#: Agent class of each cell kind: the B lineage's kinds are B cells (a B cell changes kind as
#: it activates and differentiates), T helpers and CAR-T cells have their own classes, any
#: other kind is a plain :class:`ImmuneCell` (it moves, divides and dies).
AGENT_CLASS: dict[int, type[ImmuneCell]] = {
    **{i: ImmuneCell for i in range(N_KINDS)},
    **dict.fromkeys(kinds_of_lineage("B"), BCell),
    int(Kind.T_HELPER): THelper,
    _CAR_T: CarTCell,
}

__all__ = ["AGENT_CLASS", "BCell", "CarTCell", "ImmuneCell", "THelper"]

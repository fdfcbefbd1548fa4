"""The molecular layers, declared once.

A layer is one integer quantity per lattice site (internal units of ``1 / MOL_SCALE`` user
units, see :mod:`immunesim.model.params`). Some layers come one per specificity class
(antibody) or one per vaccine antigen; :class:`Layers` lays them out for a scenario's
specificities, in the order of :data:`LAYERS`, as the rows of ``sites.mol``
(int64[n_layers, L*L]). Decay, diffusion and exchange with the circulation are set per layer
from this table (:func:`immunesim.engine.parameters.build_params`), the metrics name a column
after each layer, and the memory estimate counts them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layer:
    """One molecular species (or one family of them).

    Attributes:
        name: name of the layer, or prefix of its members (``antibody_self``,
            ``antigen_tetanus``).
        per: ``None`` for one layer, ``"specificity"`` for one per specificity class,
            ``"vaccine"`` for one per vaccine antigen.
        unit: user unit of the quantity per site.
        half_life: key of its half-life in days in the scenario's ``[molecules]`` table.
        diffuses: whether it diffuses between neighbouring sites.
        circulates: whether it exchanges with the well-mixed circulation.
        source: what adds it (for the documentation).
    """

    name: str
    per: str | None
    unit: str
    half_life: str
    diffuses: bool
    circulates: bool
    source: str


#: The layers in storage order.
LAYERS: tuple[Layer, ...] = (
    Layer(
        "antibody",
        "specificity",
        "antibody units",
        "antibody_half_life_days",
        True,
        True,
        "secreted by plasmablasts and long-lived plasma cells of the class",
    ),
    Layer(
        "autoantigen",
        None,
        "antigen units",
        "autoantigen_half_life_days",
        True,
        True,
        "a tissue source and release from damaged tissue",
    ),
    Layer(
        "antigen",
        "vaccine",
        "antigen units",
        "vaccine_antigen_half_life_days",
        True,
        True,
        "vaccination (a pulse in the lymphoid zone)",
    ),
    Layer(
        "immune_complex",
        None,
        "complex units",
        "complex_half_life_days",
        False,
        False,
        "binding of autoantibody to autoantigen",
    ),
    Layer(
        "damage",
        None,
        "damage units",
        "damage_half_life_days",
        False,
        False,
        "immune complexes in tissue",
    ),
    Layer(
        "cytokine",
        None,
        "cytokine units",
        "cytokine_half_life_days",
        True,
        True,
        "damaged tissue and CAR-T kills",
    ),
)


@dataclass(frozen=True)
class Layers:
    """Row indices of the molecular layers for a scenario's specificity classes.

    Args:
        spec_names: the specificity classes (``self``, the vaccine antigens, ``other``).
    """

    spec_names: tuple[str, ...]

    @property
    def n_spec(self) -> int:
        return len(self.spec_names)

    @property
    def n_vaccines(self) -> int:
        return len(self.spec_names) - 2

    def members(self, layer: Layer) -> tuple[str, ...]:
        """Names of the rows a layer declaration stands for."""
        if layer.per == "specificity":
            return tuple(f"{layer.name}_{s}" for s in self.spec_names)
        if layer.per == "vaccine":
            return tuple(f"{layer.name}_{v}" for v in self.spec_names[1:-1])
        return (layer.name,)

    def rows(self) -> list[tuple[Layer, str]]:
        """``(declaration, row name)`` of every row, in storage order."""
        return [(layer, name) for layer in LAYERS for name in self.members(layer)]

    def names(self) -> list[str]:
        """Row names in storage order (``antibody_self`` ... ``cytokine``)."""
        return [name for _, name in self.rows()]

    def index(self, name: str) -> int:
        """Row of a layer by its name (``"damage"``, ``"antigen_tetanus"``)."""
        return self.names().index(name)

    @property
    def n_layers(self) -> int:
        return len(self.rows())

    # the rows the rules and therapies address by role
    @property
    def autoantigen(self) -> int:
        return self.index("autoantigen")

    def vaccine_antigen(self, v: int) -> int:
        """Row of the ``v``-th vaccine antigen."""
        return self.autoantigen + 1 + v

    @property
    def immune_complex(self) -> int:
        return self.index("immune_complex")

    @property
    def damage(self) -> int:
        return self.index("damage")

    @property
    def cytokine(self) -> int:
        return self.index("cytokine")


def n_layers(n_vaccines: int) -> int:
    """Number of layer rows for ``n_vaccines`` vaccine antigens."""
    return Layers(("self", *(f"v{i}" for i in range(n_vaccines)), "other")).n_layers


__all__ = ["LAYERS", "Layer", "Layers", "n_layers"]

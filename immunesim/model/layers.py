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

from immunesim.model import extensions
from immunesim.model.description import Layer

#: The built-in layers in storage order.
CORE_LAYERS: tuple[Layer, ...] = (
    Layer(
        "antibody",
        "specificity",
        "antibody units",
        "antibody_half_life_days",
        True,
        True,
        "secreted by plasmablasts and long-lived plasma cells of the class",
        secreted_by=(
            ("plasmablast", "plasmablast_secretion_per_day"),
            ("llpc", "llpc_secretion_per_day"),
        ),
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
        metric=None,
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
        metric="tissue",
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


def _all_layers() -> tuple[Layer, ...]:
    declared = CORE_LAYERS + extensions.declared("LAYERS")
    seen: set[str] = set()
    for layer in declared:
        if layer.name in seen or not layer.name.isidentifier():
            raise ValueError(f"molecular layer {layer.name!r}: a name must be a new identifier")
        if layer.per not in (None, "specificity", "vaccine"):
            raise ValueError(
                f"molecular layer {layer.name!r}: per must be None, "
                f"'specificity' or 'vaccine' (got {layer.per!r})"
            )
        if layer.metric not in (None, "site", "tissue"):
            raise ValueError(
                f"molecular layer {layer.name!r}: metric must be None, 'site' "
                f"or 'tissue' (got {layer.metric!r})"
            )
        if layer.secreted_by and layer.per == "vaccine":
            raise ValueError(
                f"molecular layer {layer.name!r}: a per-vaccine layer cannot be "
                "secreted (cells secrete into a single or a per-specificity layer)"
            )
        seen.add(layer.name)
    secreting = [kind for layer in declared for kind, _ in layer.secreted_by]
    twice = sorted({k for k in secreting if secreting.count(k) > 1})
    if twice:
        raise ValueError(f"cell kinds {twice} secrete more than one layer (at most one each)")
    return declared


#: Every layer in storage order: the built-in ones, then those of the extensions.
LAYERS: tuple[Layer, ...] = _all_layers()


@dataclass(frozen=True)
class Layers:
    """Row indices of the molecular layers for a scenario's specificity classes.

    Args:
        spec_names: the specificity classes (``self``, the further autoantibodies, the
            vaccine antigens, ``other``: :func:`~immunesim.model.cells.specificity_names`).
        n_self: how many of them, from the first, are autoreactive (``self`` and the further
            autoantibodies).
    """

    spec_names: tuple[str, ...]
    n_self: int = 1

    @property
    def n_spec(self) -> int:
        return len(self.spec_names)

    @property
    def n_vaccines(self) -> int:
        return len(self.spec_names) - self.n_self - 1

    @property
    def autoantibodies(self) -> tuple[str, ...]:
        """The further autoantibody classes (after ``self``)."""
        return self.spec_names[1 : self.n_self]

    @property
    def vaccines(self) -> tuple[str, ...]:
        return self.spec_names[self.n_self : -1]

    def members(self, layer: Layer) -> tuple[str, ...]:
        """Names of the rows a layer declaration stands for."""
        if layer.per == "specificity":
            return tuple(f"{layer.name}_{s}" for s in self.spec_names)
        if layer.per == "vaccine":
            return tuple(f"{layer.name}_{v}" for v in self.vaccines)
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


def n_layers(n_vaccines: int, n_autoantibodies: int = 0) -> int:
    """Number of layer rows for ``n_vaccines`` vaccine antigens and ``n_autoantibodies``
    autoantibodies besides anti-dsDNA."""
    auto = tuple(f"a{i}" for i in range(n_autoantibodies))
    vacc = tuple(f"v{i}" for i in range(n_vaccines))
    return Layers(("self", *auto, *vacc, "other"), 1 + n_autoantibodies).n_layers


__all__ = ["CORE_LAYERS", "LAYERS", "Layer", "Layers", "n_layers"]

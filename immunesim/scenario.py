"""Typed scenario schema, TOML loading, ``--set`` overrides and clear error messages.

A scenario file is TOML. It is validated into :class:`Scenario` (pydantic), whose fields carry
their units in their names (``_days``, ``_per_day``, ``_hours``) and a description. Every
problem becomes a :class:`ScenarioError` that names the file, the key path and what was
expected; the command line turns it into exit status 2 without a traceback.

Rates are given per day and turned into per-step probabilities as ``p = 1 - exp(-rate * dt)``
(see :mod:`immunesim.model.params`).
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from immunesim.model import extensions, fields, layers
from immunesim.model.cells import KINDS, MARKER_NAMES, marker_mask
from immunesim.model.layers import LAYERS
from immunesim.sections import Fraction, NonNeg, Pos, Section, TherapyEntry

SCHEMA_VERSION = 2

#: Side of a lattice site (micrometres): one lymphocyte, and a site holds at most one cell.
#: Lengths in a scenario (zone geometry, diffusion) are physical and turned into sites with it.
SITE_UM = 10.0

#: What a scenario of an older schema must change (shown when one is read).
SCHEMA_CHANGES = {
    1: "schema 2 measures space and time physically: set schema_version = 2; "
    "molecules.diffusion (a fraction per step) became molecules.diffusion_um2_per_day "
    "(diffusion x 24 / dt_hours x 100); lattice.zones.unit_um sets the width of one "
    "anatomical unit of bands (a larger lattice holds more units, it does not stretch them); "
    "move and kill rates are now mean events per day at any time step (schema 1 realised "
    "24/day as 15.2/day at dt_hours = 1); endpoints.car_t_persistence_fraction became "
    "endpoints.car_t_detection_per_ul (a detection limit in blood)",
}

#: Largest molecule amount per site a scenario may give (user units): amounts are integers of
#: 2**-20 units, and the fixed-point reactions stay exact below 2**23 units per site.
MAX_AMOUNT = 1.0e6
#: An amount of molecules per site (user units).
Amount = Annotated[float, Field(ge=0.0, le=MAX_AMOUNT)]
#: Most vaccine antigens (specificity classes are stored as int8, with self and other).
MAX_VACCINES = 32
MAX_AUTOANTIBODIES = 8
#: Most entries of a list of days.
MAX_DAYS = 1000
#: Default budget of a run, in site-steps (lattice sites x steps): about an hour on a GPU and
#: many hours on two CPU cores. ``immunesim validate/run --force`` runs beyond it.
WORK_BUDGET = 2.0e11
#: Fewest CAR-T agents an infusion may put on the lattice.
MIN_CAR_T_AGENTS = 1


def _printable(text: str) -> str:
    """``text`` on one line: control characters (a newline typed in a value) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


class ScenarioError(ValueError):
    """A scenario could not be loaded; ``str(err)`` is the message a user should see.

    Attributes:
        file: the scenario file (or ``"<overrides>"``).
        key: dotted key path of the offending entry ("" for the whole file).
        expected: what was expected there.
    """

    def __init__(self, file: str | os.PathLike[str], key: str, expected: str):
        self.file = str(file)
        self.key = _printable(key)
        self.expected = _printable(expected)
        where = f"{self.file}: {self.key}" if self.key else self.file
        super().__init__(f"{where}: {self.expected}")


_Section = Section


def _extended(base: type[Section], extra: dict[str, tuple[Any, Any]]) -> Any:
    """``base``, or a subclass with the ``extra`` keys an extension declares."""
    if not extra:
        return base
    return create_model(
        base.__name__, __base__=base, __module__=__name__, __doc__=base.__doc__, **extra
    )  # type: ignore[call-overload]


# --------------------------------------------------------------------------- space and time


class Zones(_Section):
    """How the lattice is divided into zones (marrow, lymphoid, tissue)."""

    layout: Literal["bands", "file"] = Field(
        "bands",
        description="'bands': vertical bands marrow | lymphoid | tissue from left to right, "
        "widths given by the fractions below; 'file': a .npy array of zone codes "
        "(0 marrow, 1 lymphoid, 2 tissue) of shape (size, size).",
    )
    marrow: Fraction = Field(0.25, description="Fraction of the lattice width that is marrow.")
    lymphoid: Fraction = Field(0.35, description="Fraction of the width that is lymphoid.")
    tissue: Fraction = Field(0.40, description="Fraction of the width that is target tissue.")
    file: str | None = Field(None, description="Zone map (.npy), relative to the scenario file.")
    niche_fraction: Fraction = Field(
        0.12, description="Fraction of marrow sites that are long-lived plasma cell niches."
    )
    unit_um: float = Field(
        1000.0,
        ge=3 * SITE_UM,
        le=1.0e6,
        description="'bands': width of one anatomical unit (micrometres; a site is 10 um). "
        "Bands of the fractions above fill one unit, and the unit repeats across the lattice: "
        "a larger lattice holds more tissue, not wider bands. lattice.size must be a whole "
        "number of units.",
    )

    @property
    def unit_sites(self) -> int:
        """Sites across one anatomical unit (``unit_um`` / 10 um, rounded)."""
        return int(round(self.unit_um / SITE_UM))

    @model_validator(mode="after")
    def _check(self) -> Zones:
        if self.layout == "bands":
            total = self.marrow + self.lymphoid + self.tissue
            if abs(total - 1.0) > 1e-9:
                raise ValueError(
                    f"marrow + lymphoid + tissue must add up to 1 (they add up to {total:g})"
                )
        elif not self.file:
            raise ValueError("layout = 'file' needs file = 'path/to/zones.npy'")
        return self


class Lattice(_Section):
    """The tissue lattice: ``size x size`` sites, at most one cell per site."""

    size: int = Field(200, ge=8, le=100_000, description="Sites per side.")
    zones: Zones = Field(default_factory=Zones)

    @model_validator(mode="after")
    def _whole_units(self) -> Lattice:
        unit = self.zones.unit_sites
        if self.zones.layout == "bands" and self.size % unit != 0:
            lo = max(unit, self.size // unit * unit)
            raise _KeyedError(
                "lattice.size",
                f"a whole number of anatomical units of {unit} sites (lattice.zones.unit_um "
                f"{self.zones.unit_um:g} um / {SITE_UM:g} um a site), such as {lo} or "
                f"{lo + unit}; got {self.size} (or set lattice.zones.unit_um to "
                f"{self.size * SITE_UM:g} for a lattice of one unit)",
            )
        return self


class Time(_Section):
    """Time step and the length of the run."""

    dt_hours: float = Field(
        1.0, ge=0.001, le=24.0, description="Length of one step (hours; 3.6 s to a day)."
    )
    run_in_days: float = Field(240.0, ge=0.0, description="Untreated run-in before day 0 (days).")
    follow_up_days: float = Field(540.0, gt=0.0, description="Days simulated after day 0.")
    sample_every_hours: float = Field(
        24.0, gt=0.0, description="Interval between rows of the time series (hours)."
    )


# --------------------------------------------------------------------------- cells


class Specificities(_Section):
    """Specificity classes of B cells and antibodies: self (anti-dsDNA), further
    autoantibodies, vaccines, other."""

    vaccines: list[str] = Field(
        default_factory=lambda: ["tetanus", "measles"],
        min_length=1,
        max_length=MAX_VACCINES,
        description="Vaccine antigens (at least one); each has its own antibody layer.",
    )
    autoreactive_fraction: Fraction = Field(
        0.35, description="Fraction of new naive B cells that are autoreactive (self)."
    )
    vaccine_fraction: Fraction = Field(
        0.02, description="Fraction of new naive B cells specific for each vaccine antigen."
    )
    autoantibodies: list[str] = Field(
        default_factory=list,
        max_length=MAX_AUTOANTIBODIES,
        description="Autoantibodies besides anti-dsDNA (the class `self`), for example "
        '["sm"]. Their B cells are activated by a share of the tissue\'s autoantigen '
        "(`autoantigen_share`), but their antibodies form no tissue-damaging complexes: "
        "serological markers such as anti-Sm or anti-Ro60, whose source may be mostly "
        "long-lived plasma cells (`initial.llpc_autoantibody_fraction`). Each has an antibody "
        "layer "
        "`antibody_<name>`, reported as `anti_<name>`.",
    )
    autoantibody_fraction: Fraction = Field(
        0.1,
        description="Fraction of new naive B cells specific for each further autoantibody.",
    )
    other_antibody_weight: float = Field(
        20.0,
        ge=1.0,
        le=1000.0,
        description="Plasma cells of the repertoire the model does not follow (the class "
        "`other`: every antigen but the autoantigens and the named vaccines) that each "
        "`other` plasmablast or long-lived plasma cell stands for. They make most of a "
        "person's IgG, so their antibody counts this many times in `antibody_other` and "
        "`total_igg`; it acts on nothing else (no `other` antibody binds a modelled "
        "antigen), so the lattice needs only a sample of these cells.",
    )
    autoantigen_share: Fraction = Field(
        0.3,
        description="Share of the tissue's autoantigen that the B cells of a further "
        "autoantibody recognise (its antigen, such as Sm, is a part of the nuclear material "
        "that damaged tissue releases). Below 1 their response does not sustain itself "
        "against anti-dsDNA's for the same T help, which would leave its size to chance.",
    )

    @field_validator("vaccines", "autoantibodies")
    @classmethod
    def _names(cls, v: list[str], info: ValidationInfo) -> list[str]:
        what = "vaccine" if info.field_name == "vaccines" else "autoantibody"
        for name in v:
            if not name.isidentifier() or name in ("self", "other"):
                raise ValueError(f"{what} name {name!r} must be an identifier, not self/other")
        if len(set(v)) != len(v):
            raise ValueError(f"{what} names must be distinct")
        return v

    @model_validator(mode="after")
    def _apart(self) -> Specificities:
        both = sorted(set(self.vaccines) & set(self.autoantibodies))
        if both:
            raise ValueError(f"{both} named both as a vaccine and as an autoantibody")
        return self


class CellKindParams(_Section):
    """Lifespan, movement and homing of one cell kind."""

    lifespan_days: Pos = Field(description="Mean lifespan (days); death rate is 1/lifespan.")
    move_rate_per_day: NonNeg = Field(
        description="Rate of attempted moves to a neighbour site (mean attempts per day)."
    )
    home: Literal["marrow", "lymphoid", "tissue", "none"] = Field(
        description="Zone the cell homes to ('none': unbiased random walk)."
    )
    homing: Fraction = Field(
        0.5,
        description="Probability that a move attempt outside the home zone heads toward it.",
    )
    stay: Fraction = Field(
        0.9, description="Probability of refusing a move that would leave the home zone."
    )
    division_rate_per_day: NonNeg = Field(
        0.0, description="Homeostatic division rate (per day) into a free neighbour site."
    )
    blood_egress_per_day: NonNeg = Field(
        0.0,
        description="Rate at which a cell in its home zone enters the blood (per day; "
        "recirculation). See [blood].",
    )
    blood_egress_away_per_day: NonNeg = Field(
        0.0,
        description="Rate at which a cell outside its home zone, or of a kind with no home, "
        "enters the blood (per day; new cells leaving the marrow, cells on their way home).",
    )


def _kind(**kw: Any) -> Any:
    return Field(default_factory=lambda: CellKindParams(**kw))


class _CellsBase(_Section):
    """Per-kind parameters (see the marker table in the README)."""

    @model_validator(mode="before")
    @classmethod
    def _fill_kind_defaults(cls, data: Any) -> Any:
        # A [cells.KIND] table updates that kind's defaults instead of replacing them.
        if isinstance(data, dict):
            data = dict(data)
            for name, field in cls.model_fields.items():
                given = data.get(name)
                if isinstance(given, dict) and field.default_factory is not None:
                    data[name] = {**field.default_factory().model_dump(), **given}  # type: ignore[call-arg]
        return data


if TYPE_CHECKING:

    class Cells(_CellsBase):
        def __getattr__(self, name: str) -> CellKindParams: ...

else:
    #: One ``[cells.<kind>]`` table per cell kind of the model description, with its
    #: defaults.
    Cells = create_model(
        "Cells",
        __base__=_CellsBase,
        __module__=__name__,
        __doc__=_CellsBase.__doc__,
        **{k.name: (CellKindParams, _kind(**k.params)) for k in KINDS},
    )


class Production(_Section):
    """Production of naive B cells in marrow and T-helper homeostasis."""

    naive_b_per_site_per_day: NonNeg = Field(
        0.02, description="Rate at which a free marrow site makes a naive B cell (per day)."
    )
    t_helper_per_site_per_day: NonNeg = Field(
        0.05,
        description="Rate at which a free lymphoid site makes a T helper when the T-helper "
        "count is zero; falls linearly to 0 at the target density (per day).",
    )
    t_helper_target_density: Fraction = Field(
        0.20, description="T helpers per lymphoid site at homeostasis."
    )


class Activation(_Section):
    """B-cell activation (antigen + T help), germinal-centre expansion, differentiation."""

    naive_rate_per_day: NonNeg = Field(
        1.0, description="Activation rate of a naive B cell at saturating antigen with help."
    )
    memory_rate_per_day: NonNeg = Field(
        1.0, description="Activation rate of a memory B cell at saturating antigen with help."
    )
    naive_half_saturation: Pos = Field(
        40.0, description="Antigen at a site (units) giving half-maximal naive activation."
    )
    memory_half_saturation: Pos = Field(
        10.0, description="Antigen giving half-maximal memory activation (memory needs less)."
    )
    hill: Pos = Field(
        3.0, le=20.0, description="Hill exponent of antigen sensing (a switch at 20 already)."
    )
    other_antigen: NonNeg = Field(
        2.0, description="Constant background antigen seen by 'other'-specific B cells."
    )
    divisions: int = Field(3, ge=0, le=30, description="Divisions of an activated B cell.")
    division_rate_per_day: NonNeg = Field(
        2.0, description="Division rate of an activated B cell (per day)."
    )
    differentiation_rate_per_day: NonNeg = Field(
        0.5,
        description="Rate at which an activated B cell that has finished dividing "
        "differentiates (per day).",
    )
    memory_fraction: Fraction = Field(
        0.2, description="Fraction of differentiating activated B cells that become memory B."
    )
    llpc_rate_per_day: NonNeg = Field(
        0.05,
        description="Rate at which a plasmablast on a free marrow niche becomes a long-lived "
        "plasma cell (per day).",
    )
    niche_displacement_per_day: NonNeg = Field(
        1.0,
        description="Rate at which a plasmablast of a response to a foreign antigen (a "
        "vaccine class, or other) next to a long-lived plasma cell on a marrow niche "
        "displaces it and settles there as a long-lived plasma cell (per day; the displaced "
        "cell dies; an assumption: docs/validation/niche_competition.md). 0: no competition "
        "for niches.",
    )
    autoreactive_niche_displacement: Fraction = Field(
        0.0,
        description="Niche-displacement rate of an autoreactive plasmablast (self and the "
        "further autoantibodies) relative to niche_displacement_per_day: autoreactive "
        "plasmablasts in lupus come mostly from extrafollicular responses.",
    )


# --------------------------------------------------------------------------- molecules


class Molecules(_Section):
    """Per-site molecular layers: antibody per specificity, autoantigen, vaccine antigen,
    immune complexes, tissue damage, cytokine. Quantities are integers (fixed point) in
    arbitrary units per site."""

    antibody_half_life_days: Pos = Field(21.0, description="IgG half-life (days).")
    plasmablast_secretion_per_day: Amount = Field(
        200.0, description="Antibody units secreted by a plasmablast per day."
    )
    llpc_secretion_per_day: Amount = Field(
        100.0, description="Antibody units secreted by a long-lived plasma cell per day."
    )
    autoantigen_source_per_day: Amount = Field(
        0.5,
        description="Autoantigen released per tissue site per day without damage "
        "(apoptotic debris).",
    )
    autoantigen_release_per_damage: NonNeg = Field(
        0.35, description="Autoantigen released per unit of damage per day."
    )
    autoantigen_half_life_days: Pos = Field(2.0, description="Autoantigen half-life (days).")
    vaccine_antigen_half_life_days: Pos = Field(
        3.0, description="Vaccine antigen half-life (days)."
    )
    binding_rate: NonNeg = Field(
        2.3e-3,
        description="Immune-complex formation per unit autoantibody per unit autoantigen per day.",
    )
    complex_half_life_days: Pos = Field(1.0, description="Immune-complex half-life (days).")
    damage_per_complex: NonNeg = Field(
        0.5, description="Tissue damage per unit of immune complex per day (tissue zone)."
    )
    damage_half_life_days: Pos = Field(14.0, description="Healing half-life of damage (days).")
    cytokine_half_life_days: Pos = Field(0.5, description="Cytokine half-life (days).")
    cytokine_per_kill: Amount = Field(
        60.0, description="Cytokine released when a CAR-T cell kills a target."
    )
    cytokine_per_damage: NonNeg = Field(
        0.005, description="Cytokine released per unit of damage per day."
    )
    diffusion_um2_per_day: float = Field(
        240.0,
        ge=0.0,
        le=1.0e7,
        description="Diffusion coefficient of the diffusing layers in tissue (square "
        "micrometres per day; an effective value on the 10 um lattice, whose well-mixed "
        "circulation carries molecules over long distances).",
    )
    circulation_per_day: NonNeg = Field(
        2.0,
        description="Rate at which antibody, antigen and cytokine exchange with the "
        "circulation (well-mixed pool shared by all sites), per day.",
    )


# --------------------------------------------------------------------------- therapies


_Therapy = TherapyEntry


class Lymphodepletion(_Therapy):
    """Conditioning chemotherapy (e.g. fludarabine + cyclophosphamide)."""

    type: Literal["lymphodepletion"] = Field(description="Kind of therapy entry.")
    days: list[float] = Field(
        min_length=1, max_length=MAX_DAYS, description="Days of the course (day 0 = infusion)."
    )
    targets: list[str] = Field(
        default_factory=lambda: ["CD19", "CD3"],
        min_length=1,
        description="Markers of the cells hit.",
    )
    kill_fraction_per_day: Fraction = Field(
        0.6, description="Fraction of marker-bearing cells killed on each day of the course."
    )


class CarT(_Therapy):
    """Infusion of CAR-T cells that kill cells bearing any of the target markers.

    A scenario may infuse several times (re-treatment) and several products (other targets,
    doses and days). The cells' kinetics keys (kill, division, stimulation, memory,
    exhaustion: :data:`CAR_T_KINETICS`) are those of the first CAR-T entry and must be the
    same in every other one: the cells of every infusion are one population. The keys of the
    host's immunity against the CAR (:data:`CAR_T_IMMUNITY`) belong to the binders an entry
    carries, one per target marker: entries that share a target share them, and a product
    with other binders may have its own (a fully human binder is seldom recognised). An
    override of a key (``--set``, a sweep, a patient's drawn value) sets it in every entry
    that must share it."""

    type: Literal["car_t"] = Field(description="Kind of therapy entry.")
    day: float = Field(0.0, description="Infusion day.")
    dose_per_kg: NonNeg = Field(1.0e6, description="CAR-T cells per kg body weight.")
    targets: list[str] = Field(
        default_factory=lambda: ["CD19"], min_length=1, description="Target markers."
    )
    kill_rate_per_day: NonNeg = Field(
        15.2,
        description="Rate at which a CAR-T cell kills one target neighbour (mean kills per "
        "day when targets are at hand).",
    )
    division_rate_per_day: NonNeg = Field(
        1.6, description="Division rate of a recently stimulated CAR-T cell (per day)."
    )
    stimulation_days: Pos = Field(
        1.5, description="How long a kill keeps a CAR-T cell stimulated (days)."
    )
    memory_fraction: Fraction = Field(
        0.03,
        description="Fraction of CAR-T daughters that join the persistent memory pool "
        "(fitted with anti_car_onset_days to the B-cell return day; oncology: 0.008).",
    )
    memory_lifespan_days: Pos = Field(
        313.0, description="Mean lifespan of memory CAR-T cells (days; half-life 217 d)."
    )
    memory_kill_factor: Fraction = Field(
        0.6, description="Kill rate of memory CAR-T cells relative to effectors."
    )
    anti_car_onset_days: NonNeg = Field(
        60.0,
        description="Days after the first infusion of a CAR against a marker at which host "
        "immunity against that CAR's binder (T cells and antibodies against its foreign "
        "parts) begins to clear the CAR-T cells that carry it.",
    )
    anti_car_rise_days: Pos = Field(
        30.0,
        description="Time constant (days) with which that immunity rises to its full "
        "clearance rate after its onset.",
    )
    anti_car_kill_rate_per_day: NonNeg = Field(
        0.2,
        description="Full clearance rate of CAR-T cells by host immunity against the CAR "
        "(per day; 0: none), with the host's CD4 T cells at their baseline (see "
        "`cd4.anti_car_follows_pool`). It lasts: CAR-T cells against the same marker infused again "
        "later are cleared at it; a CAR against other markers only (BCMA after CD19) meets "
        "none until its own onset.",
    )
    blood_kill_per_car_t_per_ul: NonNeg = Field(
        10.0,
        description="Kill rate of target-bearing cells in blood per day for each CAR-T cell "
        "per microlitre of blood: cells that cross the blood die there with probability "
        "rate*transit/(1+rate*transit) (see [blood]).",
    )
    anti_car_recall_factor: float = Field(
        10.0,
        ge=1.0,
        le=1000.0,
        description="Factor on that clearance rate once a CAR-T product carrying a binder "
        "the immunity already recognises is infused again: the recall response of its memory "
        "T cells and B cells (1: no recall).",
    )
    max_generations: int = Field(
        18,
        ge=0,
        le=63,
        description="Divisions after which a CAR-T lineage is exhausted and divides no more.",
    )


#: The keys of a CAR-T entry about the host's immunity against the CAR. They belong to the
#: binders the entry carries (one per target marker): CAR-T entries that share a target
#: share them; a product whose binders no other entry carries may have its own.
CAR_T_IMMUNITY: tuple[str, ...] = (
    "anti_car_onset_days",
    "anti_car_rise_days",
    "anti_car_kill_rate_per_day",
    "anti_car_recall_factor",
)
#: The keys of a CAR-T entry that every CAR-T infusion of a scenario shares: the cells'
#: kinetics (the cells of every infusion are one population with one set of rates).
CAR_T_KINETICS: tuple[str, ...] = tuple(
    k
    for k in CarT.model_fields
    if k not in ("type", "label", "day", "dose_per_kg", "targets", *CAR_T_IMMUNITY)
)


def sharing_binders(cars: list[Any], i: int) -> list[int]:
    """Indices (into ``cars``, CAR-T entries as models or dicts) of the entries linked to
    entry ``i`` by shared target markers, directly or through other entries (``i``
    included): the entries whose immunity keys (:data:`CAR_T_IMMUNITY`) must agree."""

    def targets(t: Any) -> set[str]:
        if isinstance(t, dict):
            default = CarT.model_fields["targets"].get_default(call_default_factory=True)
            names = t.get("targets", default)
        else:
            names = t.targets
        return {str(n).upper() for n in names} if isinstance(names, list) else set()

    linked, markers, grew = {i}, targets(cars[i]), True
    while grew:
        grew = False
        for j, t in enumerate(cars):
            if j not in linked and targets(t) & markers:
                linked.add(j)
                markers |= targets(t)
                grew = True
    return sorted(linked)


class AntiCD20(_Therapy):
    """An anti-CD20 antibody course (rituximab): depth differs between zones."""

    type: Literal["anti_cd20"] = Field(description="Kind of therapy entry.")
    days: list[float] = Field(min_length=1, max_length=MAX_DAYS, description="Infusion days.")
    dose_mg: Pos = Field(1000.0, description="Dose per infusion (mg).")
    half_life_days: Pos = Field(21.0, description="Drug half-life (days).")
    kill_rate_per_day: NonNeg = Field(
        1.5,
        description="Kill rate of CD20+ cells per day at 1000 mg of circulating drug, "
        "scaled by the zone efficacy.",
    )
    targets: list[str] = Field(
        default_factory=lambda: ["CD20"], min_length=1, description="Target markers."
    )
    marrow_efficacy: Fraction = Field(0.8, description="Relative depth in marrow.")
    lymphoid_efficacy: Fraction = Field(
        0.25, description="Relative depth in lymphoid tissue (incomplete)."
    )
    tissue_efficacy: Fraction = Field(1.0, description="Relative depth in tissue.")
    blood_kill_rate_per_day: NonNeg = Field(
        1000.0,
        description="Kill rate of CD20+ cells in blood per day at 1000 mg of circulating "
        "drug (opsonised cells cleared by the liver's macrophages; cells that cross the "
        "blood die there with probability rate*transit/(1+rate*transit)).",
    )


class Vaccination(_Therapy):
    """An antigen pulse for one vaccine antigen, spread over the lymphoid zone."""

    type: Literal["vaccination"] = Field(description="Kind of therapy entry.")
    day: float = Field(description="Day of vaccination.")
    antigen: str = Field(description="Vaccine antigen name (one of specificities.vaccines).")
    amount_per_site: Amount = Field(
        200.0, gt=0.0, description="Antigen units added per lymphoid site."
    )


class Trigger(_Therapy):
    """A flare trigger (an infection, sun exposure): autoantigen released in the target
    tissue on each of its days. Not a therapy, but an event of the patient's course."""

    type: Literal["trigger"] = Field(description="Kind of therapy entry.")
    days: list[float] = Field(min_length=1, max_length=MAX_DAYS, description="Days of the events.")
    autoantigen_per_site: Amount = Field(
        50.0,
        gt=0.0,
        description="Autoantigen units added per tissue site on each day (the untreated "
        "disease holds about 50).",
    )


class FlareTriggers(_Therapy):
    """Flare triggers met at random (infections, sun exposure): each patient meets them on
    days drawn from its seed, at a constant rate (a Poisson process) from ``start_day`` to
    ``stop_day``. A trigger lasts ``duration_days``, on each of which autoantigen is released
    in the target tissue as a ``trigger`` entry releases it. Runs with the same seed meet
    them on the same days, so two therapies given to one patient meet the same triggers."""

    type: Literal["flare_triggers"] = Field(description="Kind of therapy entry.")
    rate_per_year: float = Field(
        1.0, ge=0.0, le=52.0, description="Mean number of triggers per year (0: none)."
    )
    start_day: float = Field(
        0.0, description="First day on which a trigger may begin (day 0 = infusion)."
    )
    stop_day: float = Field(
        1.0e9, description="Day after which no trigger begins (the end of the run at most)."
    )
    duration_days: int = Field(
        3, ge=1, le=60, description="Days of autoantigen release of each trigger."
    )
    autoantigen_per_site: Amount = Field(
        50.0,
        gt=0.0,
        description="Autoantigen units added per tissue site on each day of a trigger (the "
        "untreated disease holds about 55-85 with the usual clearance).",
    )


class StandardOfCare(_Therapy):
    """Standard-of-care immunosuppression: lowers B-cell activation while it is given."""

    type: Literal["standard_of_care"] = Field(description="Kind of therapy entry.")
    start_day: float = Field(-1.0e9, description="First day of treatment.")
    stop_day: float = Field(1.0e9, description="Day the treatment stops (drug-free after).")
    activation_factor: Fraction = Field(
        0.7, description="Multiplier on B-cell activation while treated."
    )


#: The schemas of every kind of ``[[therapy]]`` entry: the built-in ones, then the
#: extensions'.
THERAPY_SCHEMAS: tuple[type[TherapyEntry], ...] = (
    Lymphodepletion,
    CarT,
    AntiCD20,
    Vaccination,
    Trigger,
    FlareTriggers,
    StandardOfCare,
    *(effect.schema for effect in extensions.declared("THERAPIES")),
)

if TYPE_CHECKING:
    # the built-in entries, as the type checker sees them (extensions add more at run time)
    Therapy = (
        Lymphodepletion | CarT | AntiCD20 | Vaccination | Trigger | FlareTriggers | StandardOfCare
    )
else:
    Therapy = Annotated[Union[THERAPY_SCHEMAS], Field(discriminator="type")]  # noqa: UP007


# --------------------------------------------------------------------------- the rest


class Initial(_Section):
    """Initial densities (cells per site of their home zone) before the run-in."""

    naive_b: Fraction = Field(0.35, description="Naive B cells per lymphoid site.")
    memory_b: Fraction = Field(0.06, description="Memory B cells per lymphoid site.")
    memory_self_fraction: Fraction = Field(
        0.25, description="Fraction of initial memory B cells that are autoreactive."
    )
    t_helper: Fraction = Field(0.20, description="T helpers per lymphoid site.")
    llpc: Fraction = Field(0.95, description="Long-lived plasma cells per marrow niche.")
    llpc_self_fraction: Fraction = Field(
        0.02, description="Fraction of initial LLPCs that are autoreactive."
    )
    llpc_vaccine_fraction: Fraction = Field(
        0.5, description="Fraction of initial LLPCs specific for the vaccines (split evenly)."
    )
    memory_autoantibody_fraction: Fraction = Field(
        0.05,
        description="Fraction of initial memory B cells specific for each further "
        "autoantibody (`specificities.autoantibodies`).",
    )
    llpc_autoantibody_fraction: Fraction = Field(
        0.015,
        description="Fraction of initial LLPCs specific for each further autoantibody: "
        "the long-lived-plasma-cell share of that autoantibody, which CD19-directed "
        "therapy leaves and BCMA-directed therapy removes.",
    )
    autoantigen: Amount = Field(50.0, description="Autoantigen units per tissue site.")
    damage: Amount = Field(
        100.0,
        description="Tissue damage units per tissue site (an active disease to start "
        "from; the run-in takes it to its steady state).",
    )


def _layer_keys() -> dict[str, tuple[Any, Any]]:
    extra: dict[str, tuple[Any, Any]] = {}
    for layer in LAYERS:
        for key, default in layer.defaults.items():
            kind = Pos if key.endswith("_half_life_days") else NonNeg
            extra[key] = (kind, Field(default, description=f"{layer.name}: {key}."))
    return extra


def _initial_keys() -> dict[str, tuple[Any, Any]]:
    return {
        k.name: (Fraction, Field(k.initial[1], description=f"{k.label} per {k.initial[0]} site."))
        for k in KINDS
        if k.initial is not None
    }


if TYPE_CHECKING:
    MoleculesTable = Molecules
    InitialTable = Initial
else:
    #: ``[molecules]`` with the keys of the extensions' layers.
    MoleculesTable = _extended(Molecules, _layer_keys())
    #: ``[initial]`` with the densities of the extensions' kinds.
    InitialTable = _extended(Initial, _initial_keys())


def _check_layer_keys() -> None:
    keys = MoleculesTable.model_fields
    for layer in LAYERS:
        for key in (layer.half_life, *(k for _, k in layer.secreted_by)):
            if key not in keys:
                raise ValueError(
                    f"molecular layer {layer.name!r} names [molecules] key {key!r}, which is "
                    "neither in the schema nor in its defaults"
                )
        for kind, _ in layer.secreted_by:
            if kind not in {k.name for k in KINDS}:
                raise ValueError(f"molecular layer {layer.name!r}: no cell kind {kind!r}")


_check_layer_keys()


class Scale(_Section):
    """How agents relate to a patient: used for dosing and clinical units."""

    weight_kg: Pos = Field(70.0, description="Body weight (kg).")
    body_cells: Pos = Field(
        4.0e10, description="Body lymphocytes the whole lattice stands for (cells)."
    )
    blood_volume_ul: Pos = Field(5.0e6, description="Blood volume (microlitres).")

    @model_validator(mode="before")
    @classmethod
    def _no_blood_fraction(cls, data: Any) -> Any:
        if isinstance(data, dict) and "blood_fraction" in data:
            raise ValueError(
                "blood_fraction is no longer a key: the cells in blood follow from each "
                "kind's blood_egress_per_day and blood_egress_away_per_day ([cells.<kind>]) "
                "and from [blood] transit_hours"
            )
        return data


class Blood(_Section):
    """Blood: cells cross it between zones, in quasi-steady state with the lattice (each
    passage is much shorter than a step; see ``immunesim.model.blood``). Sets the blood
    counts (``b_cells_per_ul``, ``cd4_per_ul``, ``car_t_per_ul``) and the kill in transit of
    a therapy that acts in blood (anti-CD20's ``blood_kill_rate_per_day``, CAR-T's
    ``blood_kill_per_car_t_per_ul``)."""

    transit_hours: Pos = Field(
        0.5, description="Mean time a cell spends in blood on one passage (hours)."
    )


class Cd4(_Section):
    """The body's CD4 T cells outside the follicles, as CD4 T cells per microlitre of blood
    (see ``immunesim.model.cd4``): a pool that a lymphodepletion whose targets CD4 T cells
    bear cuts by its kill fraction on each day of its course, and that grows back toward its
    baseline by thymic output and homeostatic proliferation,
    ``dP/dt = (thymic + homeostatic_rate * P) * (1 - P / baseline)``. It is the
    ``cd4_per_ul`` output; T-helper production in the follicles follows it
    (``help_follows_pool``), and so does host immunity against the CAR
    (``anti_car_follows_pool``)."""

    baseline_per_ul: Pos = Field(
        840.0,
        description="CD4 T cells per microlitre of blood before therapy (normal adult "
        "reference range).",
    )
    homeostatic_rate_per_day: NonNeg = Field(
        0.02,
        description="Rate at which the CD4 T cells left after a depletion multiply back "
        "toward the baseline (per day, at a low count).",
    )
    thymic_per_ul_per_day: NonNeg = Field(
        0.1,
        description="New CD4 T cells from the thymus, per microlitre of blood per day, when "
        "the pool is empty (falls to 0 at the baseline).",
    )
    help_follows_pool: Fraction = Field(
        1.0,
        description="How far T-helper production in the follicles follows the pool: the "
        "T helpers' target density is scaled by 1 - f + f * pool / baseline (0: follicular "
        "helpers come back at their own rate whatever the pool).",
    )
    anti_car_follows_pool: Fraction = Field(
        1.0,
        description="How far host immunity against the CAR follows the pool: its clearance "
        "rate (`anti_car_kill_rate_per_day` of each CAR-T entry) is scaled by "
        "1 - f + f * pool / baseline. The host's T cells make that immunity (and help the "
        "B cells that make antibodies against the CAR), so while lymphodepletion holds them "
        "low it is weak, and a patient whose CD4 T cells come back sooner clears the CAR-T "
        "sooner (0: the immunity keeps its own course whatever the pool). Its recall by a "
        "later infusion of the same binder does not follow the pool.",
    )


def _grade_cutoffs(default: tuple[float, float, float], description: str) -> Any:
    """A field of the three ascending values at which a graded endpoint reaches grades 1-3."""
    return Field(
        default_factory=lambda: list(default),
        min_length=3,
        max_length=3,
        description=description,
    )


class Endpoints(_Section):
    """Thresholds that turn the time series into clinical endpoints."""

    baseline_day: float = Field(
        -7.0, description="Day whose values are the baseline (before any therapy)."
    )
    depletion_fraction: Fraction = Field(
        0.01, description="B cells below this fraction of baseline count as depleted."
    )
    reconstitution_fraction: Fraction = Field(
        0.05, description="B cells back above this fraction of baseline count as returned."
    )
    seronegative_fraction: Fraction = Field(
        0.2,
        description="An autoantibody (anti-dsDNA or a further one) below this fraction of "
        "its baseline is seronegative.",
    )
    score_damage_half: Pos = Field(
        100.0,
        description="Tissue damage (mean per tissue site) at which organ involvement "
        "reaches half of its 12 points in the disease score.",
    )
    response_points: Pos = Field(
        4.0,
        description="Fall of the disease score below its baseline that counts as a clinical "
        "response (SRI-4 style: at least 4 points).",
    )
    remission_score: NonNeg = Field(
        4.0,
        description="Disease score at or below which a patient is in remission "
        "(SLEDAI-like scale, baseline disease near 16).",
    )
    relapse_min_days: NonNeg = Field(
        7.0,
        description="Days the disease score must stay above `remission_score` for a relapse "
        "(and back within `response_points` of its baseline for a lost response): the "
        "relapse day is the first day of the first such stretch after remission (a stretch "
        "cut short by the end of the run counts only if it lasted this long). A flare a "
        "clinic records is confirmed at a visit; a score above the threshold for a day or "
        "two (a flare trigger's pulse, an antibody crossing its cut-off) is not one. 0 "
        "counts any day above the threshold.",
    )
    car_t_detection_per_ul: Pos = Field(
        1.0,
        description="Detection limit of CAR-T cells in blood (cells per microlitre; flow "
        "cytometry): CAR-T count as detected while car_t_per_ul is at least this.",
    )
    cd4_recovered_per_ul: Pos = Field(
        200.0,
        description="CD4 T cells per microlitre of blood at or above which they count as "
        "recovered after their lowest count (cd4_recovery_day; below 200/uL prophylaxis "
        "against opportunistic infections is usual).",
    )
    crs_grade_by: Literal["car_t", "cytokine"] = Field(
        "car_t",
        description="What grades the CRS proxy: `car_t`, the peak of CAR-T cells per "
        "microlitre of blood over days 0-28 against `crs_grade_car_t_per_ul` (CRS comes "
        "with CAR-T expansion; docs/model.md), or `cytokine`, the rise of the tissue "
        "cytokine from CAR-T kills against `crs_grade_cytokine`. Both values are written "
        "whichever grades.",
    )
    crs_grade_car_t_per_ul: list[NonNeg] = _grade_cutoffs(
        (14.4, 29.3, 144.0),
        "Peak CAR-T cells per microlitre of blood (days 0-28) at which the CRS "
        "proxy reaches grades 1, 2 and 3. Grades 1 and 2 are fitted to the Erlangen series "
        "after CD19 CAR-T (CRS in 11 of 15 patients, grade 2 in 1; "
        "scripts/fit_crs_cutoff.py); grade 3 is an assumption, ten times grade 1 (no lupus "
        "patient had it).",
    )
    crs_grade_cytokine: list[NonNeg] = _grade_cutoffs(
        (0.41, 3.0, 10.0),
        "Rise of the cytokine level over its baseline (units per tissue site, "
        "peak of days 0-28) at which the CRS proxy reaches grades 1, 2 and 3 when "
        "`crs_grade_by` is `cytokine`: an absolute scale, so the same CAR-T burst gets the "
        "same grade whatever the disease's own cytokine. Grade 1 is fitted to CRS in 11 of "
        "15 patients after CD19 CAR-T; grades 2 and 3 are assumptions.",
    )

    @model_validator(mode="after")
    def _ascending(self) -> Endpoints:
        for key in ("crs_grade_car_t_per_ul", "crs_grade_cytokine"):
            g = getattr(self, key)
            if not g[0] <= g[1] <= g[2]:
                raise _KeyedError(f"endpoints.{key}", f"ascending values (got {g})")
        return self


class Output(_Section):
    """What a run writes."""

    parquet: bool = Field(True, description="Also write timeseries.parquet.")
    snapshot_every_hours: NonNeg = Field(
        0.0,
        description="Record a lattice snapshot (for `immunesim animate`) this often "
        "(hours); 0: no snapshots.",
    )
    snapshot_from_day: float = Field(
        -30.0, description="First day with snapshots (day 0 = infusion)."
    )


class Variability(_Section):
    """Inter-patient variability of one scenario value (virtual patients).

    Each patient of a cohort draws the value at ``key`` from the distribution: ``lognormal``
    (``median``, ``sigma`` of the log), ``normal`` (``mean``, ``sd``, truncated at 0) or
    ``uniform`` (``low``, ``high``).
    """

    key: str = Field(description="Dotted key path of a numeric scenario value.")
    distribution: Literal["lognormal", "normal", "uniform"] = Field(
        description="Distribution of the value across patients."
    )
    median: Pos | None = Field(None, description="lognormal: median.")
    sigma: NonNeg | None = Field(
        None, le=5.0, description="lognormal: standard deviation of log (at most 5)."
    )
    mean: float | None = Field(None, description="normal: mean.")
    sd: NonNeg | None = Field(None, description="normal: standard deviation.")
    low: float | None = Field(None, description="uniform: lower bound.")
    high: float | None = Field(None, description="uniform: upper bound.")

    @model_validator(mode="after")
    def _parameters(self) -> Variability:
        need = {
            "lognormal": ("median", "sigma"),
            "normal": ("mean", "sd"),
            "uniform": ("low", "high"),
        }[self.distribution]
        missing = [n for n in need if getattr(self, n) is None]
        if missing:
            raise ValueError(f"a {self.distribution} distribution needs {' and '.join(need)}")
        if (
            self.distribution == "uniform"
            and self.low is not None
            and self.high is not None
            and self.high < self.low
        ):
            raise ValueError("uniform needs low <= high")
        return self


class RunSettings(_Section):
    """Defaults for a run; the command line overrides them."""

    seed: int = Field(1, ge=0, lt=2**63, description="Random seed.")
    backend: Literal["auto", "numba", "cuda"] = Field(
        "auto",
        description="Execution backend: auto takes a GPU (cuda) when there is one, "
        "else the CPU (numba).",
    )


class Scenario(_Section):
    """A complete scenario: everything a run needs besides the seed and the backend."""

    schema_version: int = Field(SCHEMA_VERSION, description="Scenario schema version.")
    name: str = Field("scenario", description="Short name used in outputs.")
    description: str = Field("", description="What the scenario encodes.")
    lattice: Lattice = Field(default_factory=Lattice)
    time: Time = Field(default_factory=Time)
    specificities: Specificities = Field(default_factory=Specificities)
    cells: Cells = Field(default_factory=Cells)
    production: Production = Field(default_factory=Production)
    activation: Activation = Field(default_factory=Activation)
    molecules: MoleculesTable = Field(default_factory=MoleculesTable)
    therapy: list[Therapy] = Field(default_factory=list, description="Therapy schedule.")
    initial: InitialTable = Field(default_factory=InitialTable)
    scale: Scale = Field(default_factory=Scale)
    blood: Blood = Field(default_factory=Blood)
    cd4: Cd4 = Field(default_factory=Cd4)
    endpoints: Endpoints = Field(default_factory=Endpoints)
    output: Output = Field(default_factory=Output)
    run: RunSettings = Field(default_factory=RunSettings)
    variability: list[Variability] = Field(
        default_factory=list,
        description="Inter-patient variability for cohorts of virtual patients.",
    )

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            hint = f" ({SCHEMA_CHANGES[v]})" if v in SCHEMA_CHANGES else ""
            raise ValueError(f"this immunesim reads schema_version {SCHEMA_VERSION}, not {v}{hint}")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        for i, t in enumerate(self.therapy):
            for field in ("targets",):
                names = getattr(t, field, None)
                if names is None:
                    continue
                for j, name in enumerate(names):
                    if name.upper() not in MARKER_NAMES:
                        raise _KeyedError(
                            f"therapy.{i}.targets.{j}",
                            f"a marker, one of {', '.join(MARKER_NAMES)} (got {name!r})",
                        )
            if isinstance(t, Vaccination) and t.antigen not in self.specificities.vaccines:
                raise _KeyedError(
                    f"therapy.{i}.antigen",
                    f"one of specificities.vaccines {self.specificities.vaccines} "
                    f"(got {t.antigen!r})",
                )
        cars = [(i, t) for i, t in enumerate(self.therapy) if isinstance(t, CarT)]
        entries = [c for _, c in cars]
        for k, (i, t) in enumerate(cars):
            # the cells' kinetics: one population; the immunity: one per binder
            for keys, j, why in (
                (CAR_T_KINETICS, 0, "CAR-T infusions may differ in day, dose, targets and "
                 "label, but share their kinetics"),
                (CAR_T_IMMUNITY, sharing_binders(entries, k)[0], "CAR-T entries that share a "
                 "target (a binder, directly or through other entries) share the host's "
                 "immunity against it"),
            ):  # fmt: skip
                first_i, first = cars[j]
                for key in keys if j != k else ():
                    if getattr(t, key) != getattr(first, key):
                        raise _KeyedError(
                            f"therapy.{i}.{key}",
                            f"the value of therapy.{first_i}.{key} "
                            f"({getattr(first, key)!r}): {why}",
                        )
        for i, v in enumerate(self.variability):
            node: Any = self
            info = None
            for part in v.key.split("."):
                if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                elif isinstance(node, BaseModel) and part in type(node).model_fields:
                    info = type(node).model_fields[part]
                    node = getattr(node, part)
                else:
                    node = None
                    break
            if isinstance(node, bool) or not isinstance(node, (int, float)):
                raise _KeyedError(
                    f"variability.{i}.key",
                    f"the key path of a numeric scenario value (got {v.key!r})",
                )
            _check_support(i, v, info)
        self._check_schedule()
        self._check_per_step_fractions()
        if self.time.sample_every_hours < self.time.dt_hours:
            raise _KeyedError("time.sample_every_hours", "at least time.dt_hours")
        return self

    def _check_schedule(self) -> None:
        """Every therapy acts inside the simulated window, and every infusion puts CAR-T
        agents on the lattice."""
        first = -self.time.run_in_days
        last = self.time.follow_up_days
        window = (
            f"a day inside the simulated window [{first:g}, {last:g}] (lengthen "
            "time.run_in_days or time.follow_up_days to reach it)"
        )
        for i, t in enumerate(self.therapy):
            days: list[tuple[str, float]] = []
            if isinstance(t, (Lymphodepletion, AntiCD20, Trigger)):
                days = [(f"days.{j}", d) for j, d in enumerate(t.days)]
            elif isinstance(t, (CarT, Vaccination)):
                days = [("day", t.day)]
            elif isinstance(t, FlareTriggers):
                days = [("start_day", t.start_day)]
            for key, d in days:
                # days far outside the window (1e308) are refused before a step count would
                # overflow
                if (
                    not first - 1 <= d <= last + 1
                    or not 0 <= self.step_of_day(d) <= self.total_steps
                ):
                    raise _KeyedError(f"therapy.{i}.{key}", f"{window} (got {d:g})")
            if isinstance(t, (StandardOfCare, FlareTriggers)) and t.start_day >= t.stop_day:
                raise _KeyedError(
                    f"therapy.{i}.stop_day",
                    f"a day after start_day {t.start_day:g} (got {t.stop_day:g})",
                )
            if isinstance(t, CarT):
                sites = self.lattice.size**2
                agents = self.car_t_agents(t)
                if agents > sites:
                    raise _KeyedError(
                        f"therapy.{i}.dose_per_kg",
                        f"a dose that fits on the lattice: {t.dose_per_kg:g}/kg gives "
                        f"{agents:.3g} CAR-T agents for {sites} sites",
                    )
                if t.dose_per_kg <= 0:
                    raise _KeyedError(f"therapy.{i}.dose_per_kg", "a dose above 0 cells/kg")
                if agents < MIN_CAR_T_AGENTS - 0.5:  # the infusion rounds to whole agents
                    need = math.sqrt(
                        (MIN_CAR_T_AGENTS - 0.5)
                        * self.scale.body_cells
                        / (t.dose_per_kg * self.scale.weight_kg)
                    )
                    z = self.lattice.zones
                    unit = z.unit_sites if z.layout == "bands" else 1
                    if not math.isfinite(need):  # a vanishing dose
                        raise _KeyedError(
                            f"therapy.{i}.dose_per_kg",
                            f"a dose that puts at least {MIN_CAR_T_AGENTS} CAR-T agent on "
                            f"the lattice (got {t.dose_per_kg:g}/kg)",
                        )
                    need = math.ceil(need / unit) * unit  # whole anatomical units
                    raise _KeyedError(
                        f"therapy.{i}.dose_per_kg",
                        f"a dose that puts at least {MIN_CAR_T_AGENTS} CAR-T agent on this "
                        f"lattice: {t.dose_per_kg:g}/kg gives {agents:.2g} at lattice.size "
                        f"{self.lattice.size} (a lattice of size {need} or a larger dose would "
                        "give one)",
                    )

    def _check_per_step_fractions(self) -> None:
        """Linear rates applied as fractions per step stay at most 1."""
        per_step = self.time.dt_hours / 24.0
        m = self.molecules
        for key in ("damage_per_complex", "autoantigen_release_per_damage", "cytokine_per_damage"):
            if getattr(m, key) * per_step > 1.0:
                raise _KeyedError(
                    f"molecules.{key}",
                    f"at most {1 / per_step:g} per day (a fraction per step of at most 1 at "
                    f"dt_hours = {self.time.dt_hours:g}); got {getattr(m, key):g}",
                )

    def car_t_agents(self, t: CarT) -> float:
        """CAR-T agents an infusion puts on this lattice (before rounding): the dose per
        kg through the patient's weight and the cells the lattice stands for."""
        return t.dose_per_kg * self.scale.weight_kg * self.lattice.size**2 / self.scale.body_cells

    def work(self) -> float:
        """Site-steps of a run (lattice sites x steps): what :data:`WORK_BUDGET` bounds."""
        return float(self.lattice.size) ** 2 * self.total_steps

    # Derived quantities used throughout -----------------------------------------------
    @property
    def steps_per_day(self) -> float:
        return 24.0 / self.time.dt_hours

    @property
    def run_in_steps(self) -> int:
        return int(round(self.time.run_in_days * self.steps_per_day))

    @property
    def total_steps(self) -> int:
        return self.run_in_steps + int(round(self.time.follow_up_days * self.steps_per_day))

    def day_of_step(self, step: int) -> float:
        """Day of a step (day 0 is the end of the run-in)."""
        return (step - self.run_in_steps) * self.time.dt_hours / 24.0

    def step_of_day(self, day: float) -> int:
        """First step at or after ``day``."""
        return self.run_in_steps + int(math.ceil(day * self.steps_per_day - 1e-9))


def _bounds(info: Any) -> tuple[float, float, bool]:
    """``(low, high, integer)`` of a field: the values it accepts."""
    low, high = -math.inf, math.inf
    for m in getattr(info, "metadata", []):
        for attr in ("ge", "gt"):
            if getattr(m, attr, None) is not None:
                low = max(low, float(getattr(m, attr)))
        for attr in ("le", "lt"):
            if getattr(m, attr, None) is not None:
                high = min(high, float(getattr(m, attr)))
    return low, high, getattr(info, "annotation", None) is int


def _check_support(i: int, v: Variability, info: Any) -> None:
    """A variability entry draws only values its field accepts (checked at validation, not
    when a cohort has already started)."""
    low, high, integer = _bounds(info)
    if integer:
        raise _KeyedError(f"variability.{i}.key", f"a real-valued key ({v.key} is an integer)")
    if v.distribution == "uniform":
        lo, hi = v.low, v.high
    elif v.distribution == "lognormal":  # all but a 1e-9 tail: 6 standard deviations
        lo = v.median * math.exp(-6.0 * v.sigma)  # type: ignore[operator]
        hi = v.median * math.exp(6.0 * v.sigma)  # type: ignore[operator]
    else:  # normal, truncated at 0
        lo = max(0.0, v.mean - 6.0 * v.sd)  # type: ignore[operator]
        hi = v.mean + 6.0 * v.sd  # type: ignore[operator]
    if lo is None or hi is None or lo < low or hi > high:
        raise _KeyedError(
            f"variability.{i}",
            f"draws that {v.key} accepts ([{low:g}, {high:g}]): this {v.distribution} "
            f"draws from {lo:g} to {hi:g} (all but a 1e-9 tail)",
        )


class _KeyedError(ValueError):
    """A validation error that knows its own key path (raised by cross-field checks)."""

    def __init__(self, key: str, expected: str):
        self.key = key
        self.expected = expected
        super().__init__(expected)


# --------------------------------------------------------------------------- loading


def bytes_per_site(n_vaccines: int, n_autoantibodies: int = 0) -> float:
    """Bytes per lattice site the engine allocates on the CPU at most (a cell slot, the site
    arrays and the molecular layers); used to refuse lattices that cannot fit in memory."""
    return fields.bytes_per_site(layers.n_layers(n_vaccines, n_autoantibodies))


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def memory_limits() -> dict[str, int]:
    """Bytes this process can still allocate, by what limits it: the machine's available
    memory, the cgroup's memory limit (containers, batch schedulers) and the address-space
    limit (``ulimit -v``); those that do not apply are left out."""
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                out["available memory"] = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if "available memory" not in out:
        try:
            out["physical memory"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
            pass
    v1 = "/sys/fs/cgroup/memory/memory."
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        (v1 + "limit_in_bytes", v1 + "usage_in_bytes"),  # cgroup v1
    ):
        cap = _read_int(limit)
        if cap is not None and cap < 1 << 60:
            out["cgroup memory limit"] = max(0, cap - (_read_int(usage) or 0))
            break
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            used = (_read_int_field("/proc/self/statm", 0) or 0) * os.sysconf("SC_PAGE_SIZE")
            out["address-space limit (ulimit -v)"] = max(0, soft - used)
    except (ImportError, ValueError, OSError):  # pragma: no cover - not on POSIX
        pass
    return out


def _read_int_field(path: str, index: int) -> int | None:
    try:
        return int(Path(path).read_text().split()[index])
    except (OSError, ValueError, IndexError):
        return None


def _available_memory() -> int:
    """The least of :func:`memory_limits` (bytes)."""
    return min(memory_limits().values(), default=1 << 40)


def _loc_to_key(loc: tuple[Any, ...]) -> str:
    # pydantic puts the tag of a [[therapy]] entry after its index: therapy.1.car_t.day.
    parts = [
        str(p)
        for i, p in enumerate(loc)
        if not (
            p in _UNION_TAGS and i >= 2 and loc[i - 2] == "therapy" and isinstance(loc[i - 1], int)
        )
    ]
    return ".".join(parts)


#: The ``type`` tag of every kind of therapy entry.
THERAPY_TYPES = frozenset(
    get_args(cls.model_fields["type"].annotation)[0] for cls in THERAPY_SCHEMAS
)
_UNION_TAGS = THERAPY_TYPES


def _describe(err: Mapping[str, Any]) -> str:
    typ = err.get("type", "")
    msg = err.get("msg", "invalid value")
    got = err.get("input")
    if typ == "extra_forbidden":
        return "unknown key (not part of the scenario schema; check the spelling)"
    if typ == "missing":
        return "required key is missing"
    if isinstance(got, (dict, list)):
        return msg
    return f"{msg} (got {got!r})"


def _validate(data: dict[str, Any], file: str) -> Scenario:
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx = err.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, _KeyedError):
            raise ScenarioError(file, inner.key, inner.expected) from None
        raise ScenarioError(file, _loc_to_key(err["loc"]), _describe(err)) from None
    except _KeyedError as exc:  # pragma: no cover - pydantic wraps these
        raise ScenarioError(file, exc.key, exc.expected) from None
    sp = scenario.specificities
    need = scenario.lattice.size**2 * bytes_per_site(len(sp.vaccines), len(sp.autoantibodies))
    have = _available_memory()
    if need > 0.8 * have:
        raise ScenarioError(
            file,
            "lattice.size",
            f"a lattice that fits in memory: {scenario.lattice.size}^2 sites need about "
            f"{need / 2**30:.1f} GiB, and this process can use {have / 2**30:.1f} GiB "
            "(the least of available memory, the cgroup limit and ulimit -v)",
        )
    return scenario


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``key.path=value`` into its key path and a TOML-typed value.

    ``value`` is read as a TOML value (numbers, booleans, strings in quotes, arrays); a bare
    word that is not valid TOML is taken as a string.

    Raises:
        ScenarioError: if there is no ``=`` or no key.
    """
    if "=" not in text:
        raise ScenarioError("--set", text, "key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ScenarioError("--set", text, "a key path before '='")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        value = raw.strip()
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str], file: str) -> dict[str, Any]:
    """Apply ``--set key.path=value`` overrides to raw scenario data (in place; returned)."""
    for text in overrides:
        path, value = parse_override(text)
        node: Any = data
        for i, part in enumerate(path[:-1]):
            key_so_far = ".".join(path[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ScenarioError(
                        file, key_so_far, f"an index below {len(node)} (from --set {text})"
                    )
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, (dict, list)):
                    raise ScenarioError(file, key_so_far, f"a table (from --set {text})")
        last = path[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ScenarioError(file, ".".join(path), f"an index below {len(node)}")
            node[int(last)] = value
        else:
            node[last] = value
    return data


def check_budget(s: Scenario, force: bool = False, file: str = "") -> None:
    """Refuse a run whose work (:meth:`Scenario.work`) exceeds :data:`WORK_BUDGET`, unless
    ``force``.

    Raises:
        ScenarioError: naming the run's size and how to go beyond the budget.
    """
    if force or s.work() <= WORK_BUDGET:
        return
    raise ScenarioError(
        file or f"<scenario {s.name}>",
        "time",
        f"a run within the budget of {WORK_BUDGET:.0e} site-steps: {s.total_steps} steps on "
        f"{s.lattice.size}^2 sites are {s.work():.1e} (hours to days of computing); pass "
        "--force (force=True) to run it anyway",
    )


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML file (UTF-8, a byte-order mark allowed), turning every failure into a
    :class:`ScenarioError`. Only regular files are read (a FIFO or a device would block or
    never end)."""
    p = Path(path)
    if not p.exists():
        raise ScenarioError(p, "", "file not found")
    if p.is_dir():
        raise ScenarioError(p, "", "a TOML file, not a directory")
    if not p.is_file():
        raise ScenarioError(p, "", "a regular file (this is a pipe, socket or device)")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ScenarioError(p, "", "a UTF-8 text file in TOML format") from None
    except OSError as exc:
        raise ScenarioError(p, "", f"a readable file ({exc.strerror})") from None
    if not text.strip():
        raise ScenarioError(p, "", "a TOML scenario, but the file is empty")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(p, "", f"valid TOML ({exc})") from None
    except RecursionError:
        raise ScenarioError(
            p, "", "TOML nested less deeply (arrays or tables in hundreds of levels)"
        ) from None


def _share_car_kinetics(data: dict[str, Any], overrides: list[str]) -> None:
    """An override of a kinetics key of a CAR-T entry (``--set``, a sweep's value or a
    patient's drawn value) sets it in every CAR-T entry: the infusions share their kinetics
    (:data:`CAR_T_KINETICS`), so the override means the one population's value. An override
    of an immunity key (:data:`CAR_T_IMMUNITY`) sets it in the entries that share a binder
    with that entry (:func:`sharing_binders`)."""
    therapy = data.get("therapy")
    if not isinstance(therapy, list):
        return
    cars = [t for t in therapy if isinstance(t, dict) and t.get("type") == "car_t"]
    for text in overrides:
        parts = text.partition("=")[0].strip().split(".")
        if len(parts) != 3 or parts[0] != "therapy" or not parts[1].isdigit():
            continue
        i, key = int(parts[1]), parts[2]
        k = next((k for k, t in enumerate(cars) if i < len(therapy) and therapy[i] is t), None)
        if k is None:
            continue
        if key in CAR_T_KINETICS:
            for t in cars:
                t[key] = therapy[i][key]
        elif key in CAR_T_IMMUNITY:
            for j in sharing_binders(cars, k):
                cars[j][key] = therapy[i][key]


def load_scenario(
    source: str | os.PathLike[str] | dict[str, Any] | Scenario,
    overrides: list[str] | None = None,
) -> Scenario:
    """Load and validate a scenario.

    Args:
        source: path to a TOML file, a dict of raw values, or a :class:`Scenario`.
        overrides: ``key.path=value`` strings applied before validation.

    Raises:
        ScenarioError: naming the file, the key path and what was expected.
    """
    if isinstance(source, Scenario):
        if not overrides:
            return source
        data = source.model_dump(mode="python")
        file = f"<scenario {source.name}>"
    elif isinstance(source, dict):
        data, file = copy.deepcopy(source), "<dict>"
    else:
        data, file = read_toml(source), str(source)
    if overrides:
        data = apply_overrides(data, overrides, file)
        _share_car_kinetics(data, overrides)
    scenario = _validate(data, file)
    if scenario.lattice.zones.layout == "file" and not isinstance(source, (dict, Scenario)):
        zfile = Path(scenario.lattice.zones.file or "")
        if not zfile.is_absolute():
            scenario.lattice.zones.file = str(Path(source).parent / zfile)
    return scenario


def targets_mask(names: list[str]) -> int:
    """Marker mask of a therapy's target list."""
    return marker_mask(names)

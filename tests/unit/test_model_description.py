"""The model description and what is derived from it stay consistent."""

from __future__ import annotations

import numpy as np

from immunesim.engine.therapies import EFFECTS
from immunesim.model import cells, fields, layers
from immunesim.model.cells import KINDS, Kind, Marker, specificity_names
from immunesim.scenario import THERAPY_TYPES, Scenario, bytes_per_site
from immunesim.state import allocate


def test_every_therapy_type_of_the_schema_has_an_effect_and_no_effect_lacks_a_schema():
    assert set(EFFECTS) == set(THERAPY_TYPES)


def test_kind_codes_names_and_markers_follow_the_declaration():
    for code, kind in enumerate(KINDS):
        assert Kind[kind.name.upper()] == code
        assert cells.KIND_NAMES[code] == kind.name
        bits = sum(1 << Marker[m] for m in kind.markers)
        assert cells.MARKERS[code] == bits
    # the table of DESIGN section 2: CD19 on the B lineage up to plasmablasts, not on LLPC
    assert set(cells.kinds_bearing("CD19")) == {
        Kind.NAIVE_B,
        Kind.ACTIVATED_B,
        Kind.MEMORY_B,
        Kind.PLASMABLAST,
    }
    # BCMA from the germinal centre on; naive and memory B cells lack it
    assert set(cells.kinds_bearing("BCMA")) == {Kind.ACTIVATED_B, Kind.PLASMABLAST, Kind.LLPC}


def test_every_kind_has_scenario_parameters():
    assert set(Scenario().cells.model_dump()) == set(cells.KIND_NAMES)


def test_snapshot_categories_give_every_kind_its_colour_and_one_autoreactive_category():
    assert cells.CATEGORIES[0] == "empty"
    assert len(cells.CATEGORIES) == len(cells.PALETTE) == len(KINDS) + 2
    for code, kind in enumerate(KINDS):
        assert cells.CATEGORIES[cells.KIND_CATEGORY[code]] == kind.label
        assert tuple(cells.PALETTE[cells.KIND_CATEGORY[code]]) == kind.colour
    assert cells.CATEGORIES[cells.AUTOREACTIVE_CATEGORY] == "autoreactive B"
    assert len({tuple(c) for c in cells.PALETTE[1:]}) == len(cells.PALETTE) - 1  # distinct


def test_state_is_allocated_from_the_field_table_and_the_estimate_counts_it():
    L, n_layers = 10, layers.n_layers(2)
    zone = np.zeros((L, L), np.uint8)
    st = allocate(L, n_layers, zone, zone, np.full((3, L * L), -1, np.int8))
    for f in fields.CELL_FIELDS:
        a = getattr(st.cells, f.name)
        assert a.dtype == f.dtype and a.shape == (L * L,) and (a == f.fill).all()
    for f in fields.SITE_FIELDS:
        assert getattr(st.sites, f.name).dtype == f.dtype
    assert st.mol.shape == (n_layers, L * L)
    per_site = (st.nbytes() - st.ledger.nbytes - st.sites.saturated.nbytes) / (L * L)
    assert per_site == bytes_per_site(2)


def test_layer_rows_follow_the_declaration():
    rows = layers.Layers(("self", "tetanus", "measles", "other"))
    assert rows.names() == [
        "antibody_self",
        "antibody_tetanus",
        "antibody_measles",
        "antibody_other",
        "autoantigen",
        "antigen_tetanus",
        "antigen_measles",
        "immune_complex",
        "damage",
        "cytokine",
    ]
    assert rows.vaccine_antigen(1) == rows.index("antigen_measles")
    assert rows.n_layers == layers.n_layers(2) == 10


def test_further_autoantibodies_get_antibody_rows_but_no_antigen_rows():
    rows = layers.Layers(specificity_names(["tetanus"], ["sm", "ro60"]), 3)
    assert rows.spec_names == ("self", "sm", "ro60", "tetanus", "other")
    assert rows.autoantibodies == ("sm", "ro60") and rows.vaccines == ("tetanus",)
    names = rows.names()
    assert names[:5] == [f"antibody_{s}" for s in rows.spec_names]
    assert "antigen_tetanus" in names and not any(n.startswith("antigen_s") for n in names)
    assert rows.vaccine_antigen(0) == rows.index("antigen_tetanus")
    assert rows.n_layers == layers.n_layers(1, 2) == layers.n_layers(1) + 2


def test_further_autoantibody_classes_see_the_autoantigen_and_hold_their_llpc_share():
    """B cells of anti-dsDNA read the autoantigen layer, those of a further autoantibody their
    share of it (vaccine classes their antigen); the initial LLPCs of a further autoantibody
    are its share of them (binomial: within 4 standard deviations)."""
    from immunesim.engine import Simulation
    from immunesim.kernels.contact import antigen_at
    from immunesim.model.params import MOL_SCALE

    share = 0.3
    s = Scenario.model_validate(
        {
            "lattice": {"size": 100},
            "specificities": {
                "autoantibodies": ["sm"],
                "vaccines": ["tetanus"],
                "autoantigen_share": 0.25,
            },
            "initial": {"llpc_autoantibody_fraction": share},
        }
    )
    sim = Simulation(s, seed=3)
    p = sim.params
    assert p.spec_names == ("self", "sm", "tetanus", "other")
    counts = sim.count_cells()[Kind.LLPC].sum(axis=1)  # per class
    n = counts.sum()
    assert abs(counts[1] - share * n) < 4 * np.sqrt(n * share * (1 - share))
    mol = np.zeros((p.layers.n_layers, 4), np.int32)
    mol[p.layers.autoantigen, 2] = 10 * MOL_SCALE
    mol[p.layers.vaccine_antigen(0), 2] = 3 * MOL_SCALE
    ip = p.k.ip
    assert antigen_at(0, 2, mol, ip) == 80  # in 1/8 units
    assert antigen_at(1, 2, mol, ip) == 20  # a quarter of it
    assert antigen_at(2, 2, mol, ip) == 24

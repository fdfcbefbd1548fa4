"""Snapshots and animation: colours match the cell map, writers give the frames asked for."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from PIL import Image

import immunesim
from immunesim.model.cells import Kind
from immunesim.viz.animate import PALETTE, ZONE_COLOURS, FrameRenderer, animate, cells_to_rgb
from immunesim.viz.snapshots import CATEGORIES, cell_map, list_frames
from tests.conftest import SCENARIOS, immunesim_cmd


def test_cell_map_categories():
    kind = np.array(
        [
            Kind.NAIVE_B,
            Kind.NAIVE_B,
            Kind.MEMORY_B,
            Kind.LLPC,
            Kind.CAR_T,
            Kind.T_HELPER,
            Kind.PLASMABLAST,
            Kind.ACTIVATED_B,
        ],
        np.int8,
    )
    spec = np.array([1, 0, 3, 0, 3, 3, 0, 0], np.int8)  # 0 = self
    x = np.arange(8, dtype=np.int32)
    y = np.zeros(8, np.int32)
    cells = cell_map(kind, spec, x, y, 8)
    names = [CATEGORIES[c] for c in cells[0]]
    # autoreactive B-lineage cells (naive, activated, memory) are shown as such; a
    # self-specific LLPC or plasmablast keeps its own category
    assert names == [
        "naive B",
        "autoreactive B",
        "memory B",
        "long-lived plasma cell",
        "CAR-T",
        "T helper",
        "plasmablast",
        "autoreactive B",
    ]
    assert cells[1:].sum() == 0


def test_cells_to_rgb_uses_palette_over_zone_backdrop():
    zones = np.array([[0, 1], [2, 2]], np.uint8)
    cells = np.array([[8, 0], [0, 2]], np.uint8)
    rgb = cells_to_rgb(cells, zones)
    assert tuple(rgb[0, 0]) == tuple(PALETTE[8])
    assert tuple(rgb[0, 1]) == tuple(ZONE_COLOURS[1])
    assert tuple(rgb[1, 0]) == tuple(ZONE_COLOURS[2])
    assert tuple(rgb[1, 1]) == tuple(PALETTE[2])


@pytest.fixture(scope="module")
def snap_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("snap") / "run"
    immunesim.run(
        SCENARIOS / "sle_cd19_cart.toml",
        seed=1,
        out=out,
        overrides=[
            "lattice.size=16",
            "lattice.zones.unit_um=160",
            "therapy.2.dose_per_kg=5e6",  # a few CAR-T agents on the small lattice
            "time.run_in_days=10",
            "time.follow_up_days=12",
            "output.snapshot_every_hours=24",
            "output.snapshot_from_day=-8",
        ],
    )
    return out


def test_snapshots_are_recorded_at_the_requested_interval(snap_run):
    paths = list_frames(snap_run)
    assert len(paths) == 21  # days -8 .. 12
    with np.load(paths[0]) as f:
        assert f["cells"].shape == (16, 16) and f["cells"].dtype == np.uint8
        assert float(f["day"]) == -8.0


def test_rendered_frame_colours_match_a_known_cell_map(snap_run):
    r = FrameRenderer(snap_run, width=640)
    L = 16
    cells = np.zeros((L, L), np.uint8)
    known = {(2, 3): 8, (5, 5): 2, (10, 12): 6, (14, 1): 1, (7, 9): 7}
    for (yy, xx), c in known.items():
        cells[yy, xx] = c
    frame = r.render(0.0, cells, np.zeros((L, L), np.float32))
    assert frame.shape == (360, 640, 3)
    zones = r.zones
    to_px = r.ax_lat.transData.transform
    for yy in range(L):
        for xx in range(L):
            px, py = to_px((xx, yy))
            pixel = tuple(frame[int(round(frame.shape[0] - py)), int(round(px))])
            want = PALETTE[cells[yy, xx]] if cells[yy, xx] else ZONE_COLOURS[zones[yy, xx]]
            assert pixel == tuple(want), (yy, xx, pixel, want)
    r.close()


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".html"])
def test_writers_give_the_requested_frames(snap_run, tmp_path, suffix):
    out = tmp_path / f"reset{suffix}"
    info = animate(snap_run, out, fps=5, width=480, first_day=-2, last_day=8, every=2)
    assert info["frames"] == 6  # days -2, 0, ..., 8
    w, h = info["size"]
    assert (w, h) == (480, 270)
    if suffix == ".mp4":
        import imageio_ffmpeg

        reader = imageio_ffmpeg.read_frames(str(out))
        meta = reader.__next__()
        assert tuple(meta["size"]) == (480, 270)
        assert sum(1 for _ in reader) == 6
    elif suffix == ".gif":
        with Image.open(out) as im:
            assert im.size == (480, 270) and im.n_frames == 6
    else:
        doc = out.read_text()
        assert len(re.findall(r'^"data:image/png;base64,', doc, flags=re.M)) == 6
        assert "http" not in doc and "<link" not in doc and 'src="' not in doc


def test_animate_cli_errors(snap_run, tmp_path):
    proc = subprocess.run(
        [*immunesim_cmd(), "animate", str(tmp_path), "--out", str(tmp_path / "a.mp4")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "snapshots" in proc.stderr
    proc = subprocess.run(
        [*immunesim_cmd(), "animate", str(snap_run), "--out", str(tmp_path / "a.avi")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and ".mp4, .gif or .html" in proc.stderr


def test_curves_are_drawn_up_to_the_frame_day_and_zeros_are_left_off_the_log_axis(snap_run):
    r = FrameRenderer(snap_run, width=640)
    L = r.zones.shape[0]
    blank = np.zeros((L, L), np.uint8), np.zeros((L, L), np.float32)
    r.render(2.0, *blank)
    for line, x, _ in r.curves:
        shown = np.asarray(line.get_xdata())
        assert shown.max() <= 2.0 + 1e-9 and shown.max() >= 1.0  # up to the cursor, no further
        assert np.asarray(x).max() > 2.0  # while the run goes on
    r.render(12.0, *blank)
    assert max(np.asarray(line.get_xdata()).max() for line, _, _ in r.curves) == 12.0
    car_t = r.ax_ts[0].lines[0]  # CAR-T: none before the infusion
    before = np.asarray(car_t.get_xdata()) < 0
    assert before.any() and np.isnan(np.asarray(car_t.get_ydata())[before]).all()
    r.close()


def test_damaged_tissue_shows_by_default_with_its_legend_entry(snap_run):
    from immunesim.viz.animate import DAMAGE_COLOUR

    L = 16
    cells = np.zeros((L, L), np.uint8)
    for overlay, entry in (("damage", True), (None, False)):
        r = FrameRenderer(snap_run, width=640, **({} if overlay else {"overlay": None}))
        labels = [t.get_text() for t in r.ax_lat.get_legend().get_texts()]
        assert ("damaged tissue" in labels) is entry
        tissue = np.argwhere(r.zones == 2)[0]
        damage = np.zeros((L, L), np.float32)
        damage[tuple(tissue)] = 1e6  # fully damaged
        frame = r.render(0.0, cells, damage)
        px, py = r.ax_lat.transData.transform((tissue[1], tissue[0]))
        pixel = frame[int(round(frame.shape[0] - py)), int(round(px))]
        want = DAMAGE_COLOUR if entry else ZONE_COLOURS[2]
        assert tuple(pixel) == tuple(want), (overlay, pixel)
        r.close()

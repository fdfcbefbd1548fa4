"""Snapshots and animation: colours match the cell map, writers give the frames asked for."""

from __future__ import annotations

import base64
import re
import subprocess

import matplotlib.text
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import immunesim
from immunesim.model.cells import Kind
from immunesim.viz.animate import (
    EXPLAINER,
    PALETTE,
    ZONE_COLOURS,
    FrameRenderer,
    animate,
    caption_for,
    cells_to_rgb,
    paced,
)
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


def _mp4_frames(data: bytes, tmp_path) -> tuple[tuple[int, int], int]:
    import imageio_ffmpeg

    f = tmp_path / "probe.mp4"
    f.write_bytes(data)
    reader = imageio_ffmpeg.read_frames(str(f))
    meta = reader.__next__()
    return tuple(meta["size"]), sum(1 for _ in reader)


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".html"])
def test_writers_give_the_requested_frames(snap_run, tmp_path, suffix):
    out = tmp_path / f"reset{suffix}"
    info = animate(snap_run, out, fps=5, width=480, first_day=-2, last_day=8, every=2)
    assert info["frames"] == 6  # days -2, 0, ..., 8
    w, h = info["size"]
    assert (w, h) == (480, 270)
    if suffix == ".mp4":
        assert _mp4_frames(out.read_bytes(), tmp_path) == ((480, 270), 6)
    elif suffix == ".gif":
        with Image.open(out) as im:
            assert im.size == (480, 270) and im.n_frames == 6
    else:  # the MP4 inside the page: nothing fetched from elsewhere
        doc = out.read_text()
        (data,) = re.findall(r'<video [^>]*src="data:video/mp4;base64,([^"]+)"', doc)
        assert _mp4_frames(base64.b64decode(data), tmp_path) == ((480, 270), 6)
        assert "http" not in doc and "<link" not in doc and "<script" not in doc
    assert not list(tmp_path.glob(".*part*")) and not list(tmp_path.glob("*.html.mp4"))


def test_cards_open_the_film_and_hold_for_their_seconds(snap_run, tmp_path):
    out = tmp_path / "cards.mp4"
    info = animate(snap_run, out, fps=2, width=480, first_day=0, last_day=4, title="The reset",
                   explain=True)  # fmt: skip
    n_cards = 1 + len(EXPLAINER)
    assert info["frames"] == 5 + n_cards * 8  # 4 s at 2 frames a second each
    import imageio_ffmpeg

    frames = [np.frombuffer(f, np.uint8).reshape(270, 480, 3)
              for f in list(imageio_ffmpeg.read_frames(str(out)))[1:]]  # fmt: skip
    dark = [float(f.mean()) < 80 for f in frames]  # the cards' dark backdrop, the film's white
    assert dark == [True] * (n_cards * 8) + [False] * 5


def test_text_is_14_pixels_or_more_at_1280_by_720(snap_run):
    r = FrameRenderer(snap_run)  # the default width
    assert r.size == (1280, 720)
    L = r.zones.shape[0]
    r.render(5.0, np.zeros((L, L), np.uint8), np.zeros((L, L), np.float32))
    renderer = r.fig.canvas.get_renderer()
    texts = [t for t in r.fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
    drawn = [t for t in texts if t.get_window_extent(renderer).width > 1]  # not off-axis ticks
    assert len(drawn) > 20  # titles, captions, legends, axis labels and ticks
    for t in texts:
        assert t.get_fontsize() * r.dpi / 72 >= 14 - 1e-6, t.get_text()
    for t in drawn:  # as drawn: a line of text is at least its font size high
        assert t.get_window_extent(renderer).height >= 14 - 1e-6, t.get_text()
    r.close()


def _series(b, car_t, naive=1.0, start=-10):
    days = np.arange(start, start + len(b), dtype=float)
    return pd.DataFrame({"day": days, "b_cells": b, "b_cells_per_ul": b, "car_t": car_t,
                         "naive_fraction": naive})  # fmt: skip


def test_captions_follow_the_state_not_the_calendar():
    # B cells: baseline 100 until day -1, gone on days 0-19, back to 30 by day 30 and to 80
    # by day 40, then flat; CAR-T from day 0 to day 25
    b = [100.0] * 10 + [0.0] * 20 + list(np.linspace(3, 30, 10)) + list(np.linspace(33, 80, 11))
    b += [80.0] * 30
    car_t = [0.0] * 10 + [50.0] * 26 + [0.0] * (len(b) - 36)
    df = _series(b, car_t)
    events = [{"kind": "lymphodepletion", "day": -5.0}, {"kind": "car_t", "day": 0.0}]
    ends = {"b_cell_depletion_day": 0.0, "b_cell_reconstitution_day": 21.0,
            "remission_day": 15.0, "relapse_day": None}  # fmt: skip

    def cap(day):
        return caption_for(df, day, events, ends, baseline_day=-7.0)

    assert cap(-8).startswith("Active lupus")
    assert cap(-4).startswith("Lymphodepletion")
    assert cap(5).startswith("B-cell aplasia") and "CAR-T cells still patrol" in cap(5)
    assert cap(25).startswith("B cells return from the marrow: 18% of baseline, 100% of them")
    assert cap(50).startswith("B cells back at 80% of baseline")  # not "return", months on
    assert cap(50).endswith("|  remission") and not cap(10).endswith("remission")
    relapsed = caption_for(df, 50, events, {**ends, "relapse_day": 45.0})
    assert "relapse" in relapsed and "remission" not in relapsed


def test_the_pace_lingers_where_the_state_changes_and_hurries_through_plateaus():
    # B cells fall tenfold a day for three days from day 10; flat before and after
    b = [1e4] * 20 + [1e3, 1e2, 10.0] + [10.0] * 77
    df = _series(b, [0.0] * len(b), start=-10)
    days = list(df["day"])
    kept = [days[i] for i in paced(days, df, max_gap_days=8)]
    assert {10.0, 11.0, 12.0} <= set(kept)  # every day of the fall
    gaps = np.diff(kept)
    assert gaps.max() == 8  # plateaus at one frame in eight days
    assert len(kept) < len(days) / 5
    assert kept[0] == days[0] and kept[-1] == days[-1]


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
    proc = subprocess.run(
        [*immunesim_cmd(), "animate", str(snap_run), "--out", str(tmp_path / "a.mp4"),
         "--pace", "fast"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "--pace: 'auto' or 'even'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_animate_cli_puts_two_runs_side_by_side(snap_run, tmp_path):
    out = tmp_path / "both.mp4"
    proc = subprocess.run(
        [*immunesim_cmd(), "animate", str(snap_run), str(snap_run), "--out", str(out),
         "--width", "480", "--pace", "even", "--days", "0:6"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "7 frames, 960x270" in " ".join(proc.stdout.split())
    assert _mp4_frames(out.read_bytes(), tmp_path) == ((960, 270), 7)


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

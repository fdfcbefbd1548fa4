"""The animated immune reset: frames rendered from snapshot arrays, streamed to MP4, GIF or
self-contained HTML.

A frame has two panels: the lattice (one pixel block per site, coloured by cell category
from a colour-blind-safe palette, over a dark backdrop that shows the zones, with tissue
damage as a red overlay unless turned off) and the time series (CAR-T, B cells, anti-dsDNA,
protective titre) drawn up to a cursor at the frame's day (the future is not shown; a
count of zero is a gap on the log axis). A caption says what the course is doing, read
from the state on that day (:func:`caption_for`), and a counter gives the day. Text is 14
pixels or more at 1280 x 720 and scales with the frame's height.

The figure is drawn once; each frame only replaces the lattice image's data, cuts the
curves at its day and moves the cursor, so rendering cost does not grow with the number of
cells, and frames go to the writer one by one: MP4, GIF (through ffmpeg, one palette a
frame) and HTML (the MP4 embedded in the page) in bounded memory. The pace
(:func:`paced`) lingers where the state changes (the infusion, the depletion, the return)
and passes quickly through plateaus. Optional title and explainer cards open the film.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from immunesim.io import atomic_write
from immunesim.model import cells as cells_model
from immunesim.model.params import ZONE_NAMES
from immunesim.plot import read_run
from immunesim.viz.snapshots import CATEGORIES, iter_frames, list_frames, read_zones

if TYPE_CHECKING:
    import pandas as pd

#: RGB of each cell category (the kinds' colour-blind-safe palette); index 0 (empty) is
#: replaced by the zone backdrop.
PALETTE = cells_model.PALETTE

#: Zone backdrop colours (marrow, lymphoid, tissue): dark tints so cells stand out.
ZONE_COLOURS = np.array([(58, 48, 38), (34, 44, 58), (60, 34, 38)], dtype=np.uint8)


#: Colour of fully damaged empty tissue (the overlay blends toward it with the damage).
DAMAGE_COLOUR = np.array([200, 30, 30], dtype=np.uint8)
#: Tissue damage (user units) at which an empty tissue site is fully tinted red.
DAMAGE_SCALE = 300.0

#: Text sizes in pixels on a frame 720 pixels high (they scale with the height): 14 pixels
#: or more at 1280 x 720, readable from the back of a classroom.
TEXT_PX = {"title": 26, "day": 24, "caption": 19, "label": 16, "tick": 14, "legend": 14}

#: Default frame width (16:9).
WIDTH = 1280

#: Explainer cards (``explain=True``): what the picture shows, before the film starts.
EXPLAINER = (
    (
        "Who is who",
        "B cells (light blue) make antibodies. In lupus many are autoreactive (orange):\n"
        "their antibodies, like anti-dsDNA, bind the body's own DNA and damage tissue (red).\n"
        "T helpers (grey) help B cells respond. Long-lived plasma cells (green) sit in\n"
        "bone-marrow niches and make antibody for years: the protection vaccines gave.",
    ),
    (
        "The therapy",
        "CAR-T cells (yellow) are the patient's own T cells given a receptor that finds\n"
        "CD19, a marker on every B cell, and kills them: autoreactive or not, in blood,\n"
        "lymph nodes and tissue. Long-lived plasma cells carry no CD19 and stay.",
    ),
    (
        "The question",
        "When the B cells come back from the marrow, are they new and naive,\n"
        "and does the disease stay away?",
    ),
)


def cells_to_rgb(
    cells: np.ndarray,
    zones: np.ndarray,
    damage: np.ndarray | None = None,
    damage_scale: float = DAMAGE_SCALE,
) -> np.ndarray:
    """RGB image uint8[L, L, 3] of a cell map over the zone backdrop.

    Args:
        cells: uint8[L, L] categories (0 empty).
        zones: uint8[L, L] zone codes.
        damage: optional float[L, L]; empty tissue sites are tinted red in proportion to
            ``damage / damage_scale`` (capped at 1).
    """
    rgb = ZONE_COLOURS[zones].copy()
    if damage is not None:
        w = np.clip(damage / damage_scale, 0.0, 1.0)[..., None]
        rgb = (rgb * (1 - w) + DAMAGE_COLOUR * w).astype(np.uint8)
    occupied = cells > 0
    rgb[occupied] = PALETTE[cells[occupied]]
    return rgb


def caption_for(
    df: pd.DataFrame,
    day: float,
    events: list[dict],
    endpoints: dict,
    baseline_day: float = -7.0,
    depletion_fraction: float = 0.01,
) -> str:
    """What the course is doing on ``day``, read from the state then (the time-series row
    of that day, B cells in blood where recorded) rather than from a calendar: a caption
    about returning B cells says how many are back and how many of them are naive.

    Args:
        df: the time series (at least up to ``day``).
        events: the run's therapy events (``kind``, ``day``).
        endpoints: the run's endpoints (remission and relapse days, the depletion day).
        baseline_day, depletion_fraction: the scenario's ``[endpoints]``.
    """
    days = df["day"].to_numpy()
    upto = np.flatnonzero(days <= day + 1e-9)
    row = df.iloc[upto[-1] if upto.size else 0]
    col = "b_cells_per_ul" if "b_cells_per_ul" in df else "b_cells"
    base = np.flatnonzero(days <= baseline_day + 1e-9)
    base_b = float(df[col].iloc[base[-1] if base.size else 0])
    rel = float(row[col]) / base_b if base_b > 0 else float("nan")
    given: dict[str, dict] = {}
    for e in events:
        if e["day"] <= day + 1e-9:
            given.setdefault(e["kind"], e)
    car_t = float(row.get("car_t", 0.0))
    depleted_on = endpoints.get("b_cell_depletion_day")
    was_depleted = depleted_on is not None and day >= depleted_on
    naive = row.get("naive_fraction", float("nan"))
    naive_text = "" if naive != naive else f", {float(naive):.0%} of them naive"
    if not given:
        text = "Active lupus: autoreactive B cells and plasmablasts make anti-dsDNA"
    elif "car_t" not in given and "anti_cd20" not in given and "lymphodepletion" in given:
        text = "Lymphodepletion: chemotherapy clears lymphocytes"
    elif rel <= depletion_fraction:
        text = "B-cell aplasia: no B cells left in blood"
        if car_t > 0:
            text += "; CAR-T cells still patrol"
    elif "car_t" in given and car_t > 0 and not was_depleted:
        text = "CAR-T expansion: CAR-T cells kill the cells that bear their target"
    elif "anti_cd20" in given and "car_t" not in given and not was_depleted:
        text = f"Anti-CD20: B cells in blood at {rel:.0%} of baseline; lymph nodes keep theirs"
    elif was_depleted and rel < 0.5:
        text = f"B cells return from the marrow: {rel:.0%} of baseline{naive_text}"
    elif was_depleted:
        text = f"B cells back at {rel:.0%} of baseline{naive_text}"
    else:
        text = f"B cells in blood at {rel:.0%} of baseline"
    relapse, remission = endpoints.get("relapse_day"), endpoints.get("remission_day")
    if relapse is not None and day >= relapse:
        text += "  |  relapse: the autoimmune loop restarts"
    elif remission is not None and day >= remission:
        text += "  |  remission"
    return text


def paced(days: list[float], df: pd.DataFrame, max_gap_days: float = 8.0) -> list[int]:
    """Indices of the snapshot ``days`` a film shows at a pace that follows the state: a
    snapshot is kept when the state has moved enough since the last one kept (the summed
    change of log10 B cells, log10 CAR-T, and of the antibodies relative to their highest
    level in the run, reaches 0.05), or ``max_gap_days`` after it. The days around an infusion,
    the depletion and the return are all kept; a plateau passes several times faster."""
    cols = [c for c in ("b_cells", "car_t") if c in df]
    logs = np.log10(df[cols].to_numpy(float) + 1.0) if cols else np.zeros((len(df), 0))
    titres = [c for c in df.columns if c == "anti_dsdna" or c.startswith("antibody_")]
    rel = df[titres].to_numpy(float) / np.maximum(df[titres].to_numpy(float).max(axis=0), 1e-12)
    state = np.hstack([logs, rel])
    at = np.searchsorted(df["day"].to_numpy(float), np.asarray(days, float) - 1e-9)
    at = np.clip(at, 0, len(df) - 1)
    keep = [0]
    for i in range(1, len(days)):
        moved = float(np.abs(state[at[i]] - state[at[keep[-1]]]).sum())
        if moved >= 0.05 or days[i] - days[keep[-1]] >= max_gap_days - 1e-9 or i == len(days) - 1:
            keep.append(i)
    return keep


def _positive(counts: pd.Series) -> pd.Series:
    """Counts for a log axis: zeros become NaN, which matplotlib leaves out."""
    return counts.where(counts > 0)


class FrameRenderer:
    """Draws frames of a run at a fixed pixel size.

    Args:
        run_dir: a run directory with snapshots.
        width, height: frame size in pixels (height: 9/16 of the width by default).
        overlay: ``"damage"`` (tissue damage in red) or None.
        dpi: resolution of the figure (text sizes are in pixels whatever it is).
        title: the headline (default: the scenario's name).
    """

    def __init__(
        self,
        run_dir: str | Path,
        width: int = WIDTH,
        height: int | None = None,
        overlay: str | None = "damage",
        dpi: int = 100,
        title: str | None = None,
    ):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        self.run_dir = Path(run_dir)
        df, manifest, events = read_run(run_dir)
        self.endpoints = json.loads((self.run_dir / "endpoints.json").read_text())
        self.events = events
        self.zones = read_zones(run_dir)
        self.overlay = overlay
        height = height or int(round(width * 9 / 16))
        self.size = (width - width % 2, height - height % 2)  # even sizes for yuv420p
        self.dpi = dpi
        sc = manifest["scenario"]
        self._ends_cfg = sc["endpoints"]
        base = df[df["day"] <= sc["endpoints"]["baseline_day"] + 1e-9]
        base = base.iloc[-1] if len(base) else df.iloc[0]
        vacc = sc["specificities"]["vaccines"]
        self.df = df
        fs = self.font_size

        fig = plt.figure(
            figsize=(self.size[0] / dpi, self.size[1] / dpi), dpi=dpi, facecolor="white"
        )
        # the lattice on the left with its legend below it; the two charts on the right
        self.ax_lat = fig.add_axes((0.01, 0.25, 0.42, 0.60))
        L = self.zones.shape[0]
        self.image = self.ax_lat.imshow(
            np.zeros((L, L, 3), np.uint8), interpolation="nearest", origin="upper"
        )
        self.ax_lat.set_xticks([])
        self.ax_lat.set_yticks([])
        handles = [
            Patch(facecolor=PALETTE[i] / 255, edgecolor="#555555", lw=0.5, label=CATEGORIES[i])
            for i in range(1, len(CATEGORIES))
        ]  # an edge, so that a light colour (plasmablasts) shows on the white page
        handles += [
            Patch(color=ZONE_COLOURS[z] / 255, label=f"{ZONE_NAMES[z]} zone") for z in range(3)
        ]
        if overlay == "damage":
            handles.append(Patch(color="#" + bytes(DAMAGE_COLOUR).hex(), label="damaged tissue"))
        self.ax_lat.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.01),
            ncols=3,
            fontsize=fs("legend"),
            frameon=False,
            handlelength=0.9,
            columnspacing=0.8,
            labelspacing=0.25,
            handletextpad=0.4,
        )
        ax1 = fig.add_axes((0.53, 0.53, 0.44, 0.31))
        # a count of zero has no place on a log axis: left out (a gap), not drawn at 0.5
        ax1.plot(df["day"], _positive(df["car_t"]), color="#E69F00", lw=2, label="CAR-T")
        ax1.plot(df["day"], _positive(df["b_cells"]), color="#0072B2", lw=2, label="B cells")
        ax1.set_yscale("log")
        ax1.set_ylabel("cells", fontsize=fs("label"))
        ax1.legend(fontsize=fs("legend"), loc="upper right", frameon=False)
        ax1.tick_params(labelbottom=False)
        ax2 = fig.add_axes((0.53, 0.12, 0.44, 0.37), sharex=ax1)
        ax2.plot(
            df["day"],
            df["anti_dsdna"] / base["anti_dsdna"],
            color="#D55E00",
            lw=2,
            label="anti-dsDNA",
        )
        prot = sum(df[f"antibody_{v}"] / base[f"antibody_{v}"] for v in vacc) / len(vacc)
        ax2.plot(df["day"], prot, color="#009E73", lw=2, label="vaccine titre")
        ax2.set_ylabel("titre / baseline", fontsize=fs("label"))
        ax2.set_xlabel("day", fontsize=fs("label"))
        self._titres = np.vstack(
            [np.asarray(prot, float), np.asarray(df["anti_dsdna"] / base["anti_dsdna"], float)]
        )
        ax2.legend(fontsize=fs("legend"), loc="upper right", frameon=False)
        for ax in (ax1, ax2):  # minor ticks too: a log axis spanning less than a decade
            ax.tick_params(which="both", labelsize=fs("tick"))  # labels them
        self.cursors = [ax.axvline(0, color="#333333", lw=1) for ax in (ax1, ax2)]
        self.ax_ts = (ax1, ax2)
        # the curves are drawn up to the frame's day (the axes were fitted to the whole run)
        self.curves = [(line, line.get_xdata(), line.get_ydata()) for line in ax1.lines + ax2.lines]
        self.curves = [c for c in self.curves if c[0] not in self.cursors]
        self.title = fig.text(
            0.015,
            0.955,
            title or manifest["scenario_name"],
            fontsize=fs("title"),
            weight="bold",
            va="center",
        )
        self.day_text = fig.text(
            0.985, 0.955, "", fontsize=fs("day"), ha="right", va="center", family="monospace"
        )
        self.caption = fig.text(0.015, 0.895, "", fontsize=fs("caption"), va="center")
        self.fig = fig
        # Blitting: the static parts are drawn once; a frame redraws only these artists.
        self._dynamic = [
            self.image,
            *(line for line, _, _ in self.curves),
            *self.cursors,
            self.day_text,
            self.caption,
        ]
        for artist in self._dynamic:
            artist.set_animated(True)
        self._background = None

    def font_size(self, role: str) -> float:
        """Font size in points for a text role of :data:`TEXT_PX` on this frame."""
        return TEXT_PX[role] * (self.size[1] / 720) * 72 / self.dpi

    def caption_at(self, day: float) -> str:
        return caption_for(
            self.df,
            day,
            self.events,
            self.endpoints,
            self._ends_cfg["baseline_day"],
            self._ends_cfg["depletion_fraction"],
        )

    def set_x_range(self, first: float, last: float) -> None:
        """Days shown by the time series (the titre axis fits the titres in that range)."""
        for ax in self.ax_ts:
            ax.set_xlim(first, last)
        days = self.df["day"].to_numpy()
        shown = self._titres[:, (days >= first) & (days <= last)]
        finite = shown[np.isfinite(shown)]
        self.ax_ts[1].set_ylim(0, max(1.3, float(finite.max()) * 1.05) if finite.size else 1.3)
        self._background = None

    def render(self, day: float, cells: np.ndarray, damage: np.ndarray) -> np.ndarray:
        """RGB frame uint8[height, width, 3]."""
        rgb = cells_to_rgb(cells, self.zones, damage if self.overlay == "damage" else None)
        self.image.set_data(rgb)
        for c in self.cursors:
            c.set_xdata([day, day])
        for line, x, y in self.curves:
            upto = np.asarray(x) <= day + 1e-9
            line.set_data(np.asarray(x)[upto], np.asarray(y)[upto])
        self.day_text.set_text(f"day {day:.0f}")
        self.caption.set_text(self.caption_at(day))
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = self.fig.canvas
        if not isinstance(canvas, FigureCanvasAgg):  # blitting needs Agg (set in __init__)
            raise TypeError(f"frames are drawn on an Agg canvas, not {type(canvas).__name__}")
        if self._background is None:
            canvas.draw()
            self._background = canvas.copy_from_bbox(self.fig.bbox)
        canvas.restore_region(self._background)
        for artist in self._dynamic:
            artist.axes.draw_artist(artist) if artist.axes else self.fig.draw_artist(artist)
        buf = np.asarray(canvas.buffer_rgba())[..., :3]
        return np.ascontiguousarray(buf)

    def close(self) -> None:
        import matplotlib.pyplot as plt

        plt.close(self.fig)


def select_frames(
    run_dir: str | Path,
    first_day: float | None,
    last_day: float | None,
    every: int = 1,
    pace: str = "even",
) -> list[Path]:
    """Snapshot files within a day range: every ``every``-th one (``pace="even"``), or at
    the pace of the state (``pace="auto"``, :func:`paced`)."""
    from immunesim.viz.snapshots import frame_days

    if pace not in ("even", "auto"):
        raise ValueError(f"pace: 'even' or 'auto' (got {pace!r})")
    paths = list_frames(run_dir)
    if not paths:
        raise FileNotFoundError(
            f"{run_dir}: no snapshots; run with --set output.snapshot_every_hours=24"
        )
    days = frame_days(paths)
    keep = [
        (p, d)
        for p, d in zip(paths, days, strict=True)
        if (first_day is None or d >= first_day) and (last_day is None or d <= last_day)
    ]
    if not keep:
        raise ValueError(f"{run_dir}: no snapshot within the days asked for")
    if pace == "auto":
        df, _, _ = read_run(run_dir)
        keep = [keep[i] for i in paced([d for _, d in keep], df)]
    return [p for p, _ in keep][:: max(1, every)]


def _frames(renderer: FrameRenderer, paths: list[Path]) -> Iterator[np.ndarray]:
    for day, cells, damage in iter_frames(paths):
        yield renderer.render(day, cells, damage)


def card(size: tuple[int, int], heading: str, body: str, dpi: int = 100) -> np.ndarray:
    """A text card (a title or an explainer) as an RGB frame of ``size``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = size[1] / 720 * 72 / dpi
    fig = plt.figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi, facecolor="#1d2330")
    fig.text(0.5, 0.66, heading, color="white", fontsize=40 * scale, weight="bold",
             ha="center", va="center")  # fmt: skip
    fig.text(0.5, 0.40, body, color="#e8e8e8", fontsize=22 * scale, ha="center",
             va="center", linespacing=1.5)  # fmt: skip
    fig.canvas.draw()
    rgb = np.ascontiguousarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])  # type: ignore[attr-defined]
    plt.close(fig)
    return rgb


def opening_cards(
    size: tuple[int, int], fps: float, title: str | None, explain: bool, seconds: float = 4.0
) -> list[tuple[np.ndarray, int]]:
    """The cards that open a film, each with the number of frames it is held for."""
    cards = []
    if title:
        cards.append(card(size, title, "an agent-based simulation by immunesim"))
    if explain:
        cards += [card(size, h, b) for h, b in EXPLAINER]
    hold = max(1, int(round(fps * seconds)))
    return [(c, hold) for c in cards]


def _with_cards(
    cards: list[tuple[np.ndarray, int]], frames: Iterator[np.ndarray]
) -> Iterator[np.ndarray]:
    for image, hold in cards:
        for _ in range(hold):
            yield image
    yield from frames


def _counted(frames: Iterator[np.ndarray], progress: Callable[[], None] | None):
    for f in frames:
        yield f
        if progress is not None:
            progress()


def _write(frames: Iterator[np.ndarray], out: Path, size: tuple[int, int], fps: float) -> int:
    """Write ``frames`` to ``out`` by its suffix, through a hidden partial file that takes
    its place only when complete (an interrupted film leaves no broken file); the count."""
    suffix = out.suffix.lower()
    if suffix not in (".mp4", ".gif", ".html"):
        raise ValueError(f"{out}: the output must end in .mp4, .gif or .html")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    try:
        if suffix == ".mp4":
            n = _write_mp4(frames, tmp, size, fps)
        elif suffix == ".gif":
            n = _write_gif(frames, tmp, size, fps)
        else:
            n = _write_html(frames, tmp, size, fps)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def animate(
    run_dir: str | Path,
    out: str | Path,
    fps: float = 12.0,
    width: int = WIDTH,
    first_day: float | None = None,
    last_day: float | None = None,
    every: int = 1,
    overlay: str | None = "damage",
    pace: str = "even",
    title: str | None = None,
    explain: bool = False,
    progress: Callable[[int], Callable[[], None]] | None = None,
) -> dict:
    """Write an animation of a run's snapshots; the format follows ``out``'s suffix
    (.mp4, .gif, .html).

    Args:
        pace: ``"even"`` (every snapshot, or every ``every``-th) or ``"auto"`` (slow where
            the state changes, fast through plateaus: :func:`paced`).
        title: a title card first, and the headline of every frame (default: the
            scenario's name, no card).
        explain: explainer cards (:data:`EXPLAINER`) before the film.
        progress: called once with the number of frames; returns what to call after each.

    Returns ``{"frames": n, "size": (w, h), "path": out}`` (cards count as frames).
    """
    out = Path(out)
    paths = select_frames(run_dir, first_day, last_day, every, pace)
    renderer = FrameRenderer(run_dir, width=width, overlay=overlay, title=title)
    from immunesim.viz.snapshots import frame_days

    days = frame_days([paths[0], paths[-1]])
    renderer.set_x_range(days[0], days[-1])
    cards = opening_cards(renderer.size, fps, title, explain)
    total = len(paths) + sum(h for _, h in cards)
    tick = progress(total) if progress else None
    try:
        frames = _with_cards(cards, _frames(renderer, paths))
        n = _write(_counted(frames, tick), out, renderer.size, fps)
    finally:
        renderer.close()
    return {"frames": n, "size": renderer.size, "path": out}


def _write_mp4(frames: Iterator[np.ndarray], path: Path, size: tuple[int, int], fps: float) -> int:
    """H.264 through the ffmpeg of imageio-ffmpeg (constant quality, CRF 23)."""
    return _ffmpeg(frames, path, size, fps, "libx264", "yuv420p", ["-crf", "23", "-f", "mp4"])


def _ffmpeg(
    frames: Iterator[np.ndarray],
    path: Path,
    size: tuple[int, int],
    fps: float,
    codec: str,
    pix_fmt: str,
    params: list[str],
) -> int:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ValueError(
            "MP4, GIF and HTML films need the ffmpeg that imageio-ffmpeg ships: "
            "pip install 'immunesim[viz]'"
        ) from None
    writer = imageio_ffmpeg.write_frames(
        str(path),
        size,
        fps=fps,
        codec=codec,
        pix_fmt_in="rgb24",
        pix_fmt_out=pix_fmt,
        quality=None,
        macro_block_size=2,
        ffmpeg_log_level="error",  # not palettegen's notes on duplicate colours
        output_params=params,
    )
    writer.send(None)
    n = 0
    for frame in frames:
        writer.send(frame.tobytes())
        n += 1
    writer.close()
    return n


def _write_gif(frames: Iterator[np.ndarray], path: Path, size: tuple[int, int], fps: float) -> int:
    """GIF through ffmpeg, streamed: each frame gets its own 256-colour palette
    (``palettegen`` per frame), so memory does not grow with the length of the film."""
    vf = "split[a][b];[a]palettegen=stats_mode=single[p];[b][p]paletteuse=new=1:dither=none"
    return _ffmpeg(frames, path, size, fps, "gif", "pal8", ["-vf", vf, "-loop", "0", "-f", "gif"])


def _write_html(frames: Iterator[np.ndarray], path: Path, size: tuple[int, int], fps: float) -> int:
    """Self-contained HTML: the film as an H.264 MP4 embedded in a ``<video>`` element
    (no file or network beside the page), which every current browser plays."""
    video = path.with_name(path.name + ".mp4")
    try:
        n = _write_mp4(frames, video, size, fps)
        data = base64.b64encode(video.read_bytes()).decode()
    finally:
        video.unlink(missing_ok=True)
    with open(path, "w") as f:
        f.write(f"""<!doctype html><html><head><meta charset="utf-8">
<title>immunesim animation</title><style>body{{font-family:sans-serif;margin:1em}}
video{{max-width:100%;height:auto}}</style></head><body>
<video width="{size[0]}" height="{size[1]}" controls autoplay loop muted playsinline
src="data:video/mp4;base64,{data}"></video>
<p>{n} frames at {fps:g} per second.</p>
</body></html>
""")
    return n


def animate_side_by_side(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    fps: float = 12.0,
    width: int = 960,
    first_day: float | None = None,
    last_day: float | None = None,
    every: int = 1,
    overlay: str | None = "damage",
    pace: str = "even",
    titles: list[str] | None = None,
    progress: Callable[[int], Callable[[], None]] | None = None,
) -> dict:
    """Several runs next to each other (each ``width`` pixels wide), frame by frame on the
    days they all recorded; with ``pace="auto"`` the days the first run's state picks."""
    from immunesim.viz.snapshots import frame_days

    out = Path(out)
    renderers, selected = [], []
    try:
        for i, d in enumerate(run_dirs):
            paths = select_frames(d, first_day, last_day, 1, pace if i == 0 else "even")
            selected.append(dict(zip(frame_days(paths), paths, strict=True)))
            title = titles[i] if titles else None
            renderers.append(FrameRenderer(d, width=width, overlay=overlay, title=title))
        common = sorted(set.intersection(*(set(s) for s in selected)))[:: max(1, every)]
        if not common:
            raise ValueError("the runs have no snapshot day in common")
        for r in renderers:
            r.set_x_range(common[0], common[-1])

        def frames() -> Iterator[np.ndarray]:
            for day in common:
                parts = []
                for r, sel in zip(renderers, selected, strict=True):
                    ((_, cells, damage),) = iter_frames([sel[day]])
                    parts.append(r.render(day, cells, damage))
                yield np.hstack(parts)

        size = (sum(r.size[0] for r in renderers), renderers[0].size[1])
        tick = progress(len(common)) if progress else None
        n = _write(_counted(frames(), tick), out, size, fps)
    finally:
        for r in renderers:
            r.close()
    return {"frames": n, "size": size, "path": out}


def still(run_dir: str | Path, day: float, out: str | Path, width: int = WIDTH) -> Path:
    """One frame of a run (the snapshot nearest ``day``) as a PNG."""
    from PIL import Image

    from immunesim.viz.snapshots import frame_days

    paths = list_frames(run_dir)
    days = np.array(frame_days(paths))
    k = int(np.argmin(np.abs(days - day)))
    r = FrameRenderer(run_dir, width=width)
    r.set_x_range(float(days[0]), float(days[-1]))
    ((d, cells, damage),) = iter_frames([paths[k]])
    image = Image.fromarray(r.render(d, cells, damage))
    fmt = Path(out).suffix.lstrip(".").upper() or "PNG"
    atomic_write(Path(out), lambda p: image.save(p, format="JPEG" if fmt == "JPG" else fmt))
    r.close()
    return Path(out)

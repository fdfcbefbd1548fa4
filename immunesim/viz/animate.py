"""The animated immune reset: frames rendered from snapshot arrays, streamed to MP4, GIF or
self-contained HTML.

A frame has two panels: the lattice (one pixel block per site, coloured by cell category
from a colour-blind-safe palette, over a dark backdrop that shows the zones, with tissue
damage as a red overlay unless turned off) and the time series (CAR-T, B cells, anti-dsDNA,
protective titre) drawn up to a cursor at the frame's day (the future is not shown; a
count of zero is a gap on the log axis). A caption names the phase of the course and a
counter gives the day. The figure is drawn once; each frame only replaces the lattice
image's data, cuts the curves at its day and moves the cursor, so rendering cost does not
grow with the number of cells, and frames go to the writer one by one (MP4 and HTML in
bounded memory).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
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


def cells_to_rgb(
    cells: np.ndarray,
    zones: np.ndarray,
    damage: np.ndarray | None = None,
    damage_scale: float = 300.0,
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


@dataclass
class Phase:
    start: float
    caption: str


def phases(endpoints: dict, events: list[dict]) -> list[Phase]:
    """Captions of the course, from the run's therapy events and endpoints."""
    out = [Phase(-1e9, "Active lupus: autoreactive B cells and plasmablasts make anti-dsDNA")]
    ld = [e["day"] for e in events if e["kind"] == "lymphodepletion"]
    if ld:
        out.append(Phase(min(ld), "Lymphodepletion: chemotherapy clears lymphocytes"))
    car = [e["day"] for e in events if e["kind"] == "car_t"]
    if car:
        out.append(Phase(min(car), "CAR-T expansion: CAR-T cells kill every target-bearing cell"))
    cd20 = [e["day"] for e in events if e["kind"] == "anti_cd20"]
    if cd20:
        out.append(Phase(min(cd20), "Anti-CD20: CD20+ B cells are depleted"))
    if endpoints.get("b_cell_depletion_day") is not None:
        out.append(Phase(endpoints["b_cell_depletion_day"], "B-cell aplasia: no B cells left"))
    if endpoints.get("b_cell_reconstitution_day") is not None:
        out.append(
            Phase(endpoints["b_cell_reconstitution_day"], "Naive B cells return from the marrow")
        )
    if endpoints.get("relapse_day") is not None:
        out.append(Phase(endpoints["relapse_day"], "Relapse: the autoimmune loop restarts"))
    return sorted(out, key=lambda p: p.start)


def caption_at(
    day: float, course: list[Phase], remission_day: float | None, relapse_day: float | None
) -> str:
    text = [p.caption for p in course if p.start <= day][-1]
    if (
        remission_day is not None
        and day >= remission_day
        and (relapse_day is None or day < relapse_day)
    ):
        text += "  |  remission"
    return text


def _positive(counts: pd.Series) -> pd.Series:
    """Counts for a log axis: zeros become NaN, which matplotlib leaves out."""
    return counts.where(counts > 0)


class FrameRenderer:
    """Draws frames of a run at a fixed pixel size."""

    def __init__(
        self,
        run_dir: str | Path,
        width: int = 960,
        height: int | None = None,
        overlay: str | None = "damage",
        dpi: int = 100,
    ):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        self.run_dir = Path(run_dir)
        df, manifest, events = read_run(run_dir)
        self.endpoints = json.loads((self.run_dir / "endpoints.json").read_text())
        self.course = phases(self.endpoints, events)
        self.zones = read_zones(run_dir)
        self.overlay = overlay
        height = height or int(round(width * 9 / 16))
        self.size = (width - width % 2, height - height % 2)  # even sizes for yuv420p
        sc = manifest["scenario"]
        base = df[df["day"] <= sc["endpoints"]["baseline_day"] + 1e-9]
        base = base.iloc[-1] if len(base) else df.iloc[0]
        vacc = sc["specificities"]["vaccines"]
        self.df = df

        fig = plt.figure(
            figsize=(self.size[0] / dpi, self.size[1] / dpi), dpi=dpi, facecolor="white"
        )
        gs = fig.add_gridspec(
            2,
            2,
            width_ratios=[1.0, 1.25],
            height_ratios=[1, 1],
            left=0.02,
            right=0.93,
            top=0.86,
            bottom=0.10,
            wspace=0.30,
            hspace=0.12,
        )
        self.ax_lat = fig.add_subplot(gs[:, 0])
        L = self.zones.shape[0]
        self.image = self.ax_lat.imshow(
            np.zeros((L, L, 3), np.uint8), interpolation="nearest", origin="upper"
        )
        self.ax_lat.set_xticks([])
        self.ax_lat.set_yticks([])
        handles = [
            Patch(color=PALETTE[i] / 255, label=CATEGORIES[i]) for i in range(1, len(CATEGORIES))
        ]
        handles += [
            Patch(color=ZONE_COLOURS[z] / 255, label=f"{ZONE_NAMES[z]} zone") for z in range(3)
        ]
        if overlay == "damage":
            handles.append(Patch(color="#" + bytes(DAMAGE_COLOUR).hex(), label="damaged tissue"))
        self.ax_lat.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.005),
            ncols=3,
            fontsize=6.5,
            frameon=False,
            handlelength=1.0,
        )
        ax1 = fig.add_subplot(gs[0, 1])
        # a count of zero has no place on a log axis: left out (a gap), not drawn at 0.5
        ax1.plot(df["day"], _positive(df["car_t"]), color="#E69F00", lw=1.5, label="CAR-T")
        ax1.plot(df["day"], _positive(df["b_cells"]), color="#0072B2", lw=1.5, label="B cells")
        ax1.set_yscale("log")
        ax1.set_ylabel("cells", fontsize=8)
        ax1.legend(fontsize=7, loc="upper right")
        ax2 = fig.add_subplot(gs[1, 1], sharex=ax1)
        ax2.plot(
            df["day"],
            df["anti_dsdna"] / base["anti_dsdna"],
            color="#D55E00",
            lw=1.5,
            label="anti-dsDNA",
        )
        prot = sum(df[f"antibody_{v}"] / base[f"antibody_{v}"] for v in vacc) / len(vacc)
        ax2.plot(df["day"], prot, color="#009E73", lw=1.5, label="vaccine titre")
        ax2.set_ylabel("titre / baseline", fontsize=8)
        ax2.set_xlabel("day", fontsize=8)
        self._titres = np.vstack(
            [np.asarray(prot, float), np.asarray(df["anti_dsdna"] / base["anti_dsdna"], float)]
        )
        ax2.legend(fontsize=7, loc="upper right")
        for ax in (ax1, ax2):
            ax.tick_params(labelsize=7)
        self.cursors = [ax.axvline(0, color="#333333", lw=1) for ax in (ax1, ax2)]
        self.ax_ts = (ax1, ax2)
        # the curves are drawn up to the frame's day (the axes were fitted to the whole run)
        self.curves = [(line, line.get_xdata(), line.get_ydata()) for line in ax1.lines + ax2.lines]
        self.curves = [c for c in self.curves if c[0] not in self.cursors]
        self.title = fig.text(
            0.02, 0.95, manifest["scenario_name"], fontsize=11, weight="bold", va="center"
        )
        self.day_text = fig.text(
            0.98, 0.95, "", fontsize=12, ha="right", va="center", family="monospace"
        )
        self.caption = fig.text(0.02, 0.90, "", fontsize=10, va="center")
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
        self.day_text.set_text(f"day {day:6.0f}")
        self.caption.set_text(
            caption_at(
                day,
                self.course,
                self.endpoints.get("remission_day"),
                self.endpoints.get("relapse_day"),
            )
        )
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
    run_dir: str | Path, first_day: float | None, last_day: float | None, every: int = 1
) -> list[Path]:
    """Snapshot files within a day range (every ``every``-th one)."""
    from immunesim.viz.snapshots import frame_days

    paths = list_frames(run_dir)
    if not paths:
        raise FileNotFoundError(
            f"{run_dir}: no snapshots; run with --set output.snapshot_every_hours=24"
        )
    days = frame_days(paths)
    keep = [
        p
        for p, d in zip(paths, days, strict=True)
        if (first_day is None or d >= first_day) and (last_day is None or d <= last_day)
    ]
    return keep[:: max(1, every)]


def _frames(renderer: FrameRenderer, paths: list[Path]) -> Iterator[np.ndarray]:
    for day, cells, damage in iter_frames(paths):
        yield renderer.render(day, cells, damage)


def animate(
    run_dir: str | Path,
    out: str | Path,
    fps: float = 12.0,
    width: int = 960,
    first_day: float | None = None,
    last_day: float | None = None,
    every: int = 1,
    overlay: str | None = "damage",
) -> dict:
    """Write an animation of a run's snapshots; the format follows ``out``'s suffix
    (.mp4, .gif, .html). Returns ``{"frames": n, "size": (w, h), "path": out}``."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".mp4", ".gif", ".html"):
        raise ValueError(f"{out}: the output must end in .mp4, .gif or .html")
    paths = select_frames(run_dir, first_day, last_day, every)
    renderer = FrameRenderer(run_dir, width=width, overlay=overlay)
    from immunesim.viz.snapshots import frame_days

    days = frame_days([paths[0], paths[-1]])
    renderer.set_x_range(days[0], days[-1])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    try:
        if suffix == ".mp4":
            n = _write_mp4(_frames(renderer, paths), tmp, renderer.size, fps)
        elif suffix == ".gif":
            n = _write_gif(_frames(renderer, paths), tmp, fps)
        else:
            n = _write_html(_frames(renderer, paths), tmp, renderer.size, fps)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
        renderer.close()
    return {"frames": n, "size": renderer.size, "path": out}


def _write_mp4(frames: Iterator[np.ndarray], path: Path, size: tuple[int, int], fps: float) -> int:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ValueError(
            "MP4 needs the ffmpeg that imageio-ffmpeg ships: "
            "pip install 'immunesim[viz]' (or write .gif or .html)"
        ) from None
    writer = imageio_ffmpeg.write_frames(
        str(path),
        size,
        fps=fps,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        quality=6,
        macro_block_size=2,
        output_params=["-f", "mp4"],
    )
    writer.send(None)
    n = 0
    for frame in frames:
        writer.send(frame.tobytes())
        n += 1
    writer.close()
    return n


def _write_gif(frames: Iterator[np.ndarray], path: Path, fps: float) -> int:
    """GIF through Pillow. Pillow assembles a GIF in memory: frames are quantised to a
    256-colour palette first (1 byte per pixel), which keeps that small."""
    from PIL import Image

    images = [
        Image.fromarray(f).quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
        for f in frames
    ]
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=int(round(1000 / fps)),
        loop=0,
        optimize=False,
    )
    return len(images)


def _write_html(frames: Iterator[np.ndarray], path: Path, size: tuple[int, int], fps: float) -> int:
    """Self-contained HTML: frames as base64 PNGs in the page, a small player in plain
    JavaScript; written frame by frame."""
    from PIL import Image

    n = 0
    with open(path, "w") as f:
        f.write(f"""<!doctype html><html><head><meta charset="utf-8">
<title>immunesim animation</title><style>body{{font-family:sans-serif;margin:1em}}
#bar{{display:flex;gap:1em;align-items:center;width:{size[0]}px}}
#slider{{flex:1}}</style></head><body>
<img id="frame" width="{size[0]}" height="{size[1]}" alt="animation frame">
<div id="bar"><button id="play">pause</button><input id="slider" type="range" min="0"
value="0"><span id="count"></span></div>
<script>const frames = [
""")
        for frame in frames:
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format="PNG", optimize=True)
            f.write('"data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode() + '",\n')
            n += 1
        f.write(f"""];
const img = document.getElementById("frame"), slider = document.getElementById("slider");
const count = document.getElementById("count"), play = document.getElementById("play");
slider.max = frames.length - 1; let i = 0, timer = null;
function show(k) {{ i = k; img.src = frames[k]; slider.value = k;
  count.textContent = (k + 1) + " / " + frames.length; }}
function start() {{ timer = setInterval(() => show((i + 1) % frames.length), {1000 / fps:.1f});
  play.textContent = "pause"; }}
function stop() {{ clearInterval(timer); timer = null; play.textContent = "play"; }}
play.onclick = () => timer ? stop() : start();
slider.oninput = () => {{ stop(); show(+slider.value); }};
show(0); start();
</script></body></html>
""")
    return n


def animate_side_by_side(
    run_dirs: list[str | Path],
    out: str | Path,
    fps: float = 12.0,
    width: int = 640,
    first_day: float | None = None,
    last_day: float | None = None,
    every: int = 1,
) -> dict:
    """Several runs next to each other, frame by frame on the days they all recorded."""
    from immunesim.viz.snapshots import frame_days

    out = Path(out)
    renderers, selected = [], []
    for d in run_dirs:
        paths = select_frames(d, first_day, last_day)
        selected.append(dict(zip(frame_days(paths), paths, strict=True)))
        renderers.append(FrameRenderer(d, width=width))
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
    tmp = out.with_name(f".{out.name}.part")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        suffix = out.suffix.lower()
        if suffix == ".mp4":
            n = _write_mp4(frames(), tmp, size, fps)
        elif suffix == ".gif":
            n = _write_gif(frames(), tmp, fps)
        elif suffix == ".html":
            n = _write_html(frames(), tmp, size, fps)
        else:
            raise ValueError(f"{out}: the output must end in .mp4, .gif or .html")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
        for r in renderers:
            r.close()
    return {"frames": n, "size": size, "path": out}


def still(run_dir: str | Path, day: float, out: str | Path, width: int = 960) -> Path:
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

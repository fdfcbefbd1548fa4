"""The ready-made scripts in visualizations/ run (at a tiny size), so none can rot."""

from __future__ import annotations

import runpy

from PIL import Image

from tests.conftest import REPO


def test_teaching_set_script_makes_every_file(tmp_path):
    script = runpy.run_path(str(REPO / "visualizations" / "make_teaching_set.py"))
    script["main"](
        [
            "--size",
            "24",
            "--last-day",
            "12",
            "--run-in-days",
            "30",
            "--fps",
            "2",
            "--out",
            str(tmp_path),
        ]
    )
    for name in (
        "reset.mp4",
        "reset.html",
        "reset.gif",
        "reset_vs_rituximab.mp4",
        "bcma_cd19_titres.mp4",
        "failed_reset.mp4",
    ):
        assert (tmp_path / name).stat().st_size > 1000, name
    stills = sorted(tmp_path.glob("still_*.png"))
    assert len(stills) == 8
    with Image.open(stills[0]) as im:
        assert im.size == (1280, 720)
    # side by side: two frames wide
    import imageio_ffmpeg

    meta = next(imageio_ffmpeg.read_frames(str(tmp_path / "reset_vs_rituximab.mp4")))
    assert tuple(meta["size"]) == (1920, 540)

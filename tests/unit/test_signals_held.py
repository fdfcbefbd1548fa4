"""A run's last outputs are written with a second stop signal held back (Ctrl-C twice, or a
cohort's pool ending its other workers once one worker has stopped, cannot cut them short)."""

from __future__ import annotations

import json
import os
import signal
import time
import tomllib

import pytest

from immunesim import runner
from immunesim.runner import _signals_held, _stop_on_signals
from tests.conftest import SMALL_SCENARIO_TOML


def _signal_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.1)  # Python runs its handler at its next check


def test_a_second_signal_waits_for_the_writing_then_stops_the_run():
    done: list[str] = []
    with _stop_on_signals() as caught:
        _signal_self()  # the first asks the run to stop at the next step boundary
        assert caught == [signal.SIGTERM]
        with pytest.raises(KeyboardInterrupt):
            with _signals_held():
                _signal_self()  # the second, while the outputs are written
                done.append("written")
        done.append("stopped")
    assert done == ["written", "stopped"]


def test_a_second_signal_outside_the_writing_stops_at_once():
    with _stop_on_signals() as caught:
        _signal_self()
        assert caught
        with pytest.raises(KeyboardInterrupt):
            _signal_self()


def test_a_block_without_a_signal_leaves_nothing_behind():
    with _stop_on_signals() as caught:
        with _signals_held():
            pass
        assert not caught


def test_a_second_signal_while_the_last_results_are_computed_leaves_an_interrupted_run(
    tmp_path, monkeypatch
):
    """A cohort's workers stop together, and the pool ends the others with a second SIGTERM
    when the first one has stopped: it arrives while their last results are computed. The
    manifest must still say ``interrupted`` (the first one's status), never ``running``."""
    real = runner._results

    def results(sim, status, *args, **kwargs):
        if status == "interrupted":
            _signal_self()  # the pool's second signal
        return real(sim, status, *args, **kwargs)

    monkeypatch.setattr(runner, "_results", results)
    sent: list[int] = []

    def first_signal(sim) -> None:
        if not sent:
            sent.append(sim.step_index)
            _signal_self()  # the cohort stops its workers

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        runner.run(tomllib.loads(SMALL_SCENARIO_TOML), 1, out=out, progress=first_signal,
                   cache=False)  # fmt: skip
    assert sent
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert (out / "checkpoint.npz").is_file()

"""A run's last outputs are written with a second stop signal held back (Ctrl-C twice, or a
cohort's pool ending its other workers once one worker has stopped, cannot cut them short)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from immunesim.runner import _signals_held, _stop_on_signals


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

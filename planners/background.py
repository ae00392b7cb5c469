"""The planner's background thread: "is it done?" checks run on it while the simulator steps.

MuJoCo and its software renderer keep about one core busy, so on a small machine a check beside the next env
step costs the loop nearly nothing. Every agent in the process shares the thread, and waits for the call in
flight (`settle`) before it uses torch itself, so model code never runs on two threads at once. The call runs
on one torch thread (two would fight the renderer for the cores); its scores match in-line ones to float
rounding.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

_checks: ThreadPoolExecutor | None = None
_in_flight: Future | None = None


def settle() -> None:
    """Wait for the planner call running in the background, if any."""
    if _in_flight is not None:
        _in_flight.result()


def _one_thread(fn, *args):
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(n)


def in_background(fn: Callable, *args) -> Future:
    """Run fn(*args) on the shared background thread (one torch thread); `settle()` waits for it."""
    global _checks, _in_flight
    if _checks is None:
        _checks = ThreadPoolExecutor(1, thread_name_prefix="planner-checks")
    _in_flight = _checks.submit(_one_thread, fn, *args)
    return _in_flight

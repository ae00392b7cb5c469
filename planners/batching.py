"""One planner answering several closed loops' calls in batches.

Batches: the rollout runner steps N envs in lockstep, and N agents ask the planner for plans and checks at the
same steps (every agent checks every `check_every` steps, and after a drop several re-plan together). Asked one
by one, a 7B planner reads its weights once per agent per token; asked together, once per token for all of them
(docs/BENCHMARKS.md, bench/plan_latency.py --batch). `PlanBatcher.run` runs the agents' steps on threads, one at
a time (model and policy code never run on two threads at once); a planner call blocks its agent, and when every
agent still stepping is blocked, `run` answers the waiting calls in one batch per kind (plans, checks). A
check sent to be answered later (`are_done_later`, the background check) joins the next batch, or, if none
comes before the step ends, is answered in the background while the simulator steps. One process holds the
model; across machines the same batches would come from a planner server (issue 43's shards).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from embodied.planners.background import in_background, settle
from embodied.planners.plan import Plan
from embodied.planners.planners import Planner


class _Call:
    """One agent's planner call, waiting for its batch."""

    def __init__(self, kind: str, args: tuple, blocking: bool = True):
        self.kind, self.args, self.blocking = kind, args, blocking
        self.answered = False
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> Any:
        settle()  # a call left for the background is answered there
        if not self.answered:
            raise RuntimeError("planner call not answered: it was made outside PlanBatcher.run")
        if self.error is not None:
            raise self.error
        return self.value


class PlanBatcher(Planner):
    """A `batched` planner (an EmbodiedGPT planner: `replan_batch`, `are_done_batch`) shared by the agents whose
    steps `run` runs: each agent takes it as its planner. Calls outside `run` are answered at once, alone."""

    def __init__(self, planner: Planner):
        self.planner = planner
        self.name = planner.name
        self.cameras = planner.cameras
        self._cv = threading.Condition()  # its lock is held by the one agent thread that is running
        self._pending: list[_Call] = []
        self._blocked = 0  # agent threads waiting for an answer
        self._running = 0  # agent threads inside `run` that have not finished their step
        self._pool: ThreadPoolExecutor | None = None
        self._threads = 0
        self.batches: list[tuple[str, int]] = []  # (kind, size) of every batch answered: what batching bought

    @property
    def detector_cameras(self) -> list[str]:
        return self.planner.detector_cameras

    # -- what the agents call --------------------------------------------------------------------------
    def plan(self, video, instruction, info=None) -> Plan:
        return self.replan(video, instruction, "", info)

    def replan(self, video, instruction, experience, info=None) -> Plan:
        return self._wait(_Call("plan", (video, instruction, experience)))

    def are_done(self, video, subgoals, info=None, frames=None) -> list[bool]:
        return self._wait(_Call("done", (video, list(subgoals), frames)))

    def is_done(self, video, subgoal, info=None, frames=None) -> bool:
        return self.are_done(video, [subgoal], info, frames)[0]

    def are_done_later(self, video, subgoals, info=None, frames=None) -> _Call:
        """A check whose answer the agent reads at its next step (`.result()`): it joins the next batch."""
        call = _Call("done", (video, list(subgoals), frames), blocking=False)
        with self._cv:
            self._pending.append(call)
            if self._running == 0:  # not inside `run`: answer it now
                self._flush()
        return call

    # -- running the agents' steps together --------------------------------------------------------------
    def run(self, steps: Sequence[Callable[[], Any]]) -> list[Any]:
        """Run the steps (each one agent's `act`) on threads, one at a time, batching their planner calls;
        their results in order. The batches are answered here, on the calling thread: torch's CPU thread pools
        belong to the thread that calls into them, and a second thread's pool waiting beside the first's
        slowed a plan 3x on 2 cores. So the agents' own torch work (a learned policy) runs on one thread, and
        checks left pending at the end are answered in the background on one thread, as before."""
        import torch

        settle()
        if not steps:
            return []
        if len(steps) > self._threads:  # one thread per agent: each blocks in its own step
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._pool, self._threads = ThreadPoolExecutor(len(steps), thread_name_prefix="agent"), len(steps)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with self._cv:
                self._running = len(steps)
                futures = [self._pool.submit(self._step, fn) for fn in steps]
                while True:
                    self._cv.wait_for(lambda: self._running == 0 or self._blocked == self._running)
                    if self._running == 0:
                        break
                    torch.set_num_threads(threads)  # every agent still stepping waits: answer them all
                    try:
                        self._flush()
                    finally:
                        torch.set_num_threads(1)
                calls, self._pending = self._pending, []
        finally:
            torch.set_num_threads(threads)
        out = [f.result() for f in futures]
        if calls:
            in_background(self._answer, calls)
        return out

    def _step(self, fn: Callable[[], Any]) -> Any:
        with self._cv:
            try:
                return fn()
            finally:
                self._running -= 1
                self._cv.notify_all()

    def _wait(self, call: _Call) -> Any:
        with self._cv:
            self._pending.append(call)
            if self._running == 0:  # not inside `run`: answered now, on this thread
                self._flush()
            else:
                self._blocked += 1
                self._cv.notify_all()  # `run` answers once every agent still stepping waits
                while not call.answered:
                    self._cv.wait()
        return call.result()

    def _flush(self) -> None:
        """Answer every pending call (the lock held), then wake their agents."""
        settle()
        calls, self._pending = self._pending, []
        # Unblocked now, not when each agent wakes: `run` must not count the answered ones as still waiting.
        self._blocked -= sum(c.blocking for c in calls if self._running)
        self._answer(calls)
        self._cv.notify_all()

    def _answer(self, calls: list[_Call]) -> None:
        for kind in ("plan", "done"):
            batch = [c for c in calls if c.kind == kind]
            if not batch:
                continue
            try:
                if kind == "plan":
                    v, i, e = zip(*(c.args for c in batch))
                    values = self.planner.replan_batch(list(v), list(i), list(e))
                else:
                    v, s, f = zip(*(c.args for c in batch))
                    values = self.planner.are_done_batch(list(v), list(s), list(f))
            except Exception as err:  # noqa: BLE001 -- every caller of the batch gets the error
                values, error = [None] * len(batch), err
            else:
                error = None
            self.batches.append((kind, len(batch)))
            for c, value in zip(batch, values):
                c.value, c.error, c.answered = value, error, True

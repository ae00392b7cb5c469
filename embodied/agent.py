"""EmbodiedAgent: the closed loop. Plan from the first egocentric clip, drive the policy sub-goal by
sub-goal, judge from the execution video when a sub-goal is done, and when one fails (its step budget is
spent, or an earlier sub-goal is undone, such as a dropped object) write an experience summary and re-plan.

It plugs into the parallel rollout runner as an Actor (envs/actor.py), so
evaluation gets worker processes, per-episode JSONL, resume and mp4s for free. The env's own sub-goal
is ignored except by the oracle planner; `episode_summary()` is what the runner stores per episode.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from embodied.configuration_agent import AgentConfig
from embodied.datasets.corpus import experience_budget, experience_regressed
from embodied.envs.actor import Actor
from embodied.planners import Plan, Planner
from embodied.planners.background import settle


class EmbodiedAgent(Actor):
    """The loop as one actor (envs/actor.py): plans, checks and re-plans around `policy`, itself an Actor."""

    def __init__(self, planner: Planner, policy, cfg: AgentConfig):
        self.planner, self.policy, self.cfg = planner, policy, cfg
        self.reset()

    def reset(self) -> None:
        settle()
        self._asked: tuple[list[str], int, object] | None = None  # a check on its way (.result()), from the last step
        self.frames: deque = deque(maxlen=(self.cfg.clip_len - 1) * self.cfg.clip_stride + 1)
        self.latest: dict = {}  # the newest frame of each camera the planner's success detector reads
        self.plan: Plan | None = None
        self.finished = False  # every step of the plan judged done (the last one stays current)
        self.k = 0  # index of the sub-goal in progress
        self.steps_in_subgoal = 0
        self.t = 0
        self.replans = 0
        self.log: list[dict] = []
        self.task_steps: list[str] = []  # the first plan's steps: what a re-plan after a regression is checked against
        self.checks: list[list] = []  # [t of the clip, sub-goals asked, answers]: what the detector said, when
        self.policy.reset()

    def seed(self, episode_seed: int) -> None:
        self.policy.seed(episode_seed)

    # -- what the planner sees ----------------------------------------------------------------------
    def clip(self) -> np.ndarray:
        """(T, H, W, 3), or (V, T, H, W, 3) when the planner watches V cameras."""
        frames = list(self.frames)
        idx = [max(0, len(frames) - 1 - self.cfg.clip_stride * i) for i in range(self.cfg.clip_len - 1, -1, -1)]
        clip = np.stack([frames[i] for i in idx])
        return clip if isinstance(self.cfg.camera, str) else clip.transpose(1, 0, 2, 3, 4)

    @property
    def subgoal(self) -> str:
        if self.plan is None or not self.plan.subgoals:
            return self.plan.task if self.plan is not None else ""
        return self.plan.subgoals[min(self.k, len(self.plan) - 1)].text

    def _event(self, kind: str, **kw) -> None:
        self.log.append({"t": self.t, "event": kind, **kw})

    def _new_plan(self, plan: Plan, kind: str, reason: str = "", **extra) -> None:
        if not plan.subgoals and self.plan is not None and self.plan.subgoals:
            # An unreadable re-plan must not replace a usable plan: keep going on the old one.
            self.steps_in_subgoal = 0
            self._event(
                kind, plan=[], partial=True, reason=reason + " (the new plan had no steps; the previous one stands)"
            )
            return
        self.plan, self.k, self.steps_in_subgoal, self.finished = plan, 0, 0, False
        if not self.task_steps:
            self.task_steps = [s.text for s in plan.subgoals]
        self._event(kind, plan=[s.text for s in plan.subgoals], partial=plan.partial, reason=reason, **extra)

    # -- the loop, one env step at a time ----------------------------------------------------------
    def act(self, obs: dict, subgoal: str | None = None, info: dict | None = None) -> np.ndarray:
        cam = self.cfg.camera
        self.frames.append(obs["rgb"][cam] if isinstance(cam, str) else np.stack([obs["rgb"][c] for c in cam]))
        self.latest = {c: obs["rgb"][c] for c in self.planner.detector_cameras}  # what a success detector reads
        instruction = (info or {}).get("instruction", "")
        settle()
        if self._asked is not None:  # the answer to the check sent with the previous step
            (asked, t, answer), self._asked = self._asked, None
            self._decide(asked, answer.result(), instruction, info, t)
        check = self.plan is not None and self.t % self.cfg.check_every == 0
        if self.plan is None:
            self._new_plan(self.planner.plan(self.clip(), instruction, info), "plan")
        elif check and not self.cfg.background_checks:
            self._check(instruction, info)
        action = self.policy.act(obs, self.subgoal, info)  # a scripted controller reads the scene's object names
        if check and self.cfg.background_checks:
            self._check(instruction, info)
        self.t += 1
        self.steps_in_subgoal += 1
        return action

    def _check(self, instruction: str, info: dict | None) -> None:
        if not self.plan.subgoals:
            if self.cfg.replan and self.replans < self.cfg.max_replans:
                self._fail(instruction, info, "the plan has no steps", "no_steps")
            return  # nothing to judge; the policy keeps acting on the instruction alone
        # The current sub-goal, and the previous one to catch a regression (e.g. the object fell): one call.
        asked = [self.subgoal] + ([self.plan.subgoals[self.k - 1].text] if self.k > 0 else [])
        if self.cfg.background_checks:
            self._asked = asked, self.t, self.planner.are_done_later(self.clip(), asked, info, self.latest)
        else:
            self._decide(asked, self.planner.are_done(self.clip(), asked, info, self.latest), instruction, info)

    def _decide(self, asked: list[str], done: list[bool], instruction: str, info: dict | None,
                t: int | None = None) -> None:
        """Act on the answers to a check of the clip that ended at step `t` (default: now)."""
        t = self.t if t is None else t
        self.checks.append([t, asked, [bool(d) for d in done]])
        if self.k > 0 and not done[1]:
            undone = self._earliest_undone(asked[1], info) if self.cfg.ground_replans else asked[1]
            return self._fail(instruction, info, experience_regressed(self.k + 1, self.subgoal, undone),
                              "regressed", undone=undone, clip_t=t)
        if done[0] and not self.finished:
            self._event("done", subgoal=self.subgoal)
            self.k += 1
            self.steps_in_subgoal = 0
            if self.k >= len(self.plan):
                self.k = len(self.plan) - 1  # keep acting on the last step until the env ends the episode
                self.finished = True
            return
        self.finished = self.finished and done[0]
        # Not done, or the last step judged done again while the episode goes on. The env ends an episode when
        # its task is done, so the last step's budget keeps counting: a detector that says "done" too early
        # must not switch off the backstop.
        if self.steps_in_subgoal > self.cfg.subgoal_budget:
            self._fail(instruction, info, experience_budget(self.k + 1, self.subgoal, self.steps_in_subgoal), "budget")

    def _fail(self, instruction: str, info: dict | None, experience: str, cause: str, **kw) -> None:
        """`cause`: regressed (an earlier step judged undone; `undone` names it), budget or no_steps."""
        self._event("failure", subgoal=self.subgoal, reason=experience, cause=cause, **kw)
        if not self.cfg.replan or self.replans >= self.cfg.max_replans:
            self.steps_in_subgoal = 0  # no (more) re-planning: keep going on the current plan
            return
        self.replans += 1
        plan = self.planner.replan(self.clip(), instruction, experience, info)
        extra = {}
        if cause == "regressed" and self.cfg.ground_replans:
            plan, extra = self._grounded(plan, kw["undone"], instruction, info)
        self._new_plan(plan, "replan", experience, **extra)
        self.policy.reset()  # a fresh start on the new plan (a scripted expert restarts its script)

    def _earliest_undone(self, undone: str, info: dict | None) -> str:
        """The first step of the first plan, up to `undone`, that the detector now says is not done: what the
        experience names and where a re-plan starts (a cube dropped away from the hand must be reached again,
        not grasped where it lay). One batched check of the current clip and frames."""
        steps = self.task_steps
        if undone not in steps or steps.index(undone) == 0:
            return undone
        done = self.planner.are_done(self.clip(), steps[:steps.index(undone)], info, self.latest)
        return next((s for s, d in zip(steps, done) if not d), undone)

    def _grounded(self, plan: Plan, undone: str, instruction: str, info: dict | None) -> tuple[Plan, dict]:
        """A re-plan after a regression, held to what the detector saw: it starts no later than the earliest
        step found undone (`_earliest_undone`). Otherwise the planner's plan stands. Everything here is the
        planner's own: its first plan's steps and its answers on the current clip."""
        steps = self.task_steps
        if not plan.subgoals or undone not in steps or plan.subgoals[0].text not in steps:
            return plan, {}
        start = min(steps.index(plan.subgoals[0].text), steps.index(undone))
        if start == steps.index(plan.subgoals[0].text):
            return plan, {}
        return Plan.from_subgoals(instruction or plan.task, steps[start:]), {"grounded_from": plan.subgoals[0].text}

    # -- what the runner records ----------------------------------------------------------------------
    def episode_summary(self) -> dict:
        return {"replans": self.replans, "failures": sum(e["event"] == "failure" for e in self.log),
                "first_plan": self.log[0]["plan"] if self.log else [], "agent_log": self.log, "checks": self.checks}

    def annotate(self, frame: np.ndarray) -> np.ndarray:
        """The frame with the current sub-goal (and re-plan count) written on it, for the mp4s."""
        return draw_text(frame, f"{self.k + 1}: {self.subgoal}" + (f" [replan {self.replans}]" if self.replans else ""))


def draw_text(frame: np.ndarray, text: str) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    scale = max(w, 256) / 256
    out = np.ascontiguousarray(frame)
    if w < 256:  # small frames: upscale so that the text stays legible
        out = cv2.resize(out, (256, int(256 * h / w)), interpolation=cv2.INTER_NEAREST)
        h, w = out.shape[:2]
    cv2.rectangle(out, (0, 0), (w, int(18 * scale)), (0, 0, 0), -1)
    cv2.putText(
        out, text[:60], (4, int(13 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.38 * scale, (255, 255, 255), 1, cv2.LINE_AA
    )
    return out

"""Planners behind one interface:

    plan(video, instruction, info=None) -> Plan
    replan(video, instruction, experience, info=None) -> Plan
    is_done(video, subgoal, info=None, frames=None) -> bool         # success detection from the execution video
    are_done(video, subgoals, info=None, frames=None) -> list[bool]  # several sub-goals judged at once

An EmbodiedGPT planner also answers several agents' calls at once (`replan_batch`, `are_done_batch`): what
`PlanBatcher` (planners/batching.py) uses when several closed loops share one planner.

`video` is the latest egocentric clip (T, H, W, 3) uint8, or (V, T, H, W, 3) for a planner that watches V
cameras; `frames` the newest frame of every camera the env renders ({camera: (H, W, 3)}), which a success
detector reads (planners/success_detector.py). `info` is the env's info dict; only the oracle reads it.
The EmbodiedGPT planner answers from the video; the blind baseline is the same model with no
visual tokens in its prompt (it sees only the text), the oracle takes the sub-goals from the simulator.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

from embodied.errors import EmbodiedError
from embodied.planners.background import in_background
from embodied.planners.done_head import DoneHead, clip_feature
from embodied.planners.plan import Plan, parse_plan
from embodied.planners.success_detector import SuccessDetector, load_detector


class Planner:
    """What the agent asks: a plan, a re-plan with an experience, whether sub-goals are done. A planner whose
    `batched` is true also answers several agents' calls at once (`replan_batch`, `are_done_batch`), and the
    loop may then share it between agents (planners/batching.py)."""

    name = "planner"
    cameras: list[str] = []  # what it watches, when it knows (an EmbodiedGPT checkpoint records its training cameras)
    batched = False  # the oracle keeps state per agent: one instance each

    def plan(self, video, instruction: str, info: dict | None = None) -> Plan:
        raise NotImplementedError

    def replan(self, video, instruction: str, experience: str, info: dict | None = None) -> Plan:
        return self.plan(video, instruction, info)

    @property
    def detector_cameras(self) -> list[str]:
        """The cameras whose newest frames `are_done` reads (besides the clip)."""
        return []

    def is_done(self, video, subgoal: str, info: dict | None = None, frames: dict | None = None) -> bool:
        raise NotImplementedError

    def are_done(self, video, subgoals: list[str], info: dict | None = None, frames: dict | None = None) -> list[bool]:
        return [self.is_done(video, s, info, frames) for s in subgoals]

    def are_done_later(self, video, subgoals: list[str], info: dict | None = None, frames: dict | None = None):
        """`are_done` on the background thread, beside the next env step: its answer is `.result()`."""
        return in_background(self.are_done, video, subgoals, info, frames)

    def replan_batch(self, videos: list, instructions: list[str], experiences: list[str]) -> list[Plan]:
        """Plans for several agents at once (`batched` planners)."""
        raise NotImplementedError(f"{type(self).__name__} answers one agent at a time")

    def are_done_batch(self, videos: list, subgoals: list[list[str]], frames: list[dict | None]) -> list[list[bool]]:
        """Done checks for several agents at once (`batched` planners)."""
        raise NotImplementedError(f"{type(self).__name__} answers one agent at a time")


class OraclePlanner(Planner):
    """The simulator's sub-goals from the current one on, and its own progress labels: isolates control.

    `lag` > 0 makes it a slower detector, for demos: a finished step is still called not done for up to
    `lag` checks (drawn per instruction and step, so an episode gets the same lags whatever the worker),
    while the controller goes on doing it. A learned detector is that late at times; its training clips must
    show a finished step being held. An undone step (a drop) is reported at once."""

    name = "oracle"

    def __init__(self, lag: int = 0):
        if lag < 0:
            raise EmbodiedError(f"oracle lag: expected a number of checks >= 0, got {lag}")
        self.lag = int(lag)
        self._seen: dict[str, int] = {}  # sub-goal -> consecutive checks it has been done for
        self._instruction = ""  # of the last plan: with the sub-goal, what each step's lag is drawn from

    def plan(self, video, instruction, info=None):
        if info is None or "subgoals" not in info:
            raise EmbodiedError("the oracle planner needs the env's info (subgoals, subgoal_index)")
        self._instruction, self._seen = instruction, {}  # a new plan (or episode): counts start again
        return Plan.from_subgoals(instruction, list(info["subgoals"])[int(info["subgoal_index"]):])

    def is_done(self, video, subgoal, info=None, frames=None):
        subgoals = list(info["subgoals"])
        if subgoal not in subgoals:
            return False
        done = bool(info["success"]) or int(info["subgoal_index"]) > subgoals.index(subgoal)
        if not self.lag:
            return done
        self._seen[subgoal] = self._seen.get(subgoal, 0) + 1 if done else 0
        lag = zlib.crc32(f"{self._instruction}|{subgoal}".encode()) % (self.lag + 1)
        return self._seen[subgoal] > lag


class EmbodiedGPTPlanner(Planner):
    batched = True
    """An EmbodiedGPT checkpoint: plans by generation, judges sub-goals by comparing the likelihoods of
    'yes' and 'no' to "Is '<sub-goal>' done?" (one forward pass, no sampling), or, for the kinds of sub-goal
    its success-detection head was fitted on (`embodied train-done`, planners/done_head.py), by the head's
    probe on the clip's ViT features; where the checkpoint has a success detector (`embodied train-detector`,
    planners/success_detector.py), it answers the kinds it knows from the newest frames, before either."""

    name = "egpt"
    blind = False

    def __init__(self, model, max_new_tokens: int = 160, done_head: DoneHead | None = None,
                 detector: SuccessDetector | None = None):
        self.model = model.eval()
        self.done_head = DoneHead() if self.blind or done_head is None else done_head  # blind: no pixels to probe
        self.detector = None if self.blind else detector
        # Consecutive checks share all but the newest slots of their clips: room for 16 agents' (4 slots a clip).
        self.model.vision.enable_slot_cache(128)
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_pretrained(cls, path: str | Path, compile: bool = False, **kwargs) -> "EmbodiedGPTPlanner":
        """`compile`: compile the plan decoder's per-token step (torch.compile; CUDA graphs on a GPU): each new
        batch size and cache length compiles once (seconds on the tiny model), then every token is faster."""
        from embodied.assets import resolve
        from embodied.modeling import EmbodiedGPT

        kwargs.setdefault("done_head", DoneHead.load(resolve(path)))
        kwargs.setdefault("detector", load_detector(resolve(path)))
        model = EmbodiedGPT.from_pretrained(path)
        model.compile_decoding = bool(compile)
        return cls(model, **kwargs)

    def _video(self, video) -> torch.Tensor:
        """One clip (T, H, W, 3), or one clip per camera (V, T, H, W, 3) for a planner of several views, as a
        batch of one."""
        v = torch.as_tensor(np.asarray(video)) if not torch.is_tensor(video) else video
        return v[None] if v.dim() == 4 or v.dim() == 5 and self.model.cfg.vision.views > 1 else v

    @property
    def cameras(self) -> list[str]:
        """The cameras the checkpoint was trained to watch, in order ([] when it does not say)."""
        return list(self.model.cfg.cameras)

    def plan(self, video, instruction, info=None):
        return self.replan(video, instruction, "", info)

    def replan(self, video, instruction, experience, info=None):
        return self.replan_batch([video], [instruction], [experience])[0]

    def replan_batch(self, videos: list, instructions: list[str], experiences: list[str]) -> list[Plan]:
        """Several clips' plans in one generation (one per clip; an empty experience: a first plan)."""
        v = torch.cat([self._video(x) for x in videos])
        texts = self.model.plan(v, instructions, self.max_new_tokens, experiences, self.blind)
        return [parse_plan(t) for t in texts]

    @property
    def detector_cameras(self) -> list[str]:
        return list(self.detector.cfg.cameras) if self.detector is not None else []

    def is_done(self, video, subgoal, info=None, frames=None):
        return self.are_done(video, [subgoal], info, frames)[0]

    def are_done(self, video, subgoals, info=None, frames=None):
        return self.are_done_batch([video], [subgoals], [frames])[0]

    def are_done_batch(self, videos: list, subgoals: list[list[str]], frames: list[dict | None]) -> list[list[bool]]:
        """Every clip's questions in one batch per judge: the success detector decides the kinds it knows (from
        each clip's newest frames), then the head's probes (on each clip's grey ViT features), then the LLM's
        yes/no likelihoods (each clip encoded once; 'yes' and 'no' share each question's cache)."""
        from embodied.datasets.corpus import done_question

        rows = [(i, s) for i, qs in enumerate(subgoals) for s in qs]  # every question, with its clip
        start = np.cumsum([0] + [len(qs) for qs in subgoals])  # clip i's questions: rows start[i]:start[i + 1]
        head: list = [None] * len(rows)
        det = [i for i in range(len(videos)) if self.detector is not None and frames[i] is not None
               and self.detector.answers(subgoals[i])]
        if det:
            for i, margins in zip(det, self.detector.judge_batch([frames[i] for i in det], [subgoals[i] for i in det])):
                head[start[i]:start[i + 1]] = margins
        probe = sorted({i for (i, s), h in zip(rows, head) if h is None and self.done_head.answers([s])})
        if probe:  # the grey clips' ViT pass only where a probe will read them
            feats = dict(zip(probe, clip_feature(self.model, torch.cat([self._video(videos[i]) for i in probe]))))
            head = [self.done_head.logits(feats[i], [s])[0] if h is None and i in feats else h
                    for (i, s), h in zip(rows, head)]
        ask = [(i, s) for (i, s), h in zip(rows, head) if h is None]
        if ask:
            clips = sorted({i for i, _ in ask})
            v = torch.cat([self._video(videos[i]) for i in clips])
            qs = [done_question(s) for _, s in ask]
            yes_no = self.model.choice_logprobs(v, qs, ["yes", "no"], eformer_text=qs, blind=self.blind,
                                                rows=[clips.index(i) for i, _ in ask]).tolist()
            margins = iter(yes - no for yes, no in yes_no)
            head = [h if h is not None else next(margins) for h in head]
        answers = iter(bool(h > 0) for h in head)
        return [[next(answers) for _ in qs] for qs in subgoals]


class BlindPlanner(EmbodiedGPTPlanner):
    """The same LLM and adapter with no visual tokens: the lower bound that shows what vision adds."""

    name = "blind"
    blind = True


def make_planner(kind: str, path: str | Path | None = None, **kwargs) -> Planner:
    if kind == "oracle":
        return OraclePlanner()
    if kind in ("egpt", "blind"):
        if not path:
            raise EmbodiedError(f"planner={kind} needs a checkpoint: planner.path=DIR")
        cls = EmbodiedGPTPlanner if kind == "egpt" else BlindPlanner
        return cls.from_pretrained(path, **kwargs)
    raise EmbodiedError(f"planner.type={kind!r}: expected egpt, blind or oracle")

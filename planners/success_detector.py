"""The planner's success detector: how far along its task the scene is, from the latest frame of each camera.

The loop asks "is '<sub-goal>' done?" every few steps. Read off the 8-frame wrist clip, by the LLM or by a
probe on the frozen ViT's features (planners/done_head.py), the answer came late ("place" several checks after
the simulator, "release" never) and a dropped cube was re-grasped from where it lay instead of reached again
(docs/BENCHMARKS.md). Whether a step is finished is geometry in the current scene: the hand within a few
centimetres of the cube, the fingers closed on it, the cube above the table, on the other cube. So this
detector reads the newest frame of every camera in colour (the third-person view sees a cube on a cube, the
wrist view the fingers close) and is trained on frames the simulator labels for free (rendered from stored
demo states, datasets/pose_frames.py: noisy skill-controller demos with drops, displacements and pushes, and
demos of a late detector that holds finished steps).

It answers one question per sub-goal kind (the sub-goal with its colour names taken out, done_head.kind):
one logit each, the target "the simulator's sub-goal index has passed this step, or the task is done". So
the kinds of a task form its progress ladder, and the first undone kind of a plan is where a re-plan starts.

Per camera: pixel_conv (a 4-layer CNN to a map at a quarter of the input size), read by spatial-softmax
keypoints (where things are) and an average pool (what is there); an MLP maps all views to the kinds'
logits. Each kind's threshold is set on held-out demos (at most `max_fpr` of their unfinished frames called
done: a false "done" cannot be taken back). A checkpoint is a directory: config.json + model.safetensors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from embodied.errors import EmbodiedError
from embodied.layers import SpatialSoftmax, pixel_conv, resize
from embodied.planners.configuration_success_detector import SuccessDetectorConfig
from embodied.planners.done_head import kind
from embodied.pretrained import CONFIG_NAME, PretrainedMixin

DIR = "success_detector"  # inside a planner checkpoint


class SuccessDetector(PretrainedMixin, nn.Module):
    config_class = SuccessDetectorConfig
    checkpoint_kind = "a success detector"

    def __init__(self, cfg: SuccessDetectorConfig):
        super().__init__()
        if not cfg.cameras or not cfg.kinds:
            raise EmbodiedError("success detector: expected at least one camera and one sub-goal kind")
        self.cfg = cfg
        self.convs = nn.ModuleList(pixel_conv(cfg.channels) for _ in cfg.cameras)
        self.points = nn.ModuleList(SpatialSoftmax(2 * cfg.channels, cfg.keypoints) for _ in cfg.cameras)
        width = len(cfg.cameras) * (2 * cfg.keypoints + 2 * cfg.channels)
        self.mlp = nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden),
                                 nn.ReLU(), nn.Linear(cfg.hidden, len(cfg.kinds)))

    def forward(self, rgb: dict[str, torch.Tensor]) -> torch.Tensor:
        """{camera: (B, H, W, 3) uint8} -> (B, kinds) logits."""
        feats = []
        for cam, conv, points in zip(self.cfg.cameras, self.convs, self.points):
            x = conv(resize(rgb[cam], self.cfg.image_size))
            feats += [points(x), x.mean((2, 3))]
        return self.mlp(torch.cat(feats, 1))

    def answers(self, subgoals: Sequence[str]) -> bool:
        return any(kind(s) in self.cfg.kinds for s in subgoals)

    def judge(self, frames: dict[str, np.ndarray], subgoals: Sequence[str]) -> list[float | None]:
        """Per sub-goal, its logit minus its kind's threshold (> 0: done), None for a kind it does not know."""
        return self.judge_batch([frames], [subgoals])[0]

    @torch.no_grad()
    def judge_batch(self, frames: Sequence[dict[str, np.ndarray]], subgoals: Sequence[Sequence[str]]) -> list[list]:
        """`judge` for several scenes at once (one forward pass): per scene, its sub-goals' margins."""
        for f in frames:
            missing = [c for c in self.cfg.cameras if c not in f]
            if missing:
                raise EmbodiedError(f"success detector: no frame of camera(s) {missing}; it reads {self.cfg.cameras}")
        logits = self({c: torch.as_tensor(np.stack([np.asarray(f[c]) for f in frames])) for c in self.cfg.cameras})
        out = []
        for row, qs in zip(logits.tolist(), subgoals):
            margin = {k: x - t for k, x, t in zip(self.cfg.kinds, row, self.cfg.thresholds)}
            out.append([margin.get(kind(s)) for s in qs])
        return out

    @classmethod
    def from_config(cls, cfg: SuccessDetectorConfig, path: Path) -> "SuccessDetector":
        if len(cfg.thresholds) != len(cfg.kinds):
            raise EmbodiedError(f"{path / CONFIG_NAME}: {len(cfg.kinds)} kinds but {len(cfg.thresholds)} thresholds")
        return cls(cfg)


def load_detector(planner_dir: str | Path) -> SuccessDetector | None:
    """The detector saved in a planner checkpoint, or None where it has none."""
    p = Path(planner_dir) / DIR
    return SuccessDetector.from_pretrained(p) if (p / "config.json").exists() else None


def done_labels(subgoals: Sequence[str], index: int, success: bool | None, kinds: Sequence[str]) -> tuple[list, list]:
    """One frame's targets over `kinds`: (done 0/1, known 0/1). A kind of this task is done when the
    simulator's index has passed it or the task succeeded; without a success flag the last step is unknown.
    Kinds of other tasks are unknown (masked)."""
    y, m = [0.0] * len(kinds), [0.0] * len(kinds)
    for i, s in enumerate(subgoals):
        k = kind(s)
        if k not in kinds:
            continue
        j = kinds.index(k)
        if success is None and i == len(subgoals) - 1 and index >= i:
            continue
        y[j], m[j] = float(bool(success) or index > i), 1.0
    return y, m

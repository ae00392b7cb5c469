"""The success detector's config (the model is in success_detector.py beside it)."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class SuccessDetectorConfig:
    """Args:
        cameras: the views it reads, in order (keys of obs["rgb"]).
        kinds: the sub-goal kinds it answers, one logit each.
        thresholds: per kind, the logit above which it says "done" (set on held-out demos).
        image_size: frames are resized to this square first.
        channels: the CNN's width (its last layers have twice as many).
        keypoints: spatial-softmax keypoints per view.
        hidden: MLP width.
        train_info: how it was made (frames, steps, held-out scores).
    """

    cameras: list[str] = dataclasses.field(default_factory=list)
    kinds: list[str] = dataclasses.field(default_factory=list)
    thresholds: list[float] = dataclasses.field(default_factory=list)
    image_size: int = 84
    channels: int = 16
    keypoints: int = 16
    hidden: int = 256
    train_info: dict = dataclasses.field(default_factory=dict)

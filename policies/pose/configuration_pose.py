"""The configs of the pose estimator (estimator.py) and of the policy that acts on its estimate (policy.py)."""
from __future__ import annotations

import dataclasses

from embodied.policies.state_bc.configuration_state_bc import StatePolicyConfig


@dataclasses.dataclass
class PoseEstimatorConfig:
    """Args:
        cameras: the views it reads, in order (each a key of obs["rgb"]).
        blocks: objects estimated (the first `blocks` pose blocks of obs/object).
        proprio_dim: size of obs["proprio"] (the hand's position is its first three numbers).
        image_size: frames are resized to this square before the CNN.
        channels: conv channels.
        keypoints: spatial-softmax keypoints per view.
        hidden: MLP width.
        env: the env its frames came from (task, cameras, size), for checks.
        train_info: how it was made (frames, steps).
    """

    cameras: list[str] = dataclasses.field(default_factory=list)
    blocks: int = 2
    proprio_dim: int = 9
    image_size: int = 84
    channels: int = 32
    keypoints: int = 32
    hidden: int = 512
    env: dict = dataclasses.field(default_factory=dict)
    train_info: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PosePolicyConfig(StatePolicyConfig):
    """StatePolicyConfig's fields, and:

    Args:
        estimator: the pose estimator's config (PoseEstimatorConfig, as train-pose saved it); its weights are in
            the policy's model.safetensors under `estimator.`.
    """

    type: str = "pose"
    estimator: dict = dataclasses.field(default_factory=dict)

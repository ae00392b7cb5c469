"""The pixel behaviour-cloning baseline's config (the policy is in policy.py beside it)."""
from __future__ import annotations

import dataclasses

from embodied.policies.configuration_policy import PolicyConfig


@dataclasses.dataclass
class CNNPolicyConfig(PolicyConfig):
    """PolicyConfig's fields, and:

    Args:
        image_size: frames are resized to this square before the CNN.
        channels: the CNN's channels.
        keypoints: spatial-softmax keypoints of its last layer.
    """

    type: str = "cnn"
    image_size: int = 84
    channels: int = 32
    keypoints: int = 32

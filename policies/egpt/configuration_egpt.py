"""The EmbodiedGPT policy's config (the policy is in policy.py beside it)."""
from __future__ import annotations

import dataclasses

from embodied.policies.configuration_policy import PolicyConfig


@dataclasses.dataclass
class EGPTPolicyConfig(PolicyConfig):
    """PolicyConfig's fields, and:

    Args:
        planner: the planner checkpoint whose ViT and Embodied-former it reads (relative paths: to the policy's
            directory).
        perception_sha: fingerprint of those weights when it was trained; loading refuses a planner whose
            perception changed since.
        use_subgoal: condition on the current sub-goal (the E-former's text); false: baseline (a), type global.
        freeze_perception: keep the ViT and E-former frozen (their features are then cached for training).
        query_dim: each query feature is projected to this before flattening.
        keypoints: spatial-softmax keypoints over the frozen ViT's patch tokens (0: none).
        object_dim: auxiliary target: the demos' object state (obs/object, standardised), predicted from the
            features and fed to the action head (0: off; train-policy sets it with policy.aux_object=true).
        object_weight: weight of the object-state loss.
        pixel_keypoints: keypoints of a CNN trained end to end on the frame, beside the frozen features (0: none).
        pixel_size: frames are resized to this square for that CNN.
        pixel_channels: that CNN's channels.
        pixel_film: FiLM that CNN on the sub-goal (needs pixel_keypoints and use_subgoal).
    """

    type: str = "egpt"
    planner: str = ""
    perception_sha: str = ""
    use_subgoal: bool = True
    freeze_perception: bool = True
    query_dim: int = 32
    keypoints: int = 32
    object_dim: int = 0
    object_weight: float = 1.0
    pixel_keypoints: int = 0
    pixel_size: int = 84
    pixel_channels: int = 32
    pixel_film: bool = False

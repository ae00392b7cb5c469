"""The low-dim state policy's config (the policy is in policy.py beside it)."""
from __future__ import annotations

import dataclasses

from embodied.policies.configuration_policy import PolicyConfig


@dataclasses.dataclass
class StatePolicyConfig(PolicyConfig):
    """PolicyConfig's fields, and:

    Args:
        object_dim: size of obs/object (set by train-policy from the demos).
        pose_blocks: obs/object read as this many (position, quaternion) blocks, whose positions from the hand are
            added as inputs.
        skills: the sub-goals' first words seen in the demos (the sub-goal's one-hot input).
        use_subgoal: condition on the current sub-goal's skill.
        std_floor: the smallest standard deviation an input is standardised with: an input that hardly varies in
            the demos (the level hand's quaternion) must not become tens of stds in a rollout.
        object_noise: training only: Gaussian noise (metres) on each object's position, so that the head tolerates
            a pose estimate's few millimetres of error instead of having seen only the simulator's exact poses.
    """

    type: str = "state"
    object_dim: int = 0
    pose_blocks: int = 0
    skills: list = dataclasses.field(default_factory=list)
    use_subgoal: bool = True
    std_floor: float = 0.05
    object_noise: float = 0.0

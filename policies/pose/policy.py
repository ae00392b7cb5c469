"""A Stack policy that acts from the cameras and proprioception only: the pose estimator (estimator.py) turns
both views into obs/object (each cube's position and yaw), and a low-dim head (state_bc) acts on that estimate,
conditioned on the current sub-goal's skill. The simulator's object state trains both parts (the estimator's
labels, the head's input in the demos) but is never read in a rollout.

One checkpoint: config.json (the head's config, `type: pose`, and the estimator's config under `estimator`) +
model.safetensors (head and estimator weights, the estimator's under `estimator.`). `embodied train-policy
policy.type=pose policy.estimator=<train-pose checkpoint>` trains the head on state demos with the estimator
frozen, and chooses its checkpoint by rollouts from the cameras.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from embodied.errors import EmbodiedError, check_fields
from embodied.policies.pose.configuration_pose import PosePolicyConfig
from embodied.policies.pose.estimator import PoseEstimator, PoseEstimatorConfig
from embodied.policies.state_bc.policy import StatePolicy


class PosePolicy(StatePolicy):
    """`select_action(obs, subgoal)` reads obs["rgb"] (the estimator's cameras) and obs["proprio"]; obs["object"]
    is ignored even where the env provides it."""
    config_class = PosePolicyConfig

    def __init__(self, cfg: PosePolicyConfig, root=None):
        super().__init__(cfg, root)
        check_fields(PoseEstimatorConfig, cfg.estimator, "policy.estimator.")
        self.estimator = PoseEstimator(PoseEstimatorConfig(**cfg.estimator))
        if self.estimator.cfg.blocks * 7 != cfg.object_dim:
            raise EmbodiedError(
                f"policy.estimator estimates {self.estimator.cfg.blocks} objects "
                f"({7 * self.estimator.cfg.blocks} numbers); the head reads obs/object of {cfg.object_dim}"
            )
        self.estimator.requires_grad_(False)  # trained by train-pose; the head learns on the demos' states

    @classmethod
    def from_parts(cls, head: StatePolicy, estimator: PoseEstimator) -> "PosePolicy":
        """A trained state policy's head and a trained estimator, as one policy that acts from the cameras (its
        env renders the estimator's cameras at the estimator's frame size)."""
        if type(head) is not StatePolicy:
            raise EmbodiedError(f"pose policy: the head must be a state policy, not {head.cfg.type!r}")
        env = {**head.cfg.env, "cameras": list(estimator.cfg.cameras)}
        env.update({k: estimator.cfg.env[k] for k in ("height", "width") if k in estimator.cfg.env})
        cfg = PosePolicyConfig(**{**dataclasses.asdict(head.cfg), "type": "pose", "env": env,
                                  "estimator": dataclasses.asdict(estimator.cfg)})
        policy = cls(cfg)
        policy.load_state_dict(head.state_dict(), strict=False)
        policy.load_estimator(estimator)
        return policy.to(head.device).eval()

    def load_estimator(self, estimator: PoseEstimator) -> None:
        """Take a trained estimator's weights (its config must be this policy's)."""
        if dataclasses.asdict(estimator.cfg) != self.cfg.estimator:
            raise EmbodiedError("pose policy: the estimator's config differs from policy.estimator")
        self.estimator.load_state_dict(estimator.state_dict())

    @property
    def cameras(self) -> list[str]:
        return list(self.estimator.cfg.cameras)

    def train(self, mode: bool = True) -> "PosePolicy":
        super().train(mode)
        self.estimator.eval()  # frozen: no training-mode behaviour, whatever the head does
        return self

    def check_obs(self, obs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(estimated object state, proprio): the state head's inputs, the object part from the cameras."""
        est = self.estimator.estimate(obs).astype(np.float32)
        return super().check_obs({**obs, "object": est})

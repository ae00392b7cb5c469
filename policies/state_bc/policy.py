"""Behaviour cloning from the simulator's low-dim state (robomimic's "low_dim" observations): proprioception
and the object poses the env reports (obs/object), plus each object's position from the hand, into an MLP.
Conditioned on the sub-goal by its skill (the first word: reach, grasp, lift, place, ...), so the planner's
re-plans steer it. No pixels: on a real robot obs/object needs a pose estimator; in simulation it is what
a precise grasp needs (docs/BENCHMARKS.md: the Stack pixel policies stop 2-3 cm off the cube). Without the
skill (`use_subgoal=false`) it ignores the planner's sub-goals, which is safer when the done detector is unsure.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from embodied.errors import EmbodiedError
from embodied.policies.base import Policy, action_head
from embodied.policies.state_bc.configuration_state_bc import StatePolicyConfig

POSE = 7  # robosuite: obs/object is one (position, quaternion) block per object


class StatePolicy(Policy):
    """`select_action(obs, subgoal)` reads obs["proprio"] and obs["object"]; the camera is not used."""
    config_class = StatePolicyConfig

    def __init__(self, cfg: StatePolicyConfig, root=None):
        super().__init__(cfg)
        if cfg.object_dim <= 0:
            raise EmbodiedError("policy.type=state needs demos with obs/object (object_dim is 0)")
        if cfg.pose_blocks * POSE > cfg.object_dim:
            raise EmbodiedError(f"policy.pose_blocks={cfg.pose_blocks}: obs/object has only {cfg.object_dim} numbers")
        self.register_buffer("object_mean", torch.zeros(cfg.object_dim))
        self.register_buffer("object_std", torch.ones(cfg.object_dim))
        skills = len(cfg.skills) if cfg.use_subgoal else 0
        width = cfg.proprio_dim + cfg.object_dim + 3 * cfg.pose_blocks + skills
        self.head = action_head(width, cfg)

    def set_object_normalization(self, obj: torch.Tensor) -> None:
        self.object_mean.copy_(obj.float().mean(0))
        self.object_std.copy_(obj.float().std(0).clamp(min=self.cfg.std_floor))

    def skill_onehot(self, subgoals: list[str]) -> torch.Tensor:
        """(B, skills): the sub-goal's first word among the demos' skills; all zeros for one never seen."""
        out = torch.zeros(len(subgoals), len(self.cfg.skills), device=self.device)
        for i, s in enumerate(subgoals):
            word = (s or "").split()[:1]
            if word and word[0].lower() in self.cfg.skills:
                out[i, self.cfg.skills.index(word[0].lower())] = 1.0
        return out

    def predict(self, obj: torch.Tensor, proprio: torch.Tensor, subgoals: list[str]) -> torch.Tensor:
        """(B, object_dim) object state, (B, P) proprio, B sub-goals -> (B, chunk, A) actions in [-1, 1]."""
        obj, proprio = obj.float().to(self.device), proprio.float().to(self.device)
        # The hand is proprio[:3] (the eef position) in every env here; decimetres keep the offsets near unit size.
        rel = [10.0 * (obj[:, i * POSE: i * POSE + 3] - proprio[:, :3]) for i in range(self.cfg.pose_blocks)]
        parts = [self.norm_proprio(proprio), (obj - self.object_mean) / self.object_std, *rel]
        if self.cfg.use_subgoal:
            parts.append(self.skill_onehot(subgoals))
        return self.head(torch.cat(parts, 1)).view(-1, self.cfg.chunk, self.cfg.action_dim)

    def forward(self, batch: dict) -> torch.Tensor:
        obj = batch["object"].float().to(self.device)
        if self.cfg.object_noise > 0:
            noise = torch.zeros_like(obj)
            for i in range(self.cfg.pose_blocks):
                noise[:, i * POSE: i * POSE + 3] = self.cfg.object_noise * torch.randn_like(obj[:, :3])
            obj = obj + noise
        pred = self.predict(obj, batch["proprio"], batch["subgoal"])
        return nn.functional.mse_loss(pred, batch["action"].to(self.device))

    def check_obs(self, obs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(object state, proprio): what `predict` reads in place of a frame."""
        proprio = np.asarray(obs["proprio"], np.float32)
        obj = np.asarray(obs.get("object", ()), np.float32)
        if proprio.shape != (self.cfg.proprio_dim,) or obj.shape != (self.cfg.object_dim,):
            raise EmbodiedError(
                f"policy expects proprio ({self.cfg.proprio_dim},) and object ({self.cfg.object_dim},); "
                f"the env gives {proprio.shape} and {obj.shape}: was it trained for another env?"
            )
        return torch.as_tensor(obj, device=self.device), torch.as_tensor(proprio, device=self.device)

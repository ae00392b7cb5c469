"""What every learned policy shares: the interface, saving/loading by path, random-shift augmentation, the
pixel encoder (a small CNN and its spatial-softmax keypoints).

Interface (as LeRobot's): `forward(batch) -> loss`, `select_action(obs, subgoal) -> action`, `reset()`; and, as
robomimic's, `train_on_batch` (one gradient step, so train-policy's loop does not branch on what a policy is made
of). A policy is an Actor (envs/actor.py): `act` is `select_action`; `actor()` gives a handle per parallel episode
with its own action queue. A policy predicts a chunk of `chunk` actions and executes them in turn before looking
again, or, with temporal ensembling (`ensemble`, as in ACT), predicts a chunk every step and executes the weighted
mean of what the live chunks say about the current step.
A checkpoint is a directory: config.json (typed config with the policy type) + model.safetensors, saved and
loaded as every model here is (embodied/pretrained.py).
"""
from __future__ import annotations

from abc import abstractmethod
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embodied.envs.actor import Actor
from embodied.errors import EmbodiedError
from embodied.layers import SpatialSoftmax, pixel_conv, random_shift, resize  # noqa: F401  (the policies' names for them)
from embodied.policies.configuration_policy import PolicyConfig  # noqa: F401  (importable from here too)
from embodied.pretrained import PretrainedMixin


class Policy(PretrainedMixin, nn.Module, Actor):
    config_class = PolicyConfig
    checkpoint_kind = "a policy"
    # True where it trains on a frozen encoder's features, computed once (`cache_features`) rather than per step.
    frozen_perception = False

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        cfg.ensemble = ensemble_weight(cfg.ensemble)
        self._queue: deque = deque()
        # Proprioception is standardised with the demos' statistics (saved with the weights).
        self.register_buffer("proprio_mean", torch.zeros(cfg.proprio_dim))
        self.register_buffer("proprio_std", torch.ones(cfg.proprio_dim))

    def set_normalization(self, proprio: torch.Tensor) -> None:
        self.proprio_mean.copy_(proprio.float().mean(0))  # a config's std_floor (state policy) overrides 1e-3
        self.proprio_std.copy_(proprio.float().std(0).clamp(min=getattr(self.cfg, "std_floor", 1e-3)))

    def norm_proprio(self, proprio: torch.Tensor) -> torch.Tensor:
        return (proprio.float() - self.proprio_mean) / self.proprio_std

    # -- interface ------------------------------------------------------------------------------
    @abstractmethod
    def predict(self, x: torch.Tensor, proprio: torch.Tensor, subgoals: list[str]) -> torch.Tensor:
        """(B, ...) what the policy reads besides proprioception (`check_obs` takes it from the observation:
        (B, H, W, 3) uint8 frames for a pixel policy, the (B, object_dim) object state for the state policy),
        (B, P) proprio, B sub-goal sentences -> (B, chunk, A) actions in [-1, 1]."""

    def forward(self, batch: dict) -> torch.Tensor:
        """Behaviour-cloning loss (MSE) on a batch {rgb, proprio, action (B, chunk, A), subgoal}."""
        pred = self.predict(batch["rgb"], batch["proprio"], batch["subgoal"])
        return F.mse_loss(pred, batch["action"])

    def train_on_batch(self, data: dict, idx: torch.Tensor, optimizer: torch.optim.Optimizer,
                       gen: torch.Generator, cache: dict | None = None) -> float:
        """One gradient step on the samples `idx` of the training data (train-policy's arrays: rgb, proprio,
        action chunks, subgoal, object), augmented with `gen`; returns the loss. `cache`: what
        `cache_features` made once (a policy on frozen perception trains on cached features)."""
        rgb = random_shift(data["rgb"][idx], self.cfg.shift, gen) if data["rgb"] is not None else None
        obj = data.get("object")
        loss = self({"rgb": rgb, "proprio": data["proprio"][idx], "action": data["action"][idx],
                     "subgoal": [data["subgoal"][i] for i in idx.tolist()],
                     "object": obj[idx] if obj is not None else None})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    def cache_features(self, data: dict, views: int, gen: torch.Generator, batch: int) -> dict[str, torch.Tensor]:
        """With `frozen_perception`: the features `train_on_batch` reads, computed once for the training data."""
        raise NotImplementedError(f"{type(self).__name__} trains end to end: it caches no features")

    @property
    def object_dim(self) -> int:
        """Size of the simulator's object state it trains on (an auxiliary target or an input); 0: none."""
        return int(getattr(self.cfg, "object_dim", 0) or 0)

    def reset(self) -> None:
        self._queue.clear()

    def select_action(self, obs: dict, subgoal: str | None = None) -> np.ndarray:
        return self.next_action(obs, subgoal, self._queue)

    def act(self, obs: dict, subgoal: str | None = None, info: dict | None = None) -> np.ndarray:
        return self.select_action(obs, subgoal)

    @torch.no_grad()
    def next_action(self, obs: dict, subgoal: str | None, queue: deque) -> np.ndarray:
        m = self.cfg.ensemble
        if m is None and queue:
            return queue.popleft().astype(np.float32)
        x, proprio = self.check_obs(obs)
        if self.training:  # eval() walks every submodule: only when needed, not on each chunk
            self.eval()
        chunk = self.predict(x[None], proprio[None], [subgoal or ""])[0].cpu().numpy()
        if m is None:
            queue.extend(chunk)
            return queue.popleft().astype(np.float32)
        # The queue holds [chunk, steps since it was predicted], oldest first; a chunk lives `chunk` steps.
        queue.append([chunk, 0])
        acts = np.stack([c[age] for c, age in queue])
        w = np.exp(-float(m) * np.arange(len(acts)))
        for entry in queue:
            entry[1] += 1
        while queue and queue[0][1] >= len(queue[0][0]):
            queue.popleft()
        return (w @ acts / w.sum()).astype(np.float32)

    def actor(self) -> "PolicyActor":
        """A per-episode handle with its own action queue, sharing these weights (one per parallel env)."""
        return PolicyActor(self)

    def check_obs(self, obs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        cam = self.cfg.camera
        if cam not in obs.get("rgb", {}):
            raise EmbodiedError(f"policy trained on camera '{cam}', the env gives {sorted(obs.get('rgb', {}))}")
        proprio = np.asarray(obs["proprio"], np.float32)
        if proprio.shape != (self.cfg.proprio_dim,):
            raise EmbodiedError(f"policy expects proprio of shape ({self.cfg.proprio_dim},), "
                                f"the env gives {proprio.shape}: was it trained for another env?")
        dev = self.device
        return torch.as_tensor(obs["rgb"][cam], device=dev), torch.as_tensor(proprio, device=dev)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def cameras(self) -> list[str]:
        """The views it reads at rollout (none for a low-dim policy)."""
        return [self.cfg.camera] if self.cfg.camera else []

    def check_env(self, action_dim: int, proprio_dim: int) -> None:
        if (action_dim, proprio_dim) != (self.cfg.action_dim, self.cfg.proprio_dim):
            raise EmbodiedError(
                f"policy made for actions ({self.cfg.action_dim},) and proprio ({self.cfg.proprio_dim},); "
                f"this env has actions ({action_dim},) and proprio ({proprio_dim},)"
            )

    # -- files (embodied/pretrained.py: save_pretrained, from_pretrained) -------------------------
    def state_to_save(self) -> dict[str, torch.Tensor]:
        """All weights; a policy on a planner's frozen perception leaves those out (the planner holds them)."""
        return self.state_dict()

    @classmethod
    def from_config(cls, cfg: PolicyConfig, path: Path) -> "Policy":
        return cls(cfg, root=path)  # paths in the config (a planner's) are relative to the checkpoint


def action_head(width: int, cfg: PolicyConfig) -> nn.Sequential:
    """The MLP every learned policy ends in: features -> a chunk of actions in [-1, 1]."""
    return nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
                         nn.Linear(cfg.hidden, cfg.chunk * cfg.action_dim), nn.Tanh())


class PolicyActor(Actor):
    def __init__(self, policy: Policy):
        self.policy, self._queue = policy, deque()

    def reset(self) -> None:
        self._queue.clear()

    def act(self, obs: dict, subgoal: str | None = None, info: dict | None = None) -> np.ndarray:
        return self.policy.next_action(obs, subgoal, self._queue)






def ensemble_weight(value: Any) -> float | None:
    """policy.ensemble as a float (None: off), or one clear error."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise EmbodiedError(f"policy.ensemble={value!r}: expected a number (ACT's weight m) or null") from None


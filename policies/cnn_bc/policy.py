"""Baseline (b): robomimic-style behaviour cloning from pixels, a small CNN trained end to end with a
spatial-softmax keypoint layer, concatenated with proprioception, into an MLP. No language, no planner."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from embodied.policies.base import Policy, PolicyConfig, resize


@dataclasses.dataclass
class CNNPolicyConfig(PolicyConfig):
    type: str = "cnn"
    image_size: int = 84
    channels: int = 32
    keypoints: int = 32


class SpatialSoftmax(nn.Module):
    """Expected (x, y) image position of each of K feature maps: 2K numbers that say where things are."""

    def __init__(self, channels: int, keypoints: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, keypoints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        b, k, h, w = x.shape
        attn = F.softmax(x.flatten(2), -1).view(b, k, h, w)
        ys = torch.linspace(-1, 1, h, device=x.device)
        xs = torch.linspace(-1, 1, w, device=x.device)
        return torch.cat([(attn.sum(2) * xs).sum(-1), (attn.sum(3) * ys).sum(-1)], 1)


class CNNPolicy(Policy):
    config_class = CNNPolicyConfig
    frozen_perception = False

    def __init__(self, cfg: CNNPolicyConfig, root=None):
        super().__init__(cfg)
        c = cfg.channels
        self.conv = nn.Sequential(
            nn.Conv2d(3, c, 5, stride=2, padding=2), nn.ReLU(), nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, stride=1, padding=1), nn.ReLU(), nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU())
        self.keypoints = SpatialSoftmax(2 * c, cfg.keypoints)
        self.head = nn.Sequential(
            nn.Linear(2 * cfg.keypoints + cfg.proprio_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden),
            nn.ReLU(), nn.Linear(cfg.hidden, cfg.chunk * cfg.action_dim), nn.Tanh())

    def predict(self, rgb, proprio, subgoals):
        x = resize(rgb.to(self.device), self.cfg.image_size) - 0.5
        feats = self.keypoints(self.conv(x))
        out = self.head(torch.cat([feats, self.norm_proprio(proprio.to(self.device))], 1))
        return out.view(-1, self.cfg.chunk, self.cfg.action_dim)

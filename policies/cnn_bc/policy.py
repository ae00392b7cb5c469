"""Baseline (b): robomimic-style behaviour cloning from pixels, a small CNN trained end to end with a
spatial-softmax keypoint layer, concatenated with proprioception, into an MLP. No language, no planner."""
from __future__ import annotations

import torch

from embodied.policies.base import Policy, SpatialSoftmax, action_head, pixel_conv, resize
from embodied.policies.cnn_bc.configuration_cnn_bc import CNNPolicyConfig


class CNNPolicy(Policy):
    config_class = CNNPolicyConfig

    def __init__(self, cfg: CNNPolicyConfig, root=None):
        super().__init__(cfg)
        self.conv = pixel_conv(cfg.channels)
        self.keypoints = SpatialSoftmax(2 * cfg.channels, cfg.keypoints)
        self.head = action_head(2 * cfg.keypoints + cfg.proprio_dim, cfg)

    def predict(self, rgb, proprio, subgoals):
        x = resize(rgb.to(self.device), self.cfg.image_size) - 0.5
        feats = self.keypoints(self.conv(x))
        out = self.head(torch.cat([feats, self.norm_proprio(proprio.to(self.device))], 1))
        return out.view(-1, self.cfg.chunk, self.cfg.action_dim)

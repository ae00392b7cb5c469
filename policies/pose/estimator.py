"""Where each object is, from the cameras: a small keypoint CNN per view, trained on simulator-labelled frames.

The Stack policies from pixels reach the named cube and stop 2-3 cm off its centre (docs/BENCHMARKS.md), while
a policy given the simulator's cube poses stacks: the gap is the last centimetres of perception, which 200 demos
do not teach. Labels are free in simulation, so this estimator learns them from tens of thousands of rendered
frames (datasets/pose_frames.py) instead: for each object, its position relative to the hand (cm) and its yaw
modulo 90 degrees (a cube looks the same turned a quarter), as (cos 4*yaw, sin 4*yaw).

Per camera: a 5x5 stride-2 conv and three 3x3 convs (32 channels) keep a map at half the input size (42 x 42
at 84 px: about 3 mm a cell at grasp height in the wrist view), read by a spatial softmax into keypoints; the
views' keypoints and the normalised proprioception go through an MLP. A checkpoint is a directory: config.json +
model.safetensors (save_pretrained / from_pretrained, embodied/pretrained.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from embodied.errors import EmbodiedError
from embodied.policies.base import SpatialSoftmax, resize
from embodied.policies.pose.configuration_pose import PoseEstimatorConfig
from embodied.pretrained import PretrainedMixin

POSE = 7  # obs/object: one (position, quaternion xyzw) block per object


def pose_targets(obj: torch.Tensor, proprio: torch.Tensor, blocks: int) -> torch.Tensor:
    """(N, O) object state, (N, P) proprio -> (N, blocks, 5): position from the hand in cm, cos and sin of 4 yaw."""
    out = []
    for b in range(blocks):
        pos, q = obj[:, b * POSE: b * POSE + 3], obj[:, b * POSE + 3: b * POSE + 7]
        x, y, z, w = q.unbind(-1)
        yaw = torch.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
        out.append(torch.cat([100.0 * (pos - proprio[:, :3]), torch.cos(4 * yaw)[:, None],
                              torch.sin(4 * yaw)[:, None]], 1))
    return torch.stack(out, 1)


def object_from_pose(pose: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
    """The inverse of pose_targets, as obs/object: (N, blocks, 5) -> (N, 7 * blocks) with each yaw taken in
    [-45, 45) degrees (the quarter turn a cube is seen in) as a quaternion about z."""
    parts = []
    for b in range(pose.shape[1]):
        pos = proprio[:, :3] + pose[:, b, :3] / 100.0
        yaw = torch.atan2(pose[:, b, 4], pose[:, b, 3]) / 4
        half = yaw / 2
        zero = torch.zeros_like(half)
        parts += [pos, torch.stack([zero, zero, torch.sin(half), torch.cos(half)], 1)]
    return torch.cat(parts, 1)


def canonical_object(obj: torch.Tensor, proprio: torch.Tensor, blocks: int) -> torch.Tensor:
    """The simulator's obs/object as the estimator reports it: the same positions, each yaw taken in [-45, 45)
    degrees about z. A head that acts on estimates must be trained on this form: trained on the simulator's
    quaternions (any yaw) and given the estimator's, the same Stack head lost a third of its successes
    (docs/BENCHMARKS.md)."""
    return object_from_pose(pose_targets(obj.float(), proprio.float(), blocks), proprio.float())


class ViewEncoder(nn.Module):
    def __init__(self, channels: int, keypoints: int):
        super().__init__()
        c = channels
        self.conv = nn.Sequential(
            nn.Conv2d(3, c, 5, stride=2, padding=2), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.keypoints = SpatialSoftmax(c, keypoints)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.keypoints(self.conv(x))


class PoseEstimator(PretrainedMixin, nn.Module):
    config_class = PoseEstimatorConfig
    checkpoint_kind = "a pose estimator"

    def __init__(self, cfg: PoseEstimatorConfig):
        super().__init__()
        if not cfg.cameras:
            raise EmbodiedError("pose estimator: cameras is empty; expected the views it reads")
        if cfg.blocks < 1:
            raise EmbodiedError(f"pose estimator: blocks={cfg.blocks}; expected at least one object")
        self.cfg = cfg
        self.views = nn.ModuleList(ViewEncoder(cfg.channels, cfg.keypoints) for _ in cfg.cameras)
        width = 2 * cfg.keypoints * len(cfg.cameras) + cfg.proprio_dim
        self.head = nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden),
                                  nn.ReLU(), nn.Linear(cfg.hidden, 5 * cfg.blocks))
        self.register_buffer("proprio_mean", torch.zeros(cfg.proprio_dim))
        self.register_buffer("proprio_std", torch.ones(cfg.proprio_dim))

    def set_normalization(self, proprio: torch.Tensor) -> None:
        self.proprio_mean.copy_(proprio.float().mean(0))
        self.proprio_std.copy_(proprio.float().std(0).clamp(min=1e-3))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, rgb: dict[str, torch.Tensor], proprio: torch.Tensor) -> torch.Tensor:
        """{camera: (B, H, W, 3) uint8}, (B, P) -> (B, blocks, 5): position from the hand (cm), cos/sin 4 yaw."""
        feats = [enc(resize(rgb[c].to(self.device), self.cfg.image_size) - 0.5)
                 for c, enc in zip(self.cfg.cameras, self.views)]
        proprio = (proprio.float().to(self.device) - self.proprio_mean) / self.proprio_std
        return self.head(torch.cat([*feats, proprio], 1)).view(-1, self.cfg.blocks, 5)

    def loss(self, rgb: dict[str, torch.Tensor], proprio: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = self(rgb, proprio)
        target = target.to(pred.device)
        return (nn.functional.smooth_l1_loss(pred[..., :3], target[..., :3])
                + nn.functional.mse_loss(pred[..., 3:], target[..., 3:]))

    @torch.no_grad()
    def estimate(self, obs: dict) -> np.ndarray:
        """One observation -> obs/object as the simulator would give it (positions, yaw-only quaternions)."""
        missing = [c for c in self.cfg.cameras if c not in obs.get("rgb", {})]
        if missing:
            raise EmbodiedError(f"pose estimator reads camera '{missing[0]}'; "
                                f"the env gives {sorted(obs.get('rgb', {}))}")
        rgb = {c: torch.as_tensor(np.asarray(obs["rgb"][c]))[None] for c in self.cfg.cameras}
        proprio = torch.as_tensor(np.asarray(obs["proprio"], np.float32))[None]
        return object_from_pose(self(rgb, proprio).cpu(), proprio)[0].numpy()


def errors_mm(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Position error (mm, 3D) per object, over all frames and over those with the object within 10 cm of the
    hand (where a grasp or a placement is decided); yaw error in degrees (modulo 90)."""
    err = (pred[..., :3] - target[..., :3]).norm(dim=-1) * 10.0  # cm -> mm
    near = target[..., :3].norm(dim=-1) < 10.0
    yaw_p = torch.atan2(pred[..., 4], pred[..., 3])
    yaw_t = torch.atan2(target[..., 4], target[..., 3])
    dyaw = torch.remainder(yaw_p - yaw_t + math.pi, 2 * math.pi) - math.pi
    out = {}
    for b in range(pred.shape[1]):
        out[f"obj{b}_mm"] = float(err[:, b].mean())
        out[f"obj{b}_near_mm"] = float(err[:, b][near[:, b]].mean()) if near[:, b].any() else float("nan")
        out[f"obj{b}_near_frac"] = float(near[:, b].float().mean())
        out[f"obj{b}_yaw_deg"] = float(dyaw[:, b].abs().mean() / 4 * 180 / math.pi)
    return out

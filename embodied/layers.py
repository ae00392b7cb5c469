"""Pixel layers shared by the planner's success detector and the policies: a small CNN, its spatial-softmax
keypoints, frame resizing and random-shift augmentation. They sit below both, so neither imports the other."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


def pixel_conv(channels: int) -> nn.Sequential:
    """robomimic-style CNN trained end to end, to 2 * channels maps at 1/4 of the input size (21 x 21 at 84 px):
    finer than a ViT's patch grid, which is what a precise grasp needs. SpatialSoftmax reads its maps."""
    c = channels
    return nn.Sequential(
        nn.Conv2d(3, c, 5, stride=2, padding=2), nn.ReLU(), nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(c, 2 * c, 3, stride=1, padding=1), nn.ReLU(), nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU())


def random_shift(rgb: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ-style augmentation on (B, H, W, 3) uint8: replicate-pad by `pad`, crop back at a random offset."""
    if pad <= 0:
        return rgb
    b, h, w, _ = rgb.shape
    x = F.pad(rgb.permute(0, 3, 1, 2).float(), (pad,) * 4, mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    out = torch.stack([x[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def resize(rgb: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, size, size) float in [0, 1]."""
    x = rgb.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x

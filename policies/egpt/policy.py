"""The EmbodiedGPT policy: the planner's ViT and Embodied-former read the current frame with the current
sub-goal as the E-former's text; the query features, a global visual feature and proprioception go
through a light MLP to a chunk of actions.

`use_subgoal=false` is baseline (a): the same head on the global visual feature and proprioception only.
The perception comes from a trained planner checkpoint and stays frozen by default, so its features can
be cached (`encode`) and only the head trains. Query features and the CLS token say what is there and
which step it is; where things are (what control needs most) is read from the ViT's patch tokens by a
trainable spatial-softmax layer: K keypoints, each the expected (x, y) of a learned patch-token score map.
A ViT's patch grid is coarse (8 x 8 for the tiny model); `pixel_keypoints` adds a small CNN trained end to end
on the frame (the pixel baseline's encoder) whose keypoints go to the head beside the frozen features.
`pixel_film` conditions that CNN on the sub-goal (FiLM, as RT-1 and BC-Z condition their image encoders on the
instruction), so its keypoints can land on the object the sub-goal names rather than on whatever the demos
touched most: each conv layer's maps are scaled and shifted per channel by a linear function of the sub-goal's
mean E-former word embedding.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from embodied.errors import EmbodiedError
from embodied.policies.base import (
    Policy,
    SpatialSoftmax,
    action_head,
    pixel_conv,
    random_shift,
    resize,
)
from embodied.policies.egpt.configuration_egpt import EGPTPolicyConfig


class EGPTPolicy(Policy):
    config_class = EGPTPolicyConfig

    def __init__(self, cfg: EGPTPolicyConfig, root: Path | None = None):
        super().__init__(cfg)
        from embodied.modeling import load_perception

        if not cfg.planner:
            raise EmbodiedError(
                f"policy.planner is not set: the {cfg.type} policy reads a planner checkpoint's ViT and Embodied-former"
            )
        planner = Path(cfg.planner)
        if not planner.is_absolute() and root is not None:
            planner = root / planner
        self.vision, self.eformer, self.tokenizer, fingerprint = load_perception(planner)
        if cfg.perception_sha and cfg.perception_sha != fingerprint:
            raise EmbodiedError(
                f"policy.planner={cfg.planner}: its ViT and Embodied-former are not the ones this policy "
                f"was trained on (weights {fingerprint}, expected {cfg.perception_sha}); point "
                "policy.planner at that checkpoint, or train the policy again"
            )
        cfg.perception_sha = fingerprint
        if cfg.freeze_perception:
            self.vision.requires_grad_(False)
            self.eformer.requires_grad_(False)
        cfg.image_size = self.vision.cfg.image_size
        cfg.pixel_keypoints = cfg.pixel_keypoints or 0
        if not isinstance(cfg.pixel_keypoints, int) or cfg.pixel_keypoints < 0:
            raise EmbodiedError(f"policy.pixel_keypoints={cfg.pixel_keypoints!r}: expected a number of keypoints "
                                "(0 or null: no pixel branch)")
        width, nq = self.eformer.cfg.hidden_size, self.eformer.cfg.num_queries
        self.query_proj = nn.Linear(width, cfg.query_dim) if cfg.use_subgoal else None
        feat = self.vision.cfg.hidden_size + (nq * cfg.query_dim if cfg.use_subgoal else 0) + 2 * cfg.keypoints
        if cfg.pixel_keypoints:  # only then, so checkpoints made without it load unchanged
            self.pixel_conv = pixel_conv(cfg.pixel_channels)
            self.pixel_keypoints = SpatialSoftmax(2 * cfg.pixel_channels, cfg.pixel_keypoints)
            feat += 2 * cfg.pixel_keypoints
        self.pixel_film, cfg.pixel_film = None, bool(cfg.pixel_film)
        if cfg.pixel_film:
            if not (cfg.pixel_keypoints and cfg.use_subgoal):
                raise EmbodiedError("policy.pixel_film=true needs the pixel branch (policy.pixel_keypoints > 0) and "
                                    "the sub-goal (policy.use_subgoal=true)")
            convs = sum(m.out_channels for m in self.pixel_conv if isinstance(m, nn.Conv2d))
            self.pixel_film = nn.Linear(width, 2 * convs)
            nn.init.zeros_(self.pixel_film.weight)  # starts as the unconditioned branch
            nn.init.zeros_(self.pixel_film.bias)
        self.keypoint_proj = nn.Linear(self.vision.cfg.hidden_size, cfg.keypoints) if cfg.keypoints else None
        side = self.vision.cfg.image_size // self.vision.cfg.patch_size
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], 1), persistent=False)
        self.object_head = None
        if cfg.object_dim:  # only then, so checkpoints made without it load unchanged
            self.register_buffer("object_mean", torch.zeros(cfg.object_dim))
            self.register_buffer("object_std", torch.ones(cfg.object_dim))
            self.object_head = nn.Sequential(
                nn.Linear(feat + cfg.proprio_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.object_dim))
        self.head = action_head(feat + cfg.proprio_dim + cfg.object_dim, cfg)

    @property
    def frozen_perception(self) -> bool:
        return self.cfg.freeze_perception

    def state_to_save(self) -> dict[str, torch.Tensor]:
        state = self.state_dict()
        if self.cfg.freeze_perception:  # those weights live in the planner checkpoint
            state = {k: v for k, v in state.items() if not k.startswith(("vision.", "eformer."))}
        return state

    def train(self, mode: bool = True) -> "EGPTPolicy":
        super().train(mode)
        if self.cfg.freeze_perception:
            self.vision.eval()
            self.eformer.eval()
        return self

    def encode(self, rgb: torch.Tensor, subgoals: list[str]) -> dict[str, torch.Tensor]:
        """Perception features of (B, H, W, 3) frames: {"global": (B, Dv), "queries": (B, Nq, De)}, and the
        frames themselves as "pixels" when the pixel branch is on (it trains, so it is not cached)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cfg.freeze_perception):
            tokens = self.vision(rgb[:, None].to(self.device))
            out = {"global": self.vision.global_feature(tokens)}
            if self.cfg.keypoints:  # one time slot (a single frame): its patch tokens after the CLS token
                out["patches"] = tokens[:, 1: 1 + self.grid.shape[0]]
            if self.cfg.use_subgoal:
                ids = [self.tokenizer(s, add_special_tokens=False)["input_ids"][: self.eformer.cfg.max_text_len] or
                       [self.tokenizer.pad_token_id] for s in subgoals]
                n = max(len(i) for i in ids)
                t = torch.tensor([i + [self.tokenizer.pad_token_id] * (n - len(i)) for i in ids], device=self.device)
                m = torch.tensor([[1] * len(i) + [0] * (n - len(i)) for i in ids], device=self.device)
                out["queries"] = self.eformer(tokens, t, m)
                if self.cfg.pixel_film:  # what the sub-goal says, without the frame: its mean word embedding
                    words = self.eformer.word_embeddings(t) * m[..., None]
                    out["text"] = words.sum(1) / m.sum(1, keepdim=True)
        if self.cfg.pixel_keypoints:
            out["pixels"] = rgb.to(self.device)
        return out

    def set_object_normalization(self, obj: torch.Tensor) -> None:
        self.object_mean.copy_(obj.mean(0))
        self.object_std.copy_(obj.std(0).clamp(min=1e-3))

    def act_from_features(self, feats: dict[str, torch.Tensor], proprio: torch.Tensor) -> torch.Tensor:
        return self.heads(feats, proprio)[0]

    def loss_from_features(self, feats: dict[str, torch.Tensor], proprio: torch.Tensor, actions: torch.Tensor,
                           obj: torch.Tensor | None = None) -> torch.Tensor:
        """BC loss (MSE on the action chunk), plus the weighted object-state loss when it is on."""
        pred, obj_pred = self.heads(feats, proprio)
        loss = F.mse_loss(pred, actions)
        if obj_pred is not None:
            if obj is None:
                raise EmbodiedError("policy.object_dim is set but the batch has no object state (obs/object)")
            loss = loss + self._object_term(obj_pred, obj)
        return loss

    def object_loss_from_features(self, feats: dict[str, torch.Tensor], proprio: torch.Tensor,
                                  obj: torch.Tensor) -> torch.Tensor:
        """The weighted object-state loss alone: for frames that have object state but no actions."""
        return self._object_term(self.heads(feats, proprio)[1], obj)

    def _object_term(self, obj_pred: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        return self.cfg.object_weight * F.mse_loss(obj_pred, (obj.float() - self.object_mean) / self.object_std)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.loss_from_features(self.encode(batch["rgb"], batch["subgoal"]), batch["proprio"],
                                       batch["action"], batch.get("object"))

    # -- training on frozen perception: its features computed once, for `views` shifted copies of each frame ----
    @torch.no_grad()
    def cache_features(self, data: dict, views: int, gen: torch.Generator, batch: int) -> dict[str, torch.Tensor]:
        """{name: (views, N, ...)} features of every frame of `data` (view 0: the frame as seen)."""
        from tqdm import tqdm

        self.eval()
        n = len(data["rgb"])
        out: dict[str, list] = {}
        for v in tqdm(range(views), desc="perception features", leave=False):
            parts: dict[str, list] = {}
            for b in range(0, n, batch):
                rgb = data["rgb"][b: b + batch]
                rgb = random_shift(rgb, self.cfg.shift, gen) if v > 0 else rgb
                for k, x in self.encode(rgb, data["subgoal"][b: b + batch]).items():
                    if k != "pixels":  # raw frames, for a branch that trains
                        parts.setdefault(k, []).append(x)
            for k, x in parts.items():
                out.setdefault(k, []).append(torch.cat(x).half())  # half: patch tokens of every view add up
        return {k: torch.stack(x) for k, x in out.items()}

    def _cached(self, feats: dict, rows: torch.Tensor, frames: torch.Tensor, gen: torch.Generator) -> dict:
        """The cached features of `rows`, each from a view drawn at random; the trainable pixel branch gets
        freshly shifted frames."""
        view = torch.randint(0, feats["global"].shape[0], (len(rows),), generator=gen)
        f = {k: v[view, rows].float() for k, v in feats.items()}
        if self.cfg.pixel_keypoints:
            f["pixels"] = random_shift(frames[rows], self.cfg.shift, gen)
        return f

    def train_on_batch(self, data: dict, idx: torch.Tensor, optimizer: torch.optim.Optimizer,
                       gen: torch.Generator, cache: dict | None = None) -> float:
        """With frozen perception, on the cached features (`cache`: {"data": features of `data`, and with scene
        frames for the object-state target, "scenes": those frames, "scene_data": their features})."""
        if not self.frozen_perception:
            return super().train_on_batch(data, idx, optimizer, gen, cache)
        obj = data.get("object")
        loss = self.loss_from_features(self._cached(cache["data"], idx, data["rgb"], gen), data["proprio"][idx],
                                       data["action"][idx], obj[idx] if obj is not None else None)
        scenes = cache.get("scenes")
        if scenes is not None:  # as many scene frames, for the object-state target alone
            j = torch.randint(0, len(scenes["object"]), (len(idx),), generator=gen)
            g = self._cached(cache["scene_data"], j, scenes["rgb"], gen)
            loss = loss + self.object_loss_from_features(g, scenes["proprio"][j], scenes["object"][j])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    def heads(self, feats: dict[str, torch.Tensor], proprio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, chunk, A) actions and the (B, object_dim) standardised object-state estimate (None when off)."""
        parts = [feats["global"]]
        if self.cfg.keypoints:
            attn = torch.softmax(self.keypoint_proj(feats["patches"].float()), dim=1)  # (B, patches, K)
            parts.append(torch.einsum("bpk,pc->bkc", attn, self.grid).flatten(1))
        if self.cfg.pixel_keypoints:
            parts.append(self.pixel_features(feats["pixels"], feats.get("text")))
        if self.cfg.use_subgoal:
            parts.insert(0, self.query_proj(feats["queries"]).flatten(1))
        x = torch.cat(parts + [self.norm_proprio(proprio)], 1)
        obj = self.object_head(x) if self.object_head is not None else None
        if obj is not None:
            x = torch.cat([x, obj], 1)
        return self.head(x).view(-1, self.cfg.chunk, self.cfg.action_dim), obj

    def pixel_features(self, pixels: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        """The pixel branch's keypoints; with FiLM each conv's maps become (1 + gamma) * x + beta, before the ReLU."""
        x = resize(pixels, self.cfg.pixel_size) - 0.5
        if self.pixel_film is None:
            return self.pixel_keypoints(self.pixel_conv(x))
        gamma_beta, i = self.pixel_film(text.float()), 0
        for layer in self.pixel_conv:
            x = layer(x)
            if isinstance(layer, nn.Conv2d):
                c = x.shape[1]
                gamma, beta = gamma_beta[:, i: i + c, None, None], gamma_beta[:, i + c: i + 2 * c, None, None]
                x, i = x * (1 + gamma) + beta, i + 2 * c
        return self.pixel_keypoints(x)

    def predict(self, rgb, proprio, subgoals):
        return self.act_from_features(self.encode(rgb, subgoals), proprio)

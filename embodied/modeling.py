"""EmbodiedGPT: egocentric video -> frozen ViT -> Embodied-former (queries + text) -> language mapping
-> frozen LLM with a prefix adapter -> plan text.

One file, top to bottom: VisionEncoder, EmbodiedFormer, EmbodiedGPT (their configs are in
configuration_embodiedgpt.py). The same code builds the 7B configuration (CLIP ViT-L/14 + LLaMA-7B from local
directories) and the tiny one trained here.
"""
from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from embodied.configuration_embodiedgpt import (  # noqa: F401  (the model's config, importable from here too)
    AdapterConfig,
    EFormerConfig,
    EmbodiedGPTConfig,
    LLMConfig,
    VisionConfig,
)
from embodied.errors import EmbodiedError
from embodied.io import read_safetensors
from embodied.pretrained import CONFIG_NAME, WEIGHTS_NAME, fingerprint, load_weights, write_checkpoint
from embodied.pretrained import read_config as read_json_config

# CLIP's pixel statistics; a pretrained ViT expects its inputs normalised with them.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VIDEO_TOKEN = "<video>"  # where the mapped query tokens go in the chat template
TEMPLATE = "Human: " + VIDEO_TOKEN + "\n{prompt}\nAssistant: "


# ---------------------------------------------------------------------------------------------
# Vision
# ---------------------------------------------------------------------------------------------
class VisionEncoder(nn.Module):
    """A transformers CLIP ViT with a temporal Conv3D patch embedding for clips.

    The Conv3D (kernel and stride (t, p, p)) is inflated from the ViT's 2D patch embedding: each of its
    t time slices holds the 2D kernel divided by t, so a still clip embeds exactly as the still image
    does and pretrained weights keep their meaning. Each of the T/t time slots is then encoded by the
    ViT on its own (attention cost grows linearly with the clip, not quadratically), and a learned
    temporal embedding, zero at the start, tells the Embodied-former which slot a token came from.
    """

    def __init__(self, cfg: VisionConfig, backbone: nn.Module | None = None):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel

        self.cfg = cfg
        if backbone is None:
            if cfg.pretrained:
                backbone = load_hf(CLIPVisionModel, cfg.pretrained, "model.vision.pretrained")
            else:
                backbone = CLIPVisionModel(CLIPVisionConfig(
                    image_size=cfg.image_size, patch_size=cfg.patch_size, hidden_size=cfg.hidden_size,
                    num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                    intermediate_size=cfg.intermediate_size))
        bc = backbone.config
        if (bc.image_size, bc.patch_size, bc.hidden_size) != (cfg.image_size, cfg.patch_size, cfg.hidden_size):
            # The checkpoint decides: record its real sizes so the rest of the model is built to fit.
            cfg.image_size, cfg.patch_size, cfg.hidden_size = bc.image_size, bc.patch_size, bc.hidden_size
            cfg.num_layers, cfg.num_heads, cfg.intermediate_size = (
                bc.num_hidden_layers, bc.num_attention_heads, bc.intermediate_size)
        self.backbone = backbone
        if cfg.frames % cfg.temporal_patch:
            raise EmbodiedError(
                f"model.vision.frames={cfg.frames} is not a multiple of temporal_patch={cfg.temporal_patch}"
            )
        conv2d = backbone.embeddings.patch_embedding
        t, p = cfg.temporal_patch, cfg.patch_size
        self.patch_embed3d = nn.Conv3d(3, cfg.hidden_size, (t, p, p), stride=(t, p, p), bias=conv2d.bias is not None)
        self.inflate()
        self.temporal_embed = nn.Parameter(torch.zeros(cfg.frames // t, cfg.hidden_size))
        # Which camera a token came from, when a sample holds several clips (zero at the start, like time).
        self.view_embed = nn.Parameter(torch.zeros(cfg.views, cfg.hidden_size)) if cfg.views > 1 else None
        self._slot_cache: OrderedDict | None = None  # see enable_slot_cache
        self._slot_cache_size = 0
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1, 1), persistent=False)
        self.backbone.requires_grad_(not cfg.freeze)
        self.patch_embed3d.requires_grad_(cfg.train_patch_embed)
        self.temporal_embed.requires_grad_(cfg.train_patch_embed)
        if self.view_embed is not None:
            self.view_embed.requires_grad_(cfg.train_patch_embed)

    @torch.no_grad()
    def inflate(self) -> None:
        w2d = self.backbone.embeddings.patch_embedding.weight  # (D, 3, p, p)
        t = self.cfg.temporal_patch
        self.patch_embed3d.weight.copy_(repeat(w2d, "d c h w -> d c t h w", t=t) / t)
        if self.patch_embed3d.bias is not None:
            self.patch_embed3d.bias.copy_(self.backbone.embeddings.patch_embedding.bias)

    @property
    def num_tokens(self) -> int:
        per_slot = (self.cfg.image_size // self.cfg.patch_size) ** 2 + 1
        return per_slot * self.cfg.frames // self.cfg.temporal_patch * self.cfg.views

    def train(self, mode: bool = True) -> "VisionEncoder":
        super().train(mode)
        if self.cfg.freeze:  # a frozen ViT stays in eval mode (dropout off) whatever its parent does
            self.backbone.eval()
        return self

    def preprocess(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 or float in [0, 1]: (H, W, 3), (T, H, W, 3) or (B, T, H, W, 3) -> normalised (B, 3, T, S, S)."""
        return self._normalise(self._frames(video))

    def _frames(self, video: torch.Tensor) -> torch.Tensor:
        """The clip's `frames` frames, (B, T, H, W, 3), as given (no resizing, no scaling)."""
        if not torch.is_tensor(video):
            video = torch.as_tensor(video)
        if video.dim() == 3:  # one image
            video = video[None]
        if video.dim() == 4:
            video = video[None]
        if video.dim() != 5 or video.shape[-1] != 3:
            raise EmbodiedError(f"video: expected (B, T, H, W, 3) frames, got shape {tuple(video.shape)}")
        b, t = video.shape[:2]
        frames = self.cfg.frames
        if t == 1:  # a single image: repeated so that the inflated kernel sees it as a still clip
            video = video.expand(b, self.cfg.temporal_patch, *video.shape[2:])
        elif t != frames:  # resample evenly in time
            idx = torch.linspace(0, t - 1, frames, device=video.device).round().long()
            video = video[:, idx]
        return video

    def _normalise(self, video: torch.Tensor) -> torch.Tensor:
        b = video.shape[0]
        x = video.to(self.mean.device)
        x = x.float() / 255.0 if not x.is_floating_point() else x.float()
        x = rearrange(x, "b t h w c -> (b t) c h w")
        s = self.cfg.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        x = rearrange(x, "(b t) c h w -> b c t h w", b=b)
        return (x - self.mean) / self.std

    def enable_slot_cache(self, size: int = 32) -> None:
        """Remember the tokens of the last `size` time slots, keyed by their pixels. A planner watching a
        live stream asks about overlapping clips: when the clip moves by whole slots, only the newest slot
        goes through the ViT. Used only without gradients; a slot's tokens do not depend on its position
        (the temporal embedding is added afterwards), so cached and fresh tokens are identical."""
        self._slot_cache = OrderedDict() if size > 0 else None
        self._slot_cache_size = size

    def _slot_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (N, 3, t, S, S) slots -> ViT tokens (N, patches + 1, D)."""
        patches = rearrange(self.patch_embed3d(x), "b d t h w -> (b t) (h w) d")
        emb = self.backbone.embeddings
        cls = emb.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
        h = torch.cat([cls, patches], 1) + emb.position_embedding.weight[: patches.shape[1] + 1]
        h = self.backbone.pre_layrnorm(h)
        h = self.backbone.encoder(inputs_embeds=h).last_hidden_state
        return self.backbone.post_layernorm(h)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Visual tokens (B, slots * (patches + 1), D) of clips (B, T, H, W, 3); of several cameras' clips
        (B, V, T, H, W, 3), each view's tokens one after the other, each with its view embedding added."""
        if video.dim() == 6:
            b, v = video.shape[:2]
            if v > self.cfg.views:
                raise EmbodiedError(f"video: {v} camera clips per sample; this model was built for {self.cfg.views} "
                                    f"(model.vision.views)")
            h = self._clip_tokens(video.reshape(b * v, *video.shape[2:]))
            h = rearrange(h, "(b v) n d -> b v n d", v=v)
            if self.view_embed is not None:
                h = h + self.view_embed[:v, None].to(h.dtype)
            return rearrange(h, "b v n d -> b (v n) d")
        return self._clip_tokens(video)

    def _clip_tokens(self, video: torch.Tensor) -> torch.Tensor:
        raw = self._frames(video)
        t = self.cfg.temporal_patch
        b, slots = raw.shape[0], raw.shape[1] // t
        grad = torch.is_grad_enabled() and (self.patch_embed3d.weight.requires_grad or not self.cfg.freeze)
        dtype = self.patch_embed3d.weight.dtype
        with torch.set_grad_enabled(grad):  # frozen and nothing upstream to train: no activations kept
            if self._slot_cache is None or grad:
                x = rearrange(self._normalise(raw).to(dtype), "b c (s t) h w -> (b s) c t h w", t=t)
                h = self._slot_tokens(x)
            else:
                h = self._cached_slot_tokens(raw.reshape(b * slots, t, *raw.shape[2:]), dtype)
        h = rearrange(h, "(b t) n d -> b t n d", t=slots) + self.temporal_embed[:slots, None].to(h.dtype)
        return rearrange(h, "b t n d -> b (t n) d")

    def _cached_slot_tokens(self, slots: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        cache = self._slot_cache
        keys = [hashlib.blake2b(f"{tuple(s.shape)}{s.dtype}".encode() + s.contiguous().cpu().numpy().tobytes(),
                                digest_size=16).digest() for s in slots]
        todo = list({k: i for i, k in enumerate(keys) if k not in cache}.values())
        if todo:
            new = self._slot_tokens(self._normalise(slots[todo]).to(dtype))
            for i, h in zip(todo, new):
                cache[keys[i]] = h
        for k in keys:
            cache.move_to_end(k)
        out = torch.stack([cache[k] for k in keys])
        while len(cache) > self._slot_cache_size:
            cache.popitem(last=False)
        return out

    def global_feature(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean of the slots' CLS tokens: one vector per clip (for the policy's global input)."""
        per_slot = (self.cfg.image_size // self.cfg.patch_size) ** 2 + 1
        return rearrange(tokens, "b (t n) d -> b t n d", n=per_slot)[:, :, 0].mean(1)

    def clip_feature(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 8 D) per camera, concatenated: a summary of a clip's tokens for light heads (the planner's
        success detector). The slots' mean CLS (what is there), the last slot's CLS minus the first's (what
        changed), and of the last slot's patches their mean, spread and 2x2 grid of means (where things are
        now: a cube lowered onto the other fills more of the wrist view). A linear probe on them tells a placed
        cube from a hovering one where the LLM's yes/no cannot (docs/BENCHMARKS.md, bench/studies/done_probe.py)."""
        side = self.cfg.image_size // self.cfg.patch_size
        slots = self.cfg.frames // self.cfg.temporal_patch
        x = rearrange(tokens, "b (v t n) d -> (b v) t n d", t=slots, n=side * side + 1)
        last = x[:, -1, 1:]
        grid = F.adaptive_avg_pool2d(rearrange(last, "b (h w) d -> b d h w", h=side), 2).flatten(1)
        f = torch.cat([x[:, :, 0].mean(1), x[:, -1, 0] - x[:, 0, 0], last.mean(1), last.std(1), grid], 1)
        return rearrange(f, "(b v) f -> b (v f)", b=tokens.shape[0])


# ---------------------------------------------------------------------------------------------
# Embodied-former
# ---------------------------------------------------------------------------------------------
class Attention(nn.Module):
    """BERT-style attention block (post-LN), named like BLIP-2's Q-Former so its weights map 1:1."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        kv_dim = kv_dim or dim
        self.heads, self.dropout = heads, dropout
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(kv_dim, dim), nn.Linear(kv_dim, dim)
        self.dense, self.norm = nn.Linear(dim, dim), nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = (rearrange(f(t), "b n (h d) -> b h n d", h=self.heads)
                   for f, t in ((self.query, x), (self.key, kv), (self.value, kv)))
        attn_mask = None if mask is None else mask[:, None, None, :].bool()
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        o = F.dropout(self.dense(rearrange(o, "b h n d -> b n (h d)")), self.dropout, self.training)
        return self.norm(x + o)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1, self.fc2, self.norm, self.dropout = (
            nn.Linear(dim, hidden),
            nn.Linear(hidden, dim),
            nn.LayerNorm(dim, eps=1e-12),
            dropout,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + F.dropout(self.fc2(F.gelu(self.fc1(x))), self.dropout, self.training))


class EFormerLayer(nn.Module):
    """Self-attention over [queries; text], cross-attention from the queries to the visual tokens,
    then separate feed-forward networks for queries and text (as the Q-Former has)."""

    def __init__(self, cfg: EFormerConfig, vision_width: int, cross: bool, last: bool = False):
        super().__init__()
        d = cfg.hidden_size
        self.self_attn = Attention(d, cfg.num_heads, dropout=cfg.dropout)
        self.cross_attn = Attention(d, cfg.num_heads, kv_dim=vision_width, dropout=cfg.dropout) if cross else None
        self.ffn_query = FeedForward(d, cfg.intermediate_size, cfg.dropout)
        # Only the queries leave the last layer: a text FFN there would never get a gradient (and DDP
        # would have to be told to look for unused parameters).
        self.ffn_text = None if last else FeedForward(d, cfg.intermediate_size, cfg.dropout)

    def forward(self, q: torch.Tensor, text: torch.Tensor | None, visual: torch.Tensor,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = q.shape[1]
        x = q if text is None else torch.cat([q, text], 1)
        x = self.self_attn(x, x, mask)
        q, text = x[:, :n], (None if text is None else x[:, n:])
        if self.cross_attn is not None:
            q = self.cross_attn(q, visual)
        return self.ffn_query(q), (None if text is None or self.ffn_text is None else self.ffn_text(text))


class EmbodiedFormer(nn.Module):
    """Learnable embodied queries that read the visual tokens, optionally conditioned on text
    (the instruction when planning, the current sub-goal when driving the policy)."""

    def __init__(self, cfg: EFormerConfig, vision_width: int, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.query_tokens = nn.Parameter(torch.randn(1, cfg.num_queries, d) * 0.02)
        self.word_embeddings = nn.Embedding(vocab_size, d)
        self.position_embeddings = nn.Embedding(cfg.max_text_len, d)
        self.layernorm = nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList(EFormerLayer(cfg, vision_width, i % cfg.cross_attention_freq == 0,
                                                 last=i == cfg.num_layers - 1) for i in range(cfg.num_layers))

    def forward(self, visual: torch.Tensor, text_ids: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, Nv, Dv) visual tokens [+ (B, L) text ids] -> (B, num_queries, hidden) query features."""
        b = visual.shape[0]
        q = self.layernorm(self.query_tokens.expand(b, -1, -1)).to(visual.dtype)
        text, mask = None, None
        if text_ids is not None and text_ids.shape[1] > 0:
            text_ids = text_ids[:, : self.cfg.max_text_len]
            pos = torch.arange(text_ids.shape[1], device=text_ids.device)
            text = self.layernorm(self.word_embeddings(text_ids) + self.position_embeddings(pos)).to(visual.dtype)
            tm = torch.ones_like(text_ids) if text_mask is None else text_mask[:, : text_ids.shape[1]]
            mask = torch.cat([torch.ones(b, q.shape[1], dtype=tm.dtype, device=tm.device), tm], 1)
        for layer in self.layers:
            q, text = layer(q, text, visual, mask)
        return q

    @torch.no_grad()
    def load_blip2(self, path: str) -> list[str]:
        """Initialise the queries and layers from a local HF BLIP-2 checkpoint's Q-Former.
        Returns the names of our parameters that were set; the text embeddings stay ours."""
        from transformers import Blip2Model

        blip = load_hf(Blip2Model, path, "model.eformer.blip2")
        src = blip.state_dict()
        mapped: dict[str, str] = {"query_tokens": "query_tokens", "layernorm.weight": "qformer.layernorm.weight",
                                  "layernorm.bias": "qformer.layernorm.bias"}
        for i, layer in enumerate(self.layers):
            pre = f"qformer.encoder.layer.{i}"
            blocks = {"self_attn": "attention", "cross_attn": "crossattention"}
            for ours, theirs in blocks.items():
                if getattr(layer, ours) is None:
                    continue
                for proj in ("query", "key", "value"):
                    mapped.update(
                        {
                            f"layers.{i}.{ours}.{proj}.{w}": f"{pre}.{theirs}.attention.{proj}.{w}"
                            for w in ("weight", "bias")
                        }
                    )
                mapped.update(
                    {f"layers.{i}.{ours}.dense.{w}": f"{pre}.{theirs}.output.dense.{w}" for w in ("weight", "bias")}
                )
                mapped.update(
                    {f"layers.{i}.{ours}.norm.{w}": f"{pre}.{theirs}.output.LayerNorm.{w}" for w in ("weight", "bias")}
                )
            # BLIP-2 keeps only the query FFN; the text FFN starts as its copy (both began as BERT's).
            for ffn in ("ffn_query", "ffn_text") if layer.ffn_text is not None else ("ffn_query",):
                for w in ("weight", "bias"):
                    mapped[f"layers.{i}.{ffn}.fc1.{w}"] = f"{pre}.intermediate_query.dense.{w}"
                    mapped[f"layers.{i}.{ffn}.fc2.{w}"] = f"{pre}.output_query.dense.{w}"
                    mapped[f"layers.{i}.{ffn}.norm.{w}"] = f"{pre}.output_query.LayerNorm.{w}"
        ours = dict(self.named_parameters())
        done = []
        for k, theirs in mapped.items():
            if theirs not in src:
                continue
            if src[theirs].shape != ours[k].shape:
                raise EmbodiedError(f"{path}: BLIP-2 weight '{theirs}' has shape {tuple(src[theirs].shape)}, "
                                    f"model.eformer needs {tuple(ours[k].shape)} for '{k}'")
            ours[k].copy_(src[theirs])
            done.append(k)
        if "query_tokens" not in done:
            raise EmbodiedError(f"{path}: no BLIP-2 'query_tokens'; expected a Blip2Model checkpoint")
        return done


# ---------------------------------------------------------------------------------------------
# The whole model
# ---------------------------------------------------------------------------------------------
class EmbodiedGPT(nn.Module):
    def __init__(
        self, cfg: EmbodiedGPTConfig, tokenizer=None, vision: nn.Module | None = None, llm: nn.Module | None = None
    ):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.llm)
        self.vision = VisionEncoder(cfg.vision, vision)
        base = llm if llm is not None else build_llm(cfg.llm, len(self.tokenizer))
        cfg.llm.hidden_size = base.config.hidden_size
        cfg.llm.vocab_size = base.config.vocab_size
        self.eformer = EmbodiedFormer(cfg.eformer, cfg.vision.hidden_size, len(self.tokenizer))
        if cfg.eformer.blip2:
            self.eformer.load_blip2(cfg.eformer.blip2)
        self.mapping = nn.Linear(cfg.eformer.hidden_size, cfg.llm.hidden_size)  # the language mapping layer
        if cfg.llm.freeze:
            base.requires_grad_(False)
        self.llm = add_adapter(base, cfg.adapter)
        self.decoder = None  # the greedy decoder on a static cache (embodied/decoding.py), made at the first plan
        self.compile_decoding = False  # compile its per-token step (planner.compile=true)

    # -- text ---------------------------------------------------------------------------------
    def _ids(self, texts: Sequence[str], limit: int) -> list[list[int]]:
        return [self.tokenizer(t, add_special_tokens=False)["input_ids"][:limit] for t in texts]

    def _text_input(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self._ids(texts, self.cfg.eformer.max_text_len)
        n = max(1, max(len(i) for i in ids))
        pad = self.tokenizer.pad_token_id or 0
        t = torch.tensor([i + [pad] * (n - len(i)) for i in ids], device=self.device)
        m = torch.tensor([[1] * len(i) + [0] * (n - len(i)) for i in ids], device=self.device)
        return t, m

    @property
    def device(self) -> torch.device:
        return self.mapping.weight.device

    # -- the vision-language bridge ----------------------------------------------------------
    def encode(self, video: torch.Tensor, text: Sequence[str] | None = None,
               rows: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Video (+ text for the E-former) -> (query features (B, Nq, De), visual tokens (B, Nv, Dv)).
        `rows`: per text, the index of its clip in `video` (several questions per clip: the ViT runs once a clip)."""
        visual = self.vision(video)
        if rows is not None:
            visual = visual[torch.as_tensor(list(rows), device=visual.device)]
        if text is None:
            return self.eformer(visual), visual
        if visual.shape[0] == 1 and len(text) > 1:  # one clip, several questions: the ViT runs once
            visual = visual.expand(len(text), -1, -1)
        ids, mask = self._text_input(text)
        return self.eformer(visual, ids, mask), visual

    def _embed(self, ids: list[int]) -> torch.Tensor:
        return self.llm.get_input_embeddings()(torch.tensor(ids, dtype=torch.long, device=self.device))

    def _sequences(self, queries: torch.Tensor, prompts: Sequence[str], answers: Sequence[str] | None,
                   starts: Sequence[str] | None = None):
        """Per sample: embeddings of [BOS, 'Human: ', mapped queries, prompt, 'Assistant: ', answer EOS]
        and labels (-100 except the answer tokens). Without answers, `starts` are given openings of the
        answers (no EOS), tokenized on their own as the answers are in training."""
        tok = self.tokenizer
        before, after = TEMPLATE.split(VIDEO_TOKEN)
        mapped = self.mapping(queries).to(self.llm.get_input_embeddings().weight.dtype)
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        pre = bos + tok(before, add_special_tokens=False)["input_ids"]
        seqs, labels = [], []
        for i, prompt in enumerate(prompts):
            post = tok(after.format(prompt=prompt), add_special_tokens=False)["input_ids"][-self.cfg.max_prompt_len:]
            ans = []
            if answers is not None:
                ans = tok(answers[i], add_special_tokens=False)["input_ids"][: self.cfg.max_answer_len] + [
                    tok.eos_token_id
                ]
            elif starts is not None and starts[i]:
                ans = tok(starts[i], add_special_tokens=False)["input_ids"]
            emb = torch.cat([self._embed(pre), mapped[i], self._embed(post + ans)])
            seqs.append(emb)
            labels.append([-100] * (len(pre) + mapped.shape[1] + len(post)) + ans)
        return seqs, labels

    def forward(self, video: torch.Tensor, prompts: Sequence[str], answers: Sequence[str],
                eformer_text: Sequence[str] | None = None) -> torch.Tensor:
        """Causal-LM loss over the answer tokens only."""
        queries, _ = self.encode(video, eformer_text if eformer_text is not None else prompts)
        seqs, labels = self._sequences(queries, prompts, answers)
        n = max(len(s) for s in seqs)
        emb = torch.stack([F.pad(s, (0, 0, 0, n - len(s))) for s in seqs])  # right padding
        mask = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in seqs], device=self.device)
        lab = torch.tensor([row + [-100] * (n - len(row)) for row in labels], device=self.device)
        return self.llm(inputs_embeds=emb, attention_mask=mask, labels=lab).loss

    def _queries(self, video, prompts, eformer_text, blind: bool, rows=None) -> torch.Tensor:
        if blind:  # the text-only baseline: no visual tokens in the prompt at all
            return torch.zeros(len(prompts), 0, self.cfg.eformer.hidden_size, device=self.device)
        return self.encode(video, eformer_text if eformer_text is not None else prompts, rows)[0]

    def _prompt_batch(self, video, prompts, eformer_text, blind: bool, new_tokens: int = 0, starts=None,
                      with_prefix: bool = True, rows=None):
        """The prompts as left-padded embeddings (every prompt ends at the last position) for cached decoding:
        (llm to call, embeddings (B, N, D), attention mask, KV cache to start from or None). peft's own
        generate() hides `inputs_embeds` from transformers, so the base model is called: the adapters live
        inside its modules anyway, except prefix tuning's, which is a pre-filled KV cache."""
        queries = self._queries(video, prompts, eformer_text, blind, rows)
        seqs, _ = self._sequences(queries, prompts, None, starts)
        n = max(len(s) for s in seqs)
        emb = torch.stack([F.pad(s, (0, 0, n - len(s), 0)) for s in seqs])
        mask = torch.tensor([[0] * (n - len(s)) + [1] * len(s) for s in seqs], device=self.device)
        llm, past = self.llm, None
        if hasattr(llm, "get_base_model"):
            if self.cfg.adapter.type == "prefix" and with_prefix:
                n_virtual = llm.peft_config["default"].num_virtual_tokens
                past = llm.get_prompt(len(seqs), max_cache_len=n + n_virtual + new_tokens)
                mask = torch.cat([mask.new_ones(len(seqs), n_virtual), mask], 1)
            llm = llm.get_base_model()
        return llm, emb, mask, past

    @torch.no_grad()
    def choice_logprobs(self, video: torch.Tensor | None, prompts: Sequence[str], choices: Sequence[str],
                        eformer_text: Sequence[str] | None = None, blind: bool = False,
                        rows: Sequence[int] | None = None) -> torch.Tensor:
        """Summed log-probability of each of the same `choices` after each prompt, (B, C): yes/no
        questions and multiple choice by likelihood (EgoPlan's scoring). The video, the E-former and the
        prompt go through the model once per prompt; only the short answers run once per choice, on the
        prompt's KV cache. `rows`: per prompt, its clip in `video` (default: one clip per prompt, or one for all)."""
        tok = self.tokenizer
        llm, ctx, mask, past = self._prompt_batch(video, prompts, eformer_text, blind, rows=rows)
        b, c, n = ctx.shape[0], len(choices), ctx.shape[1]
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = llm(inputs_embeds=ctx, attention_mask=mask, position_ids=pos[:, -n:], cache=past,
                  use_cache=True, logits_to_keep=1)
        ids = [tok(ch, add_special_tokens=False)["input_ids"][: self.cfg.max_answer_len] + [tok.eos_token_id]
               for ch in choices]
        m = max(len(i) for i in ids)
        ans = torch.tensor([i + [tok.eos_token_id] * (m - len(i)) for i in ids], device=self.device).repeat(b, 1)
        ans_mask = torch.tensor([[1] * len(i) + [0] * (m - len(i)) for i in ids], device=self.device).repeat(b, 1)
        first = torch.log_softmax(out.logits[:, -1].float(), -1).repeat_interleave(c, 0)
        score = first.gather(1, ans[:, :1])[:, 0]
        if m > 1:  # the rest of each answer, the prompt's cache shared by its C answers
            cache = out.cache
            cache.batch_repeat_interleave(c)
            full = torch.cat([mask.repeat_interleave(c, 0), ans_mask[:, :-1]], 1)
            cont = llm(input_ids=ans[:, :-1], attention_mask=full, cache=cache,
                       position_ids=pos[:, -1:].repeat_interleave(c, 0) + 1 + torch.arange(m - 1, device=self.device))
            logp = torch.log_softmax(cont.logits.float(), -1).gather(-1, ans[:, 1:, None])[..., 0]
            score = score + (logp * ans_mask[:, 1:]).sum(1)
        return score.view(b, c)

    @torch.no_grad()
    def generate(self, video: torch.Tensor | None, prompts: Sequence[str], max_new_tokens: int = 128,
                 eformer_text: Sequence[str] | None = None, blind: bool = False,
                 answer_start: Sequence[str] | None = None, **gen_kwargs) -> list[str]:
        """Batched greedy generation with the KV cache; left padding keeps every prompt's end aligned.
        `answer_start`: per prompt, text the answer is forced to open with (returned as part of it).
        Greedy decoding runs on a static cache (embodied/decoding.py); other `gen_kwargs` (sampling, beams,
        min_new_tokens) go to transformers' `generate`."""
        from embodied.decoding import GreedyDecoder, prefix_cache

        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if not gen_kwargs or gen_kwargs == {"do_sample": False}:
            llm, emb, mask, _ = self._prompt_batch(video, prompts, eformer_text, blind, starts=answer_start,
                                                   with_prefix=False)
            if self.decoder is None or self.decoder.llm is not llm or self.decoder.compiled != self.compile_decoding:
                self.decoder = GreedyDecoder(llm, compile=self.compile_decoding)
            out = self.decoder(emb, mask, max_new_tokens, tok.eos_token_id, pad, prefix_cache(self.llm, len(prompts)))
        else:
            llm, emb, mask, past = self._prompt_batch(video, prompts, eformer_text, blind, max_new_tokens, answer_start)
            gen_kwargs.setdefault("do_sample", False)
            if past is not None:
                gen_kwargs["cache"] = past
            out = llm.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=max_new_tokens,
                               pad_token_id=pad, eos_token_id=tok.eos_token_id, **gen_kwargs)
        starts = answer_start or [""] * len(prompts)
        return [(s + t).strip() for s, t in zip(starts, tok.batch_decode(out, skip_special_tokens=True))]

    def plan(self, video: torch.Tensor, instruction: str | Sequence[str], max_new_tokens: int = 128,
             experience: str | Sequence[str] = "", blind: bool = False) -> str | list[str]:
        """One clip (T, H, W, 3) or (1, T, H, W, 3) (several cameras: (V, T, H, W, 3)) and the instruction (and,
        when re-planning, what went wrong) -> plan text in EgoCOT's schema, opening with the instruction.
        A batch of clips (B, ...) with a list of B instructions (and experiences) -> B plans, in one generation."""
        from embodied.datasets.egocot import plan_start

        video = torch.as_tensor(video)
        one = isinstance(instruction, str)
        instructions = [instruction] if one else list(instruction)
        experiences = [experience] * len(instructions) if isinstance(experience, str) else list(experience)
        if video.dim() == 4 or video.dim() == 5 and self.cfg.vision.views > 1:  # no batch dimension yet
            video = video[None]
        if not (len(video) == len(instructions) == len(experiences)):
            raise ValueError(f"plan: {len(video)} clips, {len(instructions)} instructions, {len(experiences)} "
                             "experiences; expected one of each per plan")
        texts = self.generate(video, [plan_prompt(i, e) for i, e in zip(instructions, experiences)],
                              max_new_tokens, eformer_text=instructions, blind=blind,
                              answer_start=[plan_start(i) if i else "" for i in instructions])
        return texts[0] if one else texts

    # -- parameters and checkpoints ----------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: p.detach().cpu().contiguous() for k, p in self.named_parameters() if p.requires_grad}

    # A checkpoint (embodied/pretrained.py's format): config.json, model.safetensors (the weights trained here
    # only), tokenizer/, and -- when they were trained here rather than loaded from a user's directory -- the ViT
    # and the LLM as Hugging Face directories vision/ and llm/ (the tiny model).
    def _bundled(self, part_cfg) -> bool:
        """A backbone goes into the checkpoint when nothing else holds its weights."""
        return not part_cfg.pretrained or not part_cfg.freeze

    def save_pretrained(self, path: str | Path, bundle: bool = False, extra: dict | None = None) -> Path:
        """`bundle` copies the backbones in even when they came from a directory (a self-contained
        checkpoint, as the shipped tiny model is); `extra` maps file names to writers `fn(path)`."""
        cfg = EmbodiedGPTConfig.from_dict(self.cfg.to_dict())
        cfg.eformer.blip2 = None  # its weights are in model.safetensors now
        files = {"tokenizer": self.tokenizer.save_pretrained}
        vision_in = bundle or self._bundled(self.cfg.vision)
        if vision_in:
            files["vision"] = self.vision.backbone.save_pretrained
            cfg.vision.pretrained, cfg.vision.freeze = "vision", True
        if bundle or self._bundled(self.cfg.llm):
            files["llm"] = self._save_llm
            cfg.llm.pretrained, cfg.llm.freeze = "llm", True
        state = {k: v for k, v in self.trainable_state_dict().items()
                 if not (k.startswith("vision.backbone.") and vision_in)}
        return write_checkpoint(path, cfg.to_dict(), state, {**files, **(extra or {})})

    def _save_llm(self, out: Path) -> None:
        """The LLM as it was before peft wrapped it: a copy of its directory, or (random init) its weights
        with the adapter's wrapping taken out of the names."""
        import re
        import shutil

        src = self.cfg.llm.pretrained
        if src and Path(src).is_dir():
            shutil.copytree(src, out, ignore=shutil.ignore_patterns("trainer_state.pt"))
            return
        base = self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm
        clean = type(base)(base.config)
        wrapped = base.state_dict()
        state = {}
        for key in clean.state_dict():
            for cand in (key, re.sub(r"\.self_attn\.", ".self_attn.model.", key),
                         key.replace(".weight", ".base_layer.weight"), key.replace(".bias", ".base_layer.bias")):
                if cand in wrapped:
                    state[key] = wrapped[cand]
                    break
            else:
                raise EmbodiedError(f"cannot find the LLM weight '{key}' under its adapter to save it")
        clean.load_state_dict(state)
        clean.save_pretrained(out)
        self.tokenizer.save_pretrained(out)

    @classmethod
    def from_pretrained(cls, path: str | Path, cfg: EmbodiedGPTConfig | None = None, tokenizer=None) -> "EmbodiedGPT":
        """Build the model from its config (the frozen parts from their directories) and load the trained
        weights. `cfg` may override the stored config (e.g. to unfreeze a part)."""
        from embodied.assets import resolve

        path = resolve(path)
        cfg = cfg or read_config(path)
        if tokenizer is None and (path / "tokenizer").is_dir():
            tokenizer = tokenizer_from(path / "tokenizer", f"{path}/tokenizer")
        model = cls(cfg, tokenizer=tokenizer)
        # A trainable ViT loaded from a directory (the tiny recipe's stage 1, resumed) has its weights there.
        expected = {k for k, p in model.named_parameters() if p.requires_grad
                    and not (k.startswith("vision.backbone.") and model.cfg.vision.pretrained)}
        load_weights(model, path / WEIGHTS_NAME, expected)
        return model


def read_config(path: str | Path) -> EmbodiedGPTConfig:
    """The config of an EmbodiedGPT checkpoint, its backbones' directories made absolute."""
    from embodied.assets import resolve

    path = resolve(path)
    f = path / CONFIG_NAME
    cfg = EmbodiedGPTConfig.from_dict(read_json_config(path, "an EmbodiedGPT"), where=f"{f}: ")
    for part in (cfg.vision, cfg.llm):  # paths inside the checkpoint are stored relative to it
        if part.pretrained and not Path(part.pretrained).is_absolute() and (path / part.pretrained).exists():
            part.pretrained = str(path / part.pretrained)
    return cfg


def load_perception(path: str | Path):
    """The planner's ViT and Embodied-former (and tokenizer) without its LLM: what a policy needs, and a
    fingerprint of their weights (a policy trained on these features records it: retraining the planner in
    place must not change a policy's inputs without a word)."""
    from embodied.assets import resolve

    path = resolve(path)
    cfg = read_config(path)
    tok_dir = path / "tokenizer" if (path / "tokenizer").is_dir() else Path(cfg.llm.pretrained or "")
    tokenizer = tokenizer_from(tok_dir, f"{path}: tokenizer")
    vision = VisionEncoder(cfg.vision)
    eformer = EmbodiedFormer(cfg.eformer, cfg.vision.hidden_size, len(tokenizer))
    state = read_safetensors(path / WEIGHTS_NAME)
    for prefix, module in (("vision.", vision), ("eformer.", eformer)):
        part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        missing = [k for k, p in module.named_parameters() if p.requires_grad and k not in part]
        if missing:
            raise EmbodiedError(f"{path}/{WEIGHTS_NAME}: no weights for {prefix}{missing[0]} ({len(missing)} in all)")
        module.load_state_dict(part, strict=False)
    return vision.eval(), eformer.eval(), tokenizer, fingerprint(state, ("vision.", "eformer."))


def plan_prompt(instruction: str, experience: str = "") -> str:
    """The planning question; `experience` (what went wrong so far) is added when re-planning."""
    task = f"The task is: {instruction}. " if instruction else ""
    exp = f"Experience: {experience} " if experience else ""
    return f"{task}{exp}What is the plan from here?"


DESCRIBE_PROMPT = "Describe what the robot is doing."


# ---------------------------------------------------------------------------------------------
# Loading the frozen parts from local directories
# ---------------------------------------------------------------------------------------------
def load_hf(cls, path: str, field_name: str, **kwargs):
    """`cls.from_pretrained` from a local directory only, with one clear error line when it fails."""
    p = Path(path).expanduser()
    marker = "tokenizer_config.json" if "Tokenizer" in cls.__name__ else "config.json"
    if not p.is_dir() or not (p / marker).exists():
        raise EmbodiedError(f"{field_name}={path}: not a local Hugging Face directory (no {marker}); "
                            "weights are never downloaded, give the path of a saved model")
    try:
        return cls.from_pretrained(str(p), local_files_only=True, **kwargs)
    except Exception as e:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise EmbodiedError(f"{field_name}={path}: cannot load {cls.__name__} ({msg[:200]})") from None


def _dtype(name: str) -> torch.dtype:
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise EmbodiedError(f"model.llm.dtype={name!r}: expected float32, bfloat16 or float16") from None


def load_tokenizer(cfg: LLMConfig):
    if not cfg.pretrained:
        raise EmbodiedError("model.llm.pretrained is not set: the tokenizer is loaded from the LLM's directory "
                            "(`embodied train-planner stage=lm` makes one for the tiny model)")
    return tokenizer_from(cfg.pretrained, "model.llm.pretrained", trust_remote_code=cfg.trust_remote_code)


def tokenizer_from(path: str | Path, field_name: str, trust_remote_code: bool = False):
    """A tokenizer from a local directory, with a pad token (LLaMA ships without one; EOS serves,
    since padded positions are never attended to)."""
    from transformers import AutoTokenizer

    tok = load_hf(AutoTokenizer, str(path), field_name, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    return tok


def build_llm(cfg: LLMConfig, vocab_size: int | None = None) -> nn.Module:
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    if cfg.pretrained:
        return load_hf(AutoModelForCausalLM, cfg.pretrained, "model.llm.pretrained", dtype=_dtype(cfg.dtype),
                       trust_remote_code=cfg.trust_remote_code)
    return LlamaForCausalLM(llama_config(cfg, vocab_size)).to(_dtype(cfg.dtype))


def llama_config(cfg: LLMConfig, vocab_size: int | None = None):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size or cfg.vocab_size, hidden_size=cfg.hidden_size,
                       intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                       num_attention_heads=cfg.num_heads, max_position_embeddings=cfg.max_position,
                       bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)


def add_adapter(llm: nn.Module, cfg: AdapterConfig) -> nn.Module:
    """Wrap the (frozen) LLM with a peft adapter: LLaMA-Adapter prompts, prefix tuning or LoRA."""
    import peft

    if cfg.type == "none":
        return llm
    if cfg.type == "adaption_prompt":
        n_layers = llm.config.num_hidden_layers
        pc = peft.AdaptionPromptConfig(adapter_len=cfg.adapter_len, adapter_layers=min(cfg.adapter_layers, n_layers),
                                       task_type="CAUSAL_LM")
    elif cfg.type == "prefix":
        pc = peft.PrefixTuningConfig(num_virtual_tokens=cfg.num_virtual_tokens, task_type="CAUSAL_LM")
    elif cfg.type == "lora":
        pc = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=list(cfg.lora_targets),
                             task_type="CAUSAL_LM")
    else:
        raise EmbodiedError(f"model.adapter.type={cfg.type!r}: expected adaption_prompt, prefix, lora or none")
    with warnings.catch_warnings():  # peft calls a transformers API that is being renamed
        warnings.simplefilter("ignore", FutureWarning)
        return peft.get_peft_model(llm, pc)


def count_parameters(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "frozen": total - trainable}


"""EmbodiedGPT's typed configuration (the model is in embodied/modeling.py), saved as config.json with its weights.

The dataclass defaults are the 7B configuration's shapes (CLIP ViT-L/14, the BLIP-2-sized Embodied-former,
LLaMA-7B); configs/model/*.yaml hold only what a configuration changes (tiny.yaml: every size).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from embodied.errors import EmbodiedError, check_fields


@dataclass
class VisionConfig:
    """The frozen ViT and its temporal patch embedding.

    Args:
        pretrained: a local Hugging Face directory (CLIPVisionModel, or a full CLIPModel); None: random init.
        image_size: frames are resized to this many pixels a side.
        patch_size: ViT patch size in pixels.
        hidden_size: ViT width.
        num_layers: ViT depth.
        num_heads: ViT attention heads.
        intermediate_size: ViT MLP width.
        frames: frames per clip.
        temporal_patch: the Conv3D patch embedding's kernel and stride in time, as in EmbodiedGPT.
        views: camera clips per sample (e.g. third-person and wrist), each encoded alone.
        freeze: freeze the ViT (the video patch embedding has its own switch).
        train_patch_embed: train the Conv3D video patch embedding.
    """

    pretrained: str | None = None
    image_size: int = 224
    patch_size: int = 14
    hidden_size: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    intermediate_size: int = 4096
    frames: int = 8
    temporal_patch: int = 2
    views: int = 1
    freeze: bool = True
    train_patch_embed: bool = True


@dataclass
class EFormerConfig:
    """The Embodied-former: learnable queries that self-attend with the text and cross-attend to the visual tokens.

    Args:
        num_queries: learnable queries (the visual tokens the LLM sees, after the language mapping).
        hidden_size: width.
        num_layers: depth.
        num_heads: attention heads.
        intermediate_size: MLP width.
        cross_attention_freq: layers 0, f, 2f, ... cross-attend to the visual tokens (BLIP-2's rule).
        max_text_len: text tokens the queries attend with.
        dropout: dropout in attention and MLPs.
        blip2: a local Hugging Face BLIP-2 directory to initialise the queries and layers from; None: random init.
    """

    num_queries: int = 32
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    cross_attention_freq: int = 2
    max_text_len: int = 64
    dropout: float = 0.1
    blip2: str | None = None


@dataclass
class LLMConfig:
    """The frozen causal language model.

    Args:
        pretrained: a local Hugging Face causal-LM directory (it also holds the tokenizer); None: a random LLaMA of
            the sizes below.
        hidden_size: width (read from the checkpoint when `pretrained` is set).
        num_layers: depth.
        num_heads: attention heads.
        intermediate_size: MLP width.
        vocab_size: vocabulary size (read from the checkpoint when `pretrained` is set).
        max_position: longest sequence.
        freeze: freeze the LLM (only the adapter trains).
        dtype: weights' dtype when loaded (float32, bfloat16, float16).
        trust_remote_code: let transformers run a checkpoint's own code (off: no code from a model directory runs).
    """

    pretrained: str | None = None
    hidden_size: int = 4096
    num_layers: int = 32
    num_heads: int = 32
    intermediate_size: int = 11008
    vocab_size: int = 32000
    max_position: int = 2048
    freeze: bool = True
    dtype: str = "float32"
    trust_remote_code: bool = False


@dataclass
class AdapterConfig:
    """The peft adapter on the frozen LLM.

    Args:
        type: adaption_prompt (LLaMA-Adapter, the paper's prefix adapter) | prefix (prefix tuning) | lora | none.
        adapter_len: LLaMA-Adapter prompt length.
        adapter_layers: LLaMA-Adapter: the last this many layers get prompts.
        num_virtual_tokens: prefix tuning's virtual tokens.
        lora_r: LoRA rank.
        lora_alpha: LoRA scale.
        lora_targets: LoRA's target modules.
    """

    type: str = "adaption_prompt"
    adapter_len: int = 10
    adapter_layers: int = 30
    num_virtual_tokens: int = 16
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class EmbodiedGPTConfig:
    """The whole model.

    Args:
        vision: the ViT (VisionConfig).
        eformer: the Embodied-former (EFormerConfig).
        llm: the language model (LLMConfig).
        adapter: the LLM's adapter (AdapterConfig).
        max_prompt_len: prompt tokens kept (longer prompts are cut).
        max_answer_len: answer tokens trained on.
        cameras: what the planner was trained to watch ([] if not known); the loop shows it the same.
    """

    vision: VisionConfig = field(default_factory=VisionConfig)
    eformer: EFormerConfig = field(default_factory=EFormerConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    max_prompt_len: int = 96
    max_answer_len: int = 160
    cameras: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "model.") -> "EmbodiedGPTConfig":
        """`where` comes before a field's name in errors (`model.` for the job's config, `ckpt/config.json: `)."""
        parts = {"vision": VisionConfig, "eformer": EFormerConfig, "llm": LLMConfig, "adapter": AdapterConfig}
        if not isinstance(d, dict):
            raise EmbodiedError(f"{where.rstrip(':. ')}: expected a mapping of fields, got {type(d).__name__}")
        kwargs = {k: v for k, v in d.items() if k != "name"}
        check_fields(cls, kwargs, where)
        for key, part in parts.items():
            if key in kwargs:
                if not isinstance(kwargs[key], dict):
                    raise EmbodiedError(f"{where}{key}={kwargs[key]!r}: expected a mapping")
                check_fields(part, kwargs[key], f"{where}{key}.")
                kwargs[key] = part(**kwargs[key])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

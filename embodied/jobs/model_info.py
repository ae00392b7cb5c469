"""`embodied model-info model=egpt_7b`: parameter counts (built on the meta device: no memory, no
weights) and a memory estimate for bf16 inference and training."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig

GiB = 2**30


def build_on_meta(cfg: DictConfig):
    """The model's modules with shapes only. The tokenizer is not needed for shapes: a stand-in with
    the configured vocabulary size takes its place when no LLM directory is given."""
    from embodied.jobs.train_planner import model_config
    from embodied.modeling import EmbodiedGPT

    mcfg = model_config(cfg)
    tok = None if mcfg.llm.pretrained else _VocabOnly(mcfg.llm.vocab_size)
    with torch.device("meta"):
        return EmbodiedGPT(mcfg, tokenizer=tok)


class _VocabOnly:
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


def memory_estimate(model) -> dict:
    """Weights in bf16 for inference; for training, frozen weights in bf16 plus, per trainable
    parameter, bf16 weight + fp32 master copy + fp32 gradient + two fp32 Adam moments (18 bytes).
    Activations come on top and depend on batch and sequence length."""
    groups = {
        "vision": model.vision.backbone,
        "video_patch_embed": [model.vision.patch_embed3d, model.vision.temporal_embed],
        "eformer": model.eformer,
        "mapping": model.mapping,
        "llm": model.llm,
    }
    counts = {}
    for name, mods in groups.items():
        mods = mods if isinstance(mods, list) else [mods]
        ps = [p for m in mods for p in ([m] if isinstance(m, torch.nn.Parameter) else m.parameters())]
        counts[name] = {"total": sum(p.numel() for p in ps), "trainable": sum(p.numel() for p in ps if p.requires_grad)}
    total = sum(c["total"] for c in counts.values())
    trainable = sum(c["trainable"] for c in counts.values())
    return {"parameters": counts, "total": total, "trainable": trainable, "frozen": total - trainable,
            "bf16_inference_weights_GiB": round(2 * total / GiB, 2),
            "bf16_training_weights_and_optimizer_GiB": round((2 * (total - trainable) + 18 * trainable) / GiB, 2)}


def run(cfg: DictConfig, default_dir: Path) -> dict:
    model = build_on_meta(cfg)
    est = memory_estimate(model)
    print(f"model {cfg.model.name}: {est['total'] / 1e9:.3f} B parameters, {est['trainable'] / 1e6:.1f} M trainable")
    for name, c in est["parameters"].items():
        print(f"  {name:18s} {c['total'] / 1e6:10.1f} M   trainable {c['trainable'] / 1e6:8.2f} M")
    print(f"bf16 inference, weights: {est['bf16_inference_weights_GiB']} GiB (+ activations and KV cache)")
    print(
        f"bf16 training, weights + grads + Adam: {est['bf16_training_weights_and_optimizer_GiB']} GiB (+ activations)"
    )
    print(json.dumps(est))
    return est

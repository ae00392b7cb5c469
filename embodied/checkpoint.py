"""EmbodiedGPT checkpoints: a directory with config.json, model.safetensors (the weights trained here
only), tokenizer/, and -- when they were trained here rather than loaded from a user's directory --
the ViT and the LLM as Hugging Face directories vision/ and llm/ (the tiny model).

Written into a temporary directory and renamed into place, so a killed save leaves the old one whole.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from embodied.errors import EmbodiedError
from embodied.io import atomic_dir, read_safetensors
from embodied.modeling import EmbodiedGPT, EmbodiedGPTConfig


def _bundled(part_cfg) -> bool:
    """A backbone goes into the checkpoint when nothing else holds its weights."""
    return not part_cfg.pretrained or not part_cfg.freeze


def save_model(model: EmbodiedGPT, path: str | Path, bundle: bool = False, extra: dict | None = None) -> Path:
    """`bundle` copies the backbones in even when they came from a directory (a self-contained
    checkpoint, as the shipped tiny model is); `extra` maps file names to writers `fn(path)`."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        cfg = EmbodiedGPTConfig.from_dict(model.cfg.to_dict())
        cfg.eformer.blip2 = None  # its weights are in model.safetensors now
        if bundle or _bundled(model.cfg.vision):
            model.vision.backbone.save_pretrained(tmp / "vision")
            cfg.vision.pretrained, cfg.vision.freeze = "vision", True
        if bundle or _bundled(model.cfg.llm):
            _save_llm(model, tmp / "llm")
            cfg.llm.pretrained, cfg.llm.freeze = "llm", True
        state = {k: v for k, v in model.trainable_state_dict().items()
                 if not (k.startswith("vision.backbone.") and (bundle or _bundled(model.cfg.vision)))}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        model.tokenizer.save_pretrained(tmp / "tokenizer")
        for name, writer in (extra or {}).items():
            writer(tmp / name)
        (tmp / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    return path


def _save_llm(model: EmbodiedGPT, out: Path) -> None:
    """The LLM as it was before peft wrapped it: a copy of its directory, or (random init) its weights
    with the adapter's wrapping taken out of the names."""
    src = model.cfg.llm.pretrained
    if src and Path(src).is_dir():
        shutil.copytree(src, out, ignore=shutil.ignore_patterns("trainer_state.pt"))
        return
    import re

    base = model.llm.get_base_model() if hasattr(model.llm, "get_base_model") else model.llm
    clean = type(base)(base.config)
    wrapped = base.state_dict()
    state = {}
    for key in clean.state_dict():
        for cand in (
            key,
            re.sub(r"\.self_attn\.", ".self_attn.model.", key),
            key.replace(".weight", ".base_layer.weight"),
            key.replace(".bias", ".base_layer.bias"),
        ):
            if cand in wrapped:
                state[key] = wrapped[cand]
                break
        else:
            raise EmbodiedError(f"cannot find the LLM weight '{key}' under its adapter to save it")
    clean.load_state_dict(state)
    clean.save_pretrained(out)
    model.tokenizer.save_pretrained(out)


def read_config(path: str | Path) -> EmbodiedGPTConfig:
    from embodied.assets import resolve

    path = resolve(path)
    f = path / "config.json"
    if not f.exists():
        raise EmbodiedError(f"{path}: not an EmbodiedGPT checkpoint (no config.json)")
    try:
        cfg = EmbodiedGPTConfig.from_dict(json.loads(f.read_text()), where=f"{f}: ")
    except (json.JSONDecodeError, TypeError) as e:
        raise EmbodiedError(f"{f}: unreadable config ({e})") from None
    for part in (cfg.vision, cfg.llm):  # paths inside the checkpoint are stored relative to it
        if part.pretrained and not Path(part.pretrained).is_absolute() and (path / part.pretrained).exists():
            part.pretrained = str(path / part.pretrained)
    return cfg


def load_model(path: str | Path, cfg: EmbodiedGPTConfig | None = None, tokenizer=None) -> EmbodiedGPT:
    """Build the model from its config (the frozen parts from their directories) and load the
    trained weights. `cfg` may override the stored config (e.g. to unfreeze a part)."""
    from embodied.assets import resolve
    from embodied.modeling import tokenizer_from

    path = resolve(path)
    cfg = cfg or read_config(path)
    if tokenizer is None and (path / "tokenizer").is_dir():
        tokenizer = tokenizer_from(path / "tokenizer", f"{path}/tokenizer")
    model = EmbodiedGPT(cfg, tokenizer=tokenizer)
    load_weights(model, path / "model.safetensors")
    return model


def load_weights(model: EmbodiedGPT, file: str | Path) -> None:
    file = Path(file)
    state = read_safetensors(file)
    params = dict(model.named_parameters())
    unknown = [k for k in state if k not in params]
    if unknown:
        raise EmbodiedError(f"{file}: weights for parameters this model does not have: {unknown[:3]} "
                            f"({len(unknown)} in all); was it saved with another config?")
    for k, v in state.items():
        if params[k].shape != v.shape:
            raise EmbodiedError(f"{file}: '{k}' has shape {tuple(v.shape)}, the model expects {tuple(params[k].shape)}")
    # A trainable ViT loaded from a directory (the tiny recipe's stage 1, resumed) has its weights there.
    expected = {k for k, p in params.items() if p.requires_grad
                and not (k.startswith("vision.backbone.") and model.cfg.vision.pretrained)}
    missing = sorted(expected - set(state))
    if missing:
        raise EmbodiedError(f"{file}: no weights for trainable parameters {missing[:3]} ({len(missing)} in all)")
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(v.to(params[k].dtype))


def load_perception(path: str | Path):
    """The planner's ViT and Embodied-former (and tokenizer) without its LLM: what a policy needs, and a
    fingerprint of their weights (a policy trained on these features records it: retraining the planner in
    place must not change a policy's inputs without a word)."""
    from embodied.assets import resolve
    from embodied.modeling import EmbodiedFormer, VisionEncoder, tokenizer_from

    path = resolve(path)
    cfg = read_config(path)
    tok_dir = path / "tokenizer" if (path / "tokenizer").is_dir() else Path(cfg.llm.pretrained or "")
    tokenizer = tokenizer_from(tok_dir, f"{path}: tokenizer")
    vision = VisionEncoder(cfg.vision)
    eformer = EmbodiedFormer(cfg.eformer, cfg.vision.hidden_size, len(tokenizer))
    state = read_safetensors(path / "model.safetensors")
    for prefix, module in (("vision.", vision), ("eformer.", eformer)):
        part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        missing = [k for k, p in module.named_parameters() if p.requires_grad and k not in part]
        if missing:
            raise EmbodiedError(
                f"{path}/model.safetensors: no weights for {prefix}{missing[0]} ({len(missing)} in all)"
            )
        module.load_state_dict(part, strict=False)
    return vision.eval(), eformer.eval(), tokenizer, _fingerprint(state, ("vision.", "eformer."))


def _fingerprint(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for k in sorted(k for k in state if k.startswith(prefixes)):
        digest.update(k.encode())
        digest.update(state[k].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]

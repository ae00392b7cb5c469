"""Saving and loading models, the transformers way: every model class has `save_pretrained(path)` and
`from_pretrained(path)`, and the format lives here, below the models (this module imports no model class).

A checkpoint is a directory: config.json (the model's typed config, a dataclass) and model.safetensors (its
weights), plus whatever files a model adds (`extra`: {file name: writer(path)}, e.g. a tokenizer or a training
run's optimizer state). It is written into a temporary directory and renamed into place, so a killed save leaves
the old checkpoint whole. Loading checks the weights against the model built from the config and fails with one
line naming the file and the first weight that does not fit.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from safetensors.torch import save_file

from embodied.errors import EmbodiedError, check_fields
from embodied.io import atomic_dir, read_safetensors

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def write_checkpoint(path: str | Path, config: dict, state: dict[str, torch.Tensor],
                     extra: dict[str, Callable[[Path], Any]] | None = None) -> Path:
    """config.json + model.safetensors (+ `extra` files) in `path`, replaced whole."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        write_weights(tmp / WEIGHTS_NAME, state)
        for name, writer in (extra or {}).items():
            writer(tmp / name)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=str) + "\n")
    return path


def write_weights(file: str | Path, state: dict[str, torch.Tensor]) -> None:
    """A safetensors file of `state` (on the CPU, contiguous); the caller makes it atomic."""
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(file), metadata={"format": "pt"})


def read_config(path: str | Path, what: str) -> dict:
    """The JSON object in `path`/config.json, or one error naming the file (`what`: the kind of checkpoint)."""
    f = Path(path) / CONFIG_NAME
    if not f.exists():
        raise EmbodiedError(f"{path}: not {what} checkpoint (no {CONFIG_NAME})")
    try:
        d = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise EmbodiedError(f"{f}: unreadable ({e})") from None
    if not isinstance(d, dict):
        raise EmbodiedError(f"{f}: expected a JSON object, got {type(d).__name__}")
    return d


def typed_config(cls: type, d: dict, where: str):
    """Dataclass `cls` from dict `d`, every field checked (one error naming `where` and the field)."""
    check_fields(cls, d, where)
    return cls(**d)


def load_weights(module: torch.nn.Module, file: str | Path, expected: Iterable[str]) -> None:
    """Copy the weights in `file` into `module`: each must be one of its weights, of the same shape, and every
    name in `expected` must be there (the others keep what the module was built with: frozen backbones loaded
    from their own directories, buffers computed at build time)."""
    file = Path(file)
    state = read_safetensors(file)
    own = module.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise EmbodiedError(f"{file}: weights this model does not have: {unknown[:3]} ({len(unknown)} in all); "
                            f"was it saved with another config?")
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise EmbodiedError(f"{file}: '{k}' has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
    missing = sorted(set(expected) - set(state))
    if missing:
        raise EmbodiedError(f"{file}: no weights for {missing[:3]} ({len(missing)} in all)")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v.to(own[k].dtype))


def fingerprint(state: dict[str, torch.Tensor], prefixes: tuple[str, ...] = ("",)) -> str:
    """A short hash of the weights under `prefixes`: what a model trained on another's outputs records, so that
    retraining that one in place cannot change its inputs without a word."""
    digest = hashlib.sha256()
    for k in sorted(k for k in state if k.startswith(prefixes)):
        digest.update(k.encode())
        digest.update(state[k].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class PretrainedMixin:
    """`save_pretrained` / `from_pretrained` for an nn.Module whose typed config is `self.cfg`, an instance of the
    class attribute `config_class`. A model changes what is saved by overriding `config_dict`, `state_to_save` and
    `expected_weights`, and how it is built from its config by overriding `from_config`."""

    config_class: type
    checkpoint_kind = "a model"  # "not {kind} checkpoint" in errors

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.cfg)

    def state_to_save(self) -> dict[str, torch.Tensor]:
        return self.state_dict()

    def expected_weights(self) -> set[str]:
        """The weights a checkpoint of this model must hold."""
        return set(self.state_to_save())

    def save_pretrained(self, path: str | Path, extra: dict[str, Callable[[Path], Any]] | None = None) -> Path:
        return write_checkpoint(path, self.config_dict(), self.state_to_save(), extra)

    @classmethod
    def from_config(cls, cfg, path: Path):
        """The model, untrained, as its checkpoint at `path` describes it."""
        return cls(cfg)

    @classmethod
    def from_pretrained(cls, path: str | Path):
        from embodied.assets import resolve

        path = resolve(path)
        d = read_config(path, cls.checkpoint_kind)
        cfg = typed_config(cls.config_class, d, f"{path / CONFIG_NAME}: ")
        model = cls.from_config(cfg, path)
        load_weights(model, path / WEIGHTS_NAME, model.expected_weights())
        return model.eval()

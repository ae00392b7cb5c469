"""Checkpoints shipped inside the package (the tiny model trained by `embodied pipeline`), addressed by
short names: `tiny/planner`, `tiny/policies/stack`, ... A path that exists on disk always wins."""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"


def resolve(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists() and (ASSETS / p).exists():
        return ASSETS / p
    return p

"""`embodied simqa demos=[...] out=DIR seed=0`: the simulated planning-QA benchmark (datasets/simqa.py)."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from embodied.datasets.simqa import build_simqa
from embodied.errors import EmbodiedError


def run(cfg: DictConfig, default_dir: Path) -> Path:
    from embodied.cli import save_config

    if not cfg.demos:
        raise EmbodiedError("demos is not set: demo files of held-out seeds, e.g. demos=[heldout_stack.hdf5]")
    out = Path(cfg.out) if cfg.out else default_dir
    save_config(cfg, out)
    demos = [cfg.demos] if isinstance(cfg.demos, str) else list(cfg.demos)
    path = build_simqa(demos, out, seed=int(cfg.seed), n_frames=int(cfg.frames), frame_stride=int(cfg.frame_stride),
                       explain_episodes=int(cfg.explain_episodes))
    kinds: dict[str, int] = {}
    for line in open(path):
        k = json.loads(line)["kind"]
        kinds[k] = kinds.get(k, 0) + 1
    print(json.dumps({"simqa": str(path), "samples": kinds}))
    return path

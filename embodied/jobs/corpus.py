"""`embodied corpus demos=[a.hdf5,b.hdf5] out=DIR`: EgoCOT-format planning samples from sim demos."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from embodied.datasets.corpus import build_corpus
from embodied.errors import EmbodiedError


def run(cfg: DictConfig, default_dir: Path) -> Path:
    from embodied.runconfig import save_config

    if not cfg.demos:
        raise EmbodiedError("demos is not set: give demo files, e.g. demos=[stack.hdf5,lift.hdf5]")
    demos = [cfg.demos] if isinstance(cfg.demos, str) else list(cfg.demos)
    out = Path(cfg.out) if cfg.out else default_dir
    save_config(cfg, out)
    camera = cfg.camera if cfg.camera is None or isinstance(cfg.camera, str) else list(cfg.camera)
    path = build_corpus(demos, out, camera=camera, n_frames=int(cfg.frames), frame_stride=int(cfg.frame_stride),
                        per_segment=int(cfg.per_segment), subset=cfg.subset)
    n = sum(1 for _ in open(path))
    print(json.dumps({"corpus": str(path), "samples": n}))
    return path

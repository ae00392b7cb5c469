"""`embodied report out=DIR`: the tables and summaries of a rollout, eval-loop or eval-plan run rebuilt from what
its folder holds, finished or not: merged episodes and those still in shard files (left where they are, so
running shards go on). The run's own config.yaml says which job made it and with what settings."""
from __future__ import annotations

import importlib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embodied.errors import EmbodiedError


def job_of(cfg: DictConfig) -> str:
    """The job module that wrote a run's config."""
    if "planners" in cfg and "conditions" in cfg:
        return "embodied.jobs.eval_loop"
    if "dataset" in cfg and "max_new_tokens" in cfg:
        return "embodied.jobs.eval_plan"
    if "env" in cfg and "policy" in cfg and "n" in cfg:
        return "embodied.jobs.rollout"
    raise EmbodiedError("report: the run's config.yaml is not of a rollout, eval-loop or eval-plan run")


def run(cfg: DictConfig, default_dir: Path) -> dict:
    if not cfg.out:
        raise EmbodiedError("out is not set: the run folder to report on (out=DIR)")
    out = Path(cfg.out)
    path = out / "config.yaml"
    if not path.exists():
        raise EmbodiedError(f"out={out}: no config.yaml; not a run folder of rollout, eval-loop or eval-plan")
    run_cfg = OmegaConf.load(path)
    run_cfg.out = str(out)  # wherever the folder is now
    return importlib.import_module(job_of(run_cfg)).run(run_cfg, out, report=True)

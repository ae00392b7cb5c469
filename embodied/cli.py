"""`embodied JOB [hydra overrides]`: compose configs/JOB.yaml with the overrides and run the job."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

from omegaconf import OmegaConf

from embodied.errors import EmbodiedError, watch_interrupts
from embodied.jobs import JOBS
from embodied.runconfig import compose, run_dir

USAGE = f"""usage: embodied JOB [key=value ...]

jobs: {", ".join(JOBS)}
Overrides are Hydra's: env=metaworld/assembly  env.cameras=[agentview]  n=25  out=PATH
Show a job's config: embodied JOB --cfg"""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    job, overrides = args[0], args[1:]
    watch_interrupts()
    try:
        if job not in JOBS:
            raise EmbodiedError(f"unknown job '{job}'; expected one of {list(JOBS)}")
        show = "--cfg" in overrides
        cfg = compose(job.replace("-", "_"), [o for o in overrides if o != "--cfg"])
        if show:
            print(OmegaConf.to_yaml(cfg, resolve=True))
            return 0
        module = importlib.import_module(JOBS[job])
        default_dir = run_dir(cfg, job)
        new = _new_folder(Path(cfg.out) if cfg.get("out") else default_dir)
        try:
            module.run(cfg, default_dir=default_dir)
        except (EmbodiedError, KeyboardInterrupt):
            _drop_if_empty(new)
            raise
    except EmbodiedError as e:
        print(f"embodied {job}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"embodied {job}: interrupted", file=sys.stderr)
        return 130
    return 0


def _new_folder(target: Path) -> Path | None:
    """The outermost folder on the way to `target` (itself included) that does not exist yet: what this run
    would create."""
    new = None
    for p in (target, *target.parents):
        if p.exists():
            break
        new = p
    return new


def _drop_if_empty(folder: Path | None) -> None:
    """A run that failed before its real work leaves no folder holding only its config.yaml (or nothing)."""
    import shutil

    if folder is None or not folder.is_dir():
        return
    if all(p.is_dir() or p.name == "config.yaml" for p in folder.rglob("*")):
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

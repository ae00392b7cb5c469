"""`embodied ship run=runs/tiny`: copy a pipeline run's planner and best policies into the package
(embodied/assets/tiny), without optimizer state, with the policies pointing at the shipped planner."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from omegaconf import DictConfig

from embodied.assets import ASSETS
from embodied.errors import EmbodiedError
from embodied.io import atomic_dir
from embodied.policies import load_policy

LIMIT = 50 * 2**20


def run(cfg: DictConfig, default_dir: Path) -> Path:
    run_dir = Path(cfg.run)
    planner = run_dir / "plan" / "checkpoint"
    if not (planner / "config.json").exists():
        raise EmbodiedError(f"run={run_dir}: no planner checkpoint at plan/checkpoint; run `embodied pipeline` first")
    dest = ASSETS / str(cfg.name)
    with atomic_dir(dest) as tmp:
        shutil.copytree(planner, tmp / "planner", ignore=shutil.ignore_patterns("trainer_state.pt"))
        for pol in sorted((run_dir / "policies").glob("*/best")):
            target = tmp / "policies" / pol.parent.name
            shutil.copytree(pol, target)
            c = json.loads((target / "config.json").read_text())
            if "planner" in c:  # relative to the policy directory: the shipped planner (low-dim policies have none)
                c["planner"] = "../../planner"
            (target / "config.json").write_text(json.dumps(c, indent=2) + "\n")
            # loads against the planner copied above: a planner trained further after the policy refuses here
            load_policy(target)
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        if size > LIMIT:
            raise EmbodiedError(f"{size / 2**20:.1f} MB to ship, more than the {LIMIT // 2**20} MB budget")
    print(
        json.dumps(
            {
                "shipped": str(dest),
                "MB": round(size / 2**20, 1),
                "policies": sorted(p.name for p in (dest / "policies").iterdir())
                if (dest / "policies").exists()
                else [],
            }
        )
    )
    return dest

"""`embodied JOB [hydra overrides]`: compose configs/JOB.yaml with the overrides and run the job."""
from __future__ import annotations

import datetime
import importlib
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embodied.errors import EmbodiedError
from embodied.io import atomic_path

JOBS = {
    "collect": "embodied.jobs.collect",
    "rerender": "embodied.jobs.rerender",
    "rollout": "embodied.jobs.rollout",
    "corpus": "embodied.jobs.corpus",
    "train-planner": "embodied.jobs.train_planner",
    "train-policy": "embodied.jobs.train_policy",
    "simqa": "embodied.jobs.simqa",
    "train-done": "embodied.jobs.train_done",
    "eval-plan": "embodied.jobs.eval_plan",
    "eval-loop": "embodied.jobs.eval_loop",
    "pipeline": "embodied.jobs.pipeline",
    "ship": "embodied.jobs.ship",
    "model-info": "embodied.jobs.model_info",
}
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

USAGE = f"""usage: embodied JOB [key=value ...]

jobs: {", ".join(JOBS)}
Overrides are Hydra's: env=metaworld/assembly  env.cameras=[agentview]  n=25  out=PATH
Show a job's config: embodied JOB --cfg"""


def config_dir() -> Path:
    """configs/ in a source checkout or editable install, embodied/configs in a wheel install."""
    from importlib.resources import files

    try:
        return Path(str(files("embodied.configs")))
    except ModuleNotFoundError:
        return CONFIG_DIR


def compose(job: str, overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        try:
            return hydra_compose(config_name=job, overrides=overrides)
        except Exception as e:  # Hydra's messages are multi-line: keep the part that names the problem
            raise EmbodiedError(_one_line(e)) from None


def _one_line(e: Exception) -> str:
    import re

    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    msg = lines[0] if lines else type(e).__name__
    missing = re.search(r"Could not find '([\w/]+?)/[^/']+'", msg)
    if missing:  # name the options that do exist in that config group
        group = config_dir() / missing.group(1).split("/")[0]
        options = sorted(str(p.relative_to(group).with_suffix("")) for p in group.rglob("*.yaml")
                         if not p.name.startswith("_"))
        if options:
            msg += f"; expected one of: {', '.join(options)}"
    key = re.search(r"Could not override '([^']+)'", msg)
    if key:
        msg += f" '{key.group(1)}' is not a key of this config (see `embodied JOB --cfg`)"
    return msg


def run_dir(cfg: DictConfig, job: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return Path("outputs") / job / stamp


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    job, overrides = args[0], args[1:]
    try:
        if job not in JOBS:
            raise EmbodiedError(f"unknown job '{job}'; expected one of {list(JOBS)}")
        show = "--cfg" in overrides
        cfg = compose(job.replace("-", "_"), [o for o in overrides if o != "--cfg"])
        if show:
            print(OmegaConf.to_yaml(cfg, resolve=True))
            return 0
        module = importlib.import_module(JOBS[job])
        module.run(cfg, default_dir=run_dir(cfg, job))
    except EmbodiedError as e:
        print(f"embodied {job}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"embodied {job}: interrupted", file=sys.stderr)
        return 130
    return 0


def save_config(cfg: DictConfig, out_dir: Path) -> None:
    """The resolved config beside the outputs, so every result says how it was made."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "config.yaml") as tmp:
        tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))


def check_continuation(cfg: DictConfig, out_dir: Path, resumable: tuple[str, ...]) -> None:
    """A job about to continue the run in `out_dir` (before it saves its own config there): only the keys in
    `resumable` (and everything under them) may differ from that run's, or the outputs would mix two
    experiments (a blind planner's summary scored on the egpt planner's predictions, say)."""
    diff = config_changes(cfg, out_dir, resumable)
    if diff:
        raise EmbodiedError(f"out={out_dir} holds a run made with other settings ({'; '.join(diff[:3])}"
                            f"{'; ...' if len(diff) > 3 else ''}), which this one would continue; use another "
                            f"out=, or remove {out_dir / 'config.yaml'} to continue it anyway")


def config_changes(cfg: DictConfig, out_dir: Path, resumable: tuple[str, ...] = ()) -> list[str]:
    """How `cfg` differs from the config.yaml of the run in `out_dir` (none when there is none), as
    'key=new here, old there', leaving out the keys in `resumable` and everything under them."""
    path = out_dir / "config.yaml"
    if not path.exists():
        return []
    old = flat(OmegaConf.to_container(OmegaConf.load(path), resolve=True))
    new = flat(OmegaConf.to_container(cfg, resolve=True))

    def below(d: dict, k: str) -> dict:
        return {x[len(k) + 1:]: v for x, v in d.items() if x.startswith(k + ".")}

    changes = []
    for k in sorted(old.keys() | new.keys()):
        if any(k == r or k.startswith(r + ".") for r in resumable):
            continue
        if k in old and k in new:
            if not _same_setting(old[k], new[k]):
                changes.append(f"{k}={new[k]!r} here, {old[k]!r} there")
        elif k in new and below(old, k):  # an option switched off or on: a value here, a mapping there
            changes.append(f"{k}={new[k]!r} here, {below(old, k)!r} there")
        elif k in old and below(new, k):
            changes.append(f"{k}={below(new, k)!r} here, {old[k]!r} there")
        # Else the key sits under such an option (that line covers it), or only one side has it at all: it
        # came or went with the code, not with this run's settings.
    return changes


def _same_setting(a, b) -> bool:
    """Equal, or spelled differently: a path and its absolute form, a value and a list of just that value."""
    if isinstance(a, list) != isinstance(b, list):
        a, b = (a if isinstance(a, list) else [a]), (b if isinstance(b, list) else [b])
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_setting(x, y) for x, y in zip(a, b))
    if isinstance(a, str) and isinstance(b, str) and a != b and Path(a).exists() and Path(b).exists():
        return Path(a).resolve() == Path(b).resolve()
    return a == b


def flat(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}, "c": {}} -> {"a.b": 1, "c": {}} (an empty mapping stays a value)"""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


if __name__ == "__main__":
    sys.exit(main())

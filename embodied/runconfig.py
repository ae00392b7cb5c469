"""A run's config: composed from configs/ with Hydra's overrides and checked (`compose`), saved beside its
outputs (`save_config`), and compared with the config of a run it would continue (`check_continuation`).
The ground floor every job stands on: it imports no stage."""
from __future__ import annotations

import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embodied.errors import EmbodiedError
from embodied.io import atomic_path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def config_dir() -> Path:
    """configs/ in a source checkout or editable install, embodied/configs in a wheel install."""
    from importlib.resources import files

    try:
        return Path(str(files("embodied.configs")))
    except ModuleNotFoundError:
        return CONFIG_DIR


# One source of defaults: a config group whose file says `defaults: [base, _self_]` starts from the typed config
# class named here (its dataclass defaults, `Args:` documented beside the model), and the file holds only what it
# changes. Named by string: the ground floor imports no stage (these modules are light, dataclasses only).
SCHEMAS = {
    "model": "embodied.configuration_embodiedgpt:EmbodiedGPTConfig",
    "agent": "embodied.configuration_agent:AgentConfig",
}


def register_schemas() -> None:
    """Each SCHEMAS class's defaults as the config `GROUP/base` in Hydra's ConfigStore."""
    import dataclasses
    import importlib

    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, target in SCHEMAS.items():
        module, _, name = target.partition(":")
        store.store(group=group, name="base", node=dataclasses.asdict(getattr(importlib.import_module(module), name)()))


def compose(job: str, overrides: list[str]) -> DictConfig:
    """The job's config with Hydra's overrides applied, its numbers and switches checked against the defaults.

    A mapping given for a mapping (`env.perturbation={kind: displace, at_step: 10, offset: [0.1, 0, 0]}`) is
    merged into it as Hydra does; where it names keys that mapping lacks, it replaces the mapping instead (Hydra
    would refuse the merge), so a perturbation or option block can be written out whole on the command line.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import ConfigCompositionException

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        try:
            try:
                cfg = hydra_compose(config_name=job, overrides=overrides)
            except ConfigCompositionException as e:
                replaced = _replace_mappings(overrides, e)
                if replaced is None:
                    raise
                cfg = hydra_compose(config_name=job, overrides=replaced)
            defaults = hydra_compose(config_name=job, overrides=[o for o in overrides if _is_group(o)])
        except EmbodiedError:
            raise
        except Exception as e:  # Hydra's messages are multi-line: the same words, on one line
            raise EmbodiedError(_one_line(e)) from None
    check_values(cfg, defaults)
    return cfg


def _is_group(override: str) -> bool:
    """`env=robosuite/lift`, `+planner=oracle`: a choice of config file, not a value."""
    key = override.split("=", 1)[0].lstrip("+~")
    return "=" in override and "." not in key and (config_dir() / key).is_dir()


def _replace_mappings(overrides: list[str], e: Exception) -> list[str] | None:
    """The overrides with `key=null` put before the mapping-valued one Hydra could not merge, or None when the
    failure was something else (a key that does not exist at all stays an error)."""
    import re

    failed = re.match(r"Could not override '([^']+)'", str(e))
    cause = str(e.__cause__ or "")
    if not failed or "is not in struct" not in cause:
        return None
    key = failed.group(1)
    full = re.search(r"full_key: (\S+)", cause)
    if not full or full.group(1) == key:  # the key itself is unknown, not a key inside the mapping
        return None
    out = []
    for o in overrides:
        k, _, v = o.partition("=")
        if k == key and v.lstrip().startswith("{"):
            out.append(f"{key}=null")
        out.append(o)
    return out if len(out) > len(overrides) else None


# Keys with a number default that also take null (unset).
NULLABLE = {"n_demos"}
# Keys with a switch or number default that also take these words.
ALSO = {"variety": ("cycle",)}
# Keys whose default is null (unset) that take a number when set: what they must hold then.
OPTIONAL_NUMBERS = {"n_demos": 0, "limit": 0, "max_attempts": 0, "stop_after": 0, "eval_horizon": 0,
                    "pixel_keypoints": 0, "min_score": 0.0, "time_limit": 0.0, "object_noise": 0.0,
                    "horizon": 0, "size": 0, "frame_size": 0}


def check_values(cfg: DictConfig, defaults: DictConfig) -> None:
    """Every key whose default is a number or a switch holds one of that kind: `n=abc`, `n=1.5`, `video=yes`
    fail here with the key's name, before a job starts; `workers` and `n` are at least 1."""
    have = flat(OmegaConf.to_container(cfg, resolve=False))
    for key, default in flat(OmegaConf.to_container(defaults, resolve=False)).items():
        name = key.split(".")[-1]
        if default is None and name in OPTIONAL_NUMBERS:
            default = OPTIONAL_NUMBERS[name]
        if key not in have or isinstance(default, str) or default is None:
            continue
        value = have[key]
        if value is None and (name in NULLABLE or name in OPTIONAL_NUMBERS) or value in ALSO.get(name, ()):
            continue
        if isinstance(default, bool):
            ok, want = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        else:
            continue
        if not ok:
            raise EmbodiedError(f"{key}={_show(value)}: expected {' or '.join((want, *ALSO.get(name, ())))}")
        if name in ("workers", "n") and value < 1:
            raise EmbodiedError(f"{key}={value}: expected at least 1")


def _show(value) -> str:
    """A value as it would be written on the command line (quoted where it is a string)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def _one_line(e: Exception) -> str:
    """Hydra's message (and its cause's) on one line, unchanged; for a missing config file, the ones that exist."""
    import re

    def lines(x) -> list[str]:
        return [s.strip() for s in str(x).splitlines() if s.strip() and not s.startswith(("\t", "provider="))]

    said = [s for s in lines(e) if s != "Config search path:"]
    cause = lines(e.__cause__) if e.__cause__ is not None else []
    msg = " ".join(said) or type(e).__name__
    if cause:
        msg += f" ({'; '.join(cause)})"
    missing = re.search(r"Could not find '([\w/]+?)/[^/']+'", msg)
    if missing:  # name the options that do exist in that config group
        group = config_dir() / missing.group(1).split("/")[0]
        options = sorted(str(p.relative_to(group).with_suffix("")) for p in group.rglob("*.yaml")
                         if not p.name.startswith("_"))
        if options:
            msg += f"; expected one of: {', '.join(options)}"
    key = re.search(r"Could not override '([^']+)'", msg)
    if key and re.search(rf"full_key: {re.escape(key.group(1))}\b", msg):
        msg += f"; '{key.group(1)}' is not a key of this config (see `embodied JOB --cfg`)"
    return msg


def run_dir(cfg: DictConfig, job: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return Path("outputs") / job / stamp


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

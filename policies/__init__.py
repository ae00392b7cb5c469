"""Policies: the shared interface is `act(obs, subgoal) -> action` and `reset()`.

Learned policies (one folder each, config beside model): `egpt` (EmbodiedGPT: Embodied-former features
conditioned on the sub-goal), `global` (the same head without sub-goal conditioning), `cnn` (BC from pixels),
`state` (BC from the simulator's low-dim state, conditioned on the sub-goal's skill), `pose` (the state head on
the pose estimator's reading of the cameras: pixels and proprioception only at rollout).
"""
from __future__ import annotations

from pathlib import Path

from embodied.errors import EmbodiedError
from embodied.policies.base import Policy, PolicyConfig
from embodied.policies.experts import make_expert
from embodied.policies.scripted import ScriptedExpert
from embodied.pretrained import CONFIG_NAME, WEIGHTS_NAME, read_config, typed_config


def policy_classes() -> dict:
    from embodied.policies.cnn_bc import CNNPolicy
    from embodied.policies.egpt import EGPTPolicy
    from embodied.policies.pose.policy import PosePolicy
    from embodied.policies.state_bc import StatePolicy

    return {"egpt": EGPTPolicy, "global": EGPTPolicy, "cnn": CNNPolicy, "state": StatePolicy, "pose": PosePolicy}


def make_policy(cfg: dict, root: Path | None = None, where: str = "policy") -> Policy:
    """A new policy from its config dict (type: egpt | global | cnn | state | pose); `where` names its source
    in errors."""
    classes = policy_classes()
    kind = cfg.get("type")
    prefix = "policy." if where == "policy" else f"{where}: "  # a job's key, or a file's field
    if kind not in classes:
        raise EmbodiedError(f"{prefix}type={kind!r}: expected one of {sorted(classes)} (or expert)")
    cls = classes[kind]
    d = {k: v for k, v in cfg.items() if v is not None}  # unset options: the type's defaults
    if kind == "global":
        d["use_subgoal"] = False
    return cls(typed_config(cls.config_class, d, prefix), root=root)


def load_policy(path: str | Path, device: str = "cpu") -> Policy:
    """A trained policy from its directory (config.json + model.safetensors), or a shipped one by name
    (`tiny/policies/stack`)."""
    from embodied.assets import resolve

    path = resolve(path)
    if not (path / CONFIG_NAME).exists() or not (path / WEIGHTS_NAME).exists():
        raise EmbodiedError(f"{path}: not a policy checkpoint (expected {CONFIG_NAME} and {WEIGHTS_NAME})")
    kind = read_config(path, "a policy").get("type")
    classes = policy_classes()
    if kind not in classes:
        raise EmbodiedError(f"{path / CONFIG_NAME}: type={kind!r}: expected one of {sorted(classes)}")
    return classes[kind].from_pretrained(path).to(device).eval()


__all__ = ["Policy", "PolicyConfig", "ScriptedExpert", "load_policy", "make_expert", "make_policy"]

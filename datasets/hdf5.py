"""Demo files in robomimic's HDF5 layout, plus sub-goal labels.

data (attrs: total, env_args JSON, embodied_env JSON)
  demo_i (attrs: num_samples, instruction, subgoals JSON, seed, model_file, video; from the loop (collect
          planner=oracle): agent_log JSON, perturbation JSON)
    actions (N, A) in [-1, 1], rewards (N,), dones (N,), states (N, S), subgoal_index (N,)
    obs/<camera>_image (N, H, W, 3) uint8 upright, obs/proprio, obs/object, obs/robot0_eef_pos, ...
    next_obs/... (same keys, shifted by one step; robomimic loads them by default)
mask/<name>: demo names as bytes (train, valid, 10_demos, ...)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from embodied.io import atomic_path

# How `proprio` splits into robomimic's low-dim keys, per backend.
PROPRIO_KEYS = {
    "robosuite": (("robot0_eef_pos", 3), ("robot0_eef_quat", 4), ("robot0_gripper_qpos", 2)),
    "metaworld": (("robot0_eef_pos", 3), ("robot0_gripper_qpos", 1)),
}
SUBSET_SIZES = (5, 10, 25, 50, 100)


class DemoWriter:
    """Write demos to `path` through a temporary file that is renamed into place on `close()`.

    Used as a context manager: an exception inside the block leaves no file behind.
    """

    def __init__(self, path: str | Path, env_args: dict, env_cfg: dict, next_obs: bool = True):
        self.path = Path(path)
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self.f = h5py.File(self._tmp, "w")
        self.data = self.f.create_group("data")
        self.data.attrs["env_args"] = json.dumps(env_args, default=str)
        self.data.attrs["embodied_env"] = json.dumps(env_cfg, default=str)
        self.backend = env_cfg["backend"]
        self.next_obs = next_obs
        self.names: list[str] = []
        self.total = 0

    def add(self, traj: dict, seed: int, model_file: str = "", video: str = "", attrs: dict | None = None) -> str:
        """Add one recorded episode (obs/actions/rewards/infos lists from the rollout runner); `attrs`: more
        per-demo attributes, stored as JSON (the loop's log, the perturbation)."""
        name = f"demo_{len(self.names)}"
        write_demo(self.data.create_group(name), traj, seed, self.backend, self.next_obs, model_file, video, attrs)
        self.names.append(name)
        self.total += len(traj["actions"])
        return name

    def add_from(self, file: str | Path, video: str = "") -> str:
        """Add the demo that `write_demo_file` wrote to `file` (copied as stored, no re-encoding)."""
        name = f"demo_{len(self.names)}"
        with h5py.File(file, "r") as src:
            self.f.copy(src["demo"], self.data, name=name)
        g = self.data[name]
        if video:
            g.attrs["video"] = video
        self.names.append(name)
        self.total += int(g.attrs["num_samples"])
        return name

    def close(self, valid_fraction: float = 0.1) -> Path:
        self.data.attrs["total"] = self.total
        names = self.names
        n_valid = int(round(len(names) * valid_fraction)) if len(names) > 1 else 0
        masks = {"train": names[: len(names) - n_valid], "valid": names[len(names) - n_valid :]}
        for k in SUBSET_SIZES:  # named few-demo subsets, drawn from the training split
            if k <= len(masks["train"]):
                masks[f"{k}_demos"] = masks["train"][:k]
        for key, demo_names in masks.items():
            self.f.create_dataset(f"mask/{key}", data=np.array(demo_names, dtype="S"))
        self.f.close()
        self._ctx.__exit__(None, None, None)
        return self.path

    def __enter__(self) -> "DemoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.f.close()
            self._ctx.__exit__(exc_type, exc, tb)


def write_demo_file(path: str | Path, traj: dict, seed: int, backend: str, next_obs: bool = True,
                    model_file: str = "", attrs: dict | None = None) -> Path:
    """One demo in a file of its own (group `demo`, written atomically): collect keeps each finished demo so,
    and a killed or interrupted run resumes from them."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            write_demo(f.create_group("demo"), traj, seed, backend, next_obs, model_file, "", attrs)
    return Path(path)


def write_demo(g: h5py.Group, traj: dict, seed: int, backend: str, next_obs: bool = True, model_file: str = "",
               video: str = "", attrs: dict | None = None) -> None:
    """One recorded episode into group `g` in robomimic's layout (see the module docstring)."""
    n = len(traj["actions"])
    infos = traj["infos"]
    g.create_dataset("actions", data=np.asarray(traj["actions"], np.float32))
    g.create_dataset("rewards", data=np.asarray(traj["rewards"], np.float32))
    dones = np.zeros(n, np.int64)
    dones[-1] = 1
    g.create_dataset("dones", data=dones)
    g.create_dataset("states", data=np.stack([i["state"] for i in infos[:n]]))
    g.create_dataset("subgoal_index", data=np.array([i["subgoal_index"] for i in infos[:n]], np.int64))
    g.attrs["num_samples"] = n
    g.attrs["instruction"] = infos[0]["instruction"]
    g.attrs["subgoals"] = json.dumps(list(infos[0]["subgoals"]))
    g.attrs["seed"] = int(seed)
    g.attrs["success"] = bool(infos[-1]["success"])
    if model_file:
        g.attrs["model_file"] = model_file
    if video:
        g.attrs["video"] = video
    for key, value in (attrs or {}).items():
        g.attrs[key] = json.dumps(value, default=str)
    _write_obs(g.create_group("obs"), traj["obs"][:n], backend)
    if next_obs:
        _write_obs(g.create_group("next_obs"), traj["obs"][1 : n + 1], backend)


def _write_obs(g: h5py.Group, obs: Sequence[dict], backend: str) -> None:
    for cam in obs[0].get("rgb", {}):
        frames = np.stack([o["rgb"][cam] for o in obs])
        g.create_dataset(f"{cam}_image", data=frames, compression="gzip", compression_opts=4,
                         chunks=(1, *frames.shape[1:]))
    proprio = np.stack([o["proprio"] for o in obs]).astype(np.float32)
    g.create_dataset("proprio", data=proprio)
    g.create_dataset("object", data=np.stack([o["object"] for o in obs]).astype(np.float32))
    start = 0
    for key, dim in PROPRIO_KEYS[backend]:
        g.create_dataset(key, data=proprio[:, start : start + dim])
        start += dim

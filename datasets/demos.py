"""Torch loader over demo files (ours or robomimic's): clips of k frames ending at step t."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch

from embodied.datasets.hdf5 import PROPRIO_KEYS
from embodied.errors import EmbodiedError


def open_demo_file(path: str | Path) -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise EmbodiedError(f"{path}: demo file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise EmbodiedError(f"{path}: not a readable HDF5 file ({e})") from None
    if "data" not in f or not any(k.startswith("demo") for k in f["data"]):
        f.close()
        raise EmbodiedError(f"{path}: missing group 'data/demo_*'; expected a robomimic-layout demo file")
    return f


def demo_names(f: h5py.File, subset: str | None = None) -> list[str]:
    if subset is None:
        names = list(f["data"].keys())
    else:
        if f"mask/{subset}" not in f:
            have = sorted(f["mask"].keys()) if "mask" in f else []
            raise EmbodiedError(f"{f.filename}: no demo subset 'mask/{subset}' (has: {have})")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f[f"mask/{subset}"][()]]
    return sorted(names, key=lambda n: int(n.split("_")[-1]) if n.split("_")[-1].isdigit() else n)


class DemoDataset(torch.utils.data.Dataset):
    """Samples of one step t of one demo:

    rgb {camera: uint8 (k, H, W, 3)} (clip of k frames ending at t, first frame repeated before the
    start), proprio float32, action float32, subgoal str ("" when the file has no labels),
    subgoal_index int (-1 without labels), instruction str, demo str, t int.
    Files from elsewhere without sub-goal labels load too (a warning says so).
    """

    def __init__(self, path: str | Path, clip_len: int = 8, cameras: Sequence[str] | None = None,
                 subset: str | None = None, frame_stride: int = 1):
        self.path, self.clip_len, self.stride = Path(path), int(clip_len), int(frame_stride)
        self.demos: list[dict] = []
        with open_demo_file(self.path) as f:
            names = demo_names(f, subset)
            env_meta = json.loads(f["data"].attrs.get("embodied_env", "{}"))
            self.backend = env_meta.get("backend", "robosuite")
            for name in names:
                self.demos.append(self._load_demo(f, name, cameras))
        self.cameras = list(self.demos[0]["rgb"]) if self.demos else []
        if any(d["labels"] is None for d in self.demos):
            warnings.warn(f"{self.path}: no sub-goal labels (attr 'subgoals', dataset 'subgoal_index'); "
                          "samples carry subgoal='' and subgoal_index=-1", stacklevel=2)
        self.index = [(d, t) for d in range(len(self.demos)) for t in range(len(self.demos[d]["actions"]))]

    def _load_demo(self, f: h5py.File, name: str, cameras: Sequence[str] | None) -> dict:
        g = f["data"][name]
        where = f"{self.path}: data/{name}"
        for key in ("actions", "obs"):
            if key not in g:
                raise EmbodiedError(f"{where} has no '{key}'; expected robomimic's layout (actions, obs/...)")
        obs = g["obs"]
        image_keys = [k[: -len("_image")] for k in obs if k.endswith("_image")]
        cams = list(cameras) if cameras is not None else image_keys
        for c in cams:
            if f"{c}_image" not in obs:
                raise EmbodiedError(f"{where}/obs has no camera '{c}' (has: {image_keys})")
        if "proprio" in obs:
            proprio = obs["proprio"][()]
        else:
            keys = [k for k, _ in PROPRIO_KEYS["robosuite"] if k in obs]
            if not keys:
                raise EmbodiedError(
                    f"{where}/obs has neither 'proprio' nor robomimic's robot0_eef_pos/quat/gripper_qpos"
                )
            proprio = np.concatenate([obs[k][()] for k in keys], axis=1)
        labels = None
        if "subgoals" in g.attrs and "subgoal_index" in g:
            labels = (json.loads(g.attrs["subgoals"]), g["subgoal_index"][()])
        return {
            "name": name,
            "rgb": {c: obs[f"{c}_image"][()] for c in cams},
            "proprio": proprio.astype(np.float32),
            "actions": g["actions"][()].astype(np.float32),
            "object": obs["object"][()].astype(np.float32) if "object" in obs else None,
            "instruction": str(g.attrs.get("instruction", "")),
            "labels": labels,
        }

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        d, t = self.index[i]
        demo = self.demos[d]
        steps = np.clip(t - self.stride * np.arange(self.clip_len - 1, -1, -1), 0, None)
        if demo["labels"] is None:
            subgoal, index = "", -1
        else:
            subgoals, indices = demo["labels"]
            index = int(indices[t])
            subgoal = subgoals[index]
        return {
            "rgb": {c: torch.from_numpy(v[steps]) for c, v in demo["rgb"].items()},
            "proprio": torch.from_numpy(demo["proprio"][t]),
            "action": torch.from_numpy(demo["actions"][t]),
            "subgoal": subgoal,
            "subgoal_index": index,
            "instruction": demo["instruction"],
            "demo": demo["name"],
            "t": t,
        }

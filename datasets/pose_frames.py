"""Labelled frames for a pose estimator, rendered from the stored simulator states of demos.

Demos collected without cameras are cheap (about 150 env steps/s against 16 with two cameras rendered at every
step), and the states they store replay exactly. So the frames come second: each demo's scene is reset from its
seed (placement and colours), a few of its steps are restored and rendered from every camera, and each frame is
labelled with what the simulator knows there (obs/object: every object's pose; obs/proprio: the hand's). Noisy
expert demos put the hand near the objects, in the poses a policy sees when it grasps and places, and around
them as it recovers.

Output: a folder of chunk files `frames_<k>.hdf5` (a fixed range of demos each, written atomically, so a killed
run resumes by skipping the finished chunks), each with
  rgb/<camera> (N, H, W, 3) uint8 upright, proprio (N, P), object (N, O), subgoal_index (N,), success (N,),
  seed (N,), t (N,)
"""
from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch
from tqdm import tqdm

from embodied.datasets.demos import demo_names, open_demo_file
from embodied.errors import EmbodiedError
from embodied.io import atomic_path
from embodied.layers import resize


def render_pose_frames(demos: str | Path, out: str | Path, cameras: Sequence[str], per_demo: int = 16,
                       chunk: int = 50, workers: int = 1, seed: int = 0, size: int | None = None) -> list[Path]:
    """Render `per_demo` steps drawn at random from each demo of `demos` into chunk files in `out`; the
    chunks already there are kept. `size`: frames rendered at size x size (default: the demos' env's)."""
    with open_demo_file(demos) as f:
        env_cfg = json.loads(f["data"].attrs.get("embodied_env", "{}"))
        names = demo_names(f)
        if not env_cfg:
            raise EmbodiedError(f"{demos}: no 'embodied_env' attr; pose frames need demos from `embodied collect`")
        if "states" not in f["data"][names[0]]:
            raise EmbodiedError(f"{demos}: {names[0]} has no states to render from")
    env_cfg.update(cameras=list(cameras), perturbation=None)
    if size:
        env_cfg.update(height=int(size), width=int(size))
    from embodied.envs import make_env

    make_env(env_cfg).close()  # a bad camera fails here, before any worker or progress bar starts
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(demos), names[i:i + chunk], str(out / f"frames_{i // chunk:04d}.hdf5"), env_cfg, per_demo, seed)
            for i in range(0, len(names), chunk)]
    todo = [j for j in jobs if not Path(j[2]).exists()]
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="pose frames", unit="chunk")
    if workers > 1 and len(todo) > 1:
        with multiprocessing.get_context("forkserver").Pool(min(workers, len(todo))) as pool:
            for _ in pool.imap_unordered(_render_chunk, todo):
                bar.update()
    else:
        for j in todo:
            _render_chunk(j)
            bar.update()
    bar.close()
    return [Path(j[2]) for j in jobs]


def _render_chunk(job: tuple) -> str:
    from embodied.envs import make_env

    demos, names, path, env_cfg, per_demo, seed = job
    env = make_env(env_cfg)
    cams = env_cfg["cameras"]
    rows: dict[str, list] = {"proprio": [], "object": [], "subgoal_index": [], "success": [], "seed": [], "t": []}
    frames: dict[str, list] = {c: [] for c in cams}
    try:
        with open_demo_file(demos) as f:
            for name in names:
                g = f["data"][name]
                demo_seed = int(g.attrs["seed"])
                states, index = g["states"][()], g["subgoal_index"][()]
                rng = np.random.default_rng([seed, demo_seed])
                steps = np.sort(rng.choice(len(states), size=min(per_demo, len(states)), replace=False))
                env.reset(seed=demo_seed)  # the demo's scene: placement and colours
                for t in steps:
                    obs = env.unwrapped.set_sim_state(states[t])
                    for c in cams:
                        frames[c].append(obs["rgb"][c])
                    rows["proprio"].append(obs["proprio"])
                    rows["object"].append(obs["object"])
                    rows["subgoal_index"].append(int(index[t]))
                    rows["success"].append(bool(env.unwrapped._progress()[1]))
                    rows["seed"].append(demo_seed)
                    rows["t"].append(int(t))
    finally:
        env.close()
    write_frames(path, frames, rows, env_cfg)
    return path


def write_frames(path: str | Path, frames: dict[str, list], rows: dict[str, list], env_cfg: dict) -> None:
    """One chunk file, written whole under a temporary name: rgb/<camera> plus a dataset per row key."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h:
            for c, v in frames.items():
                x = np.stack(v)
                h.create_dataset(f"rgb/{c}", data=x, chunks=(1, *x.shape[1:]), compression="gzip", compression_opts=4)
            for k, v in rows.items():
                h.create_dataset(k, data=np.asarray(v))
            h.attrs["env"] = json.dumps(env_cfg)


def load_pose_frames(paths: Sequence[str | Path], cameras: Sequence[str], size: int | None = None,
                     keys: Sequence[str] = ("proprio", "object", "seed")) -> dict:
    """The chunks' frames in memory: {"rgb": {camera: uint8 (N, H, W, 3)}, and each of `keys`} (proprio and
    object float32, the others as stored). `size`: frames resized to size x size as each chunk is read (the
    antialiased resize the models do), so the full size is never held at once. A key some chunks lack
    ("success" in chunks made before it was recorded) is -1 there."""
    if not paths:
        raise EmbodiedError("no pose frames to load")
    parts: dict[str, list] = {k: [] for k in keys}
    rgb: dict[str, list] = {c: [] for c in cameras}
    for p in paths:
        try:
            h = h5py.File(p, "r")
        except OSError as e:
            raise EmbodiedError(f"{p}: not a readable HDF5 file ({e})") from None
        with h:
            for c in cameras:
                if f"rgb/{c}" not in h:
                    raise EmbodiedError(f"{p}: no frames of camera '{c}' (has {sorted(h['rgb'].keys())})")
                x = torch.from_numpy(h[f"rgb/{c}"][()])
                rgb[c].append(resized_frames(x, size) if size else x)
            n = len(h["seed"])
            for k in keys:
                parts[k].append(h[k][()] if k in h else np.full(n, -1))
    out = {k: torch.from_numpy(np.concatenate(v)) for k, v in parts.items()}
    for k in ("proprio", "object"):
        if k in out:
            out[k] = out[k].float()
    return {"rgb": {c: torch.cat(v) for c, v in rgb.items()}, **out}


def resized_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, size, size, 3) uint8, in blocks (the antialiased resize the models do too)."""
    if frames.shape[1] == size and frames.shape[2] == size:
        return frames
    out = [(resize(frames[i:i + 512], size) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
           for i in range(0, len(frames), 512)]
    return torch.cat(out)

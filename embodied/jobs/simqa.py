"""`embodied simqa demos=[...] out=DIR seed=0`: the simulated planning-QA benchmark (datasets/simqa.py)."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from embodied.datasets.simqa import build_simqa
from embodied.errors import EmbodiedError


def dropped_episodes(demo_paths: list[str], episodes: int, seed: int, after: int = 6) -> list[dict]:
    """The scripted expert with the drop perturbation on seeds no demo uses, for each robosuite pick task
    among the demos; each episode is cut `after` steps after the object fell."""
    import numpy as np

    from embodied.datasets.corpus import _ego_camera
    from embodied.datasets.demos import open_demo_file
    from embodied.envs import make_env
    from embodied.policies import make_expert

    tasks = {}
    for p in demo_paths:
        with open_demo_file(p) as f:
            env_cfg = json.loads(f["data"].attrs.get("embodied_env", "{}"))
        if env_cfg.get("backend") == "robosuite" and env_cfg.get("task") in ("Lift", "Stack", "PickPlaceCan"):
            tasks.setdefault(env_cfg["task"], env_cfg)
    out = []
    for task, env_cfg in sorted(tasks.items()):
        cam = _ego_camera(env_cfg.get("cameras") or ["robot0_eye_in_hand"])
        env = make_env(
            {**env_cfg, "cameras": [cam], "perturbation": {"kind": "drop", "at_subgoal": "lift", "delay": 3}}
        )
        for e in range(episodes):
            s = 10**6 + seed * 1000 + e
            expert = make_expert(env_cfg["backend"], task)
            obs, info = env.reset(seed=s)
            frames, since = [obs["rgb"][cam]], None
            for _ in range(300):
                obs, _, term, trunc, info = env.step(expert.act(obs))
                frames.append(obs["rgb"][cam])
                if info["perturbation"]["applied"]:
                    since = (since or 0) + 1
                if since == after or term or trunc:
                    break
            if since:
                out.append({"frames": np.stack(frames), "subgoals": list(info["subgoals"]),
                            "instruction": info["instruction"], "key": f"{task}_{s}"})
        env.close()
    return out


def run(cfg: DictConfig, default_dir: Path) -> Path:
    from embodied.runconfig import save_config

    if not cfg.demos:
        raise EmbodiedError("demos is not set: demo files of held-out seeds, e.g. demos=[heldout_stack.hdf5]")
    out = Path(cfg.out) if cfg.out else default_dir
    save_config(cfg, out)
    demos = [cfg.demos] if isinstance(cfg.demos, str) else list(cfg.demos)
    dropped = dropped_episodes(demos, int(cfg.explain_episodes), int(cfg.seed))
    path = build_simqa(demos, out, seed=int(cfg.seed), n_frames=int(cfg.frames), frame_stride=int(cfg.frame_stride),
                       dropped=dropped)
    kinds: dict[str, int] = {}
    for line in open(path):
        k = json.loads(line)["kind"]
        kinds[k] = kinds.get(k, 0) + 1
    print(json.dumps({"simqa": str(path), "samples": kinds}))
    return path

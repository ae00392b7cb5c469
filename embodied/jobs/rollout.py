"""`embodied rollout`: run a policy for N episodes over parallel envs; JSONL per episode, mp4s, summary."""
from __future__ import annotations

import json
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embodied.envs.rollout import run_episodes
from embodied.errors import EmbodiedError
from embodied.io import write_json
from embodied.policies import make_expert


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def run(cfg: DictConfig, default_dir: Path) -> dict:
    from embodied.cli import save_config

    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    out = Path(cfg.out) if cfg.out else default_dir
    if cfg.policy.type != "expert":
        raise EmbodiedError(f"policy.type: unknown '{cfg.policy.type}'; expected 'expert'")
    cams = env_cfg.get("cameras") or []
    camera = cfg.video_camera or (cams[0] if cams else None)
    if cfg.video and camera is not None and camera not in cams:
        raise EmbodiedError(f"video_camera: '{camera}' is not one of env.cameras {cams}")
    save_config(cfg, out)
    n, seed = int(cfg.n), int(cfg.seed)

    def report(res: dict, _traj) -> None:
        print(f"episode seed={res['seed']} success={res['success']} steps={res['steps']} "
              f"instruction='{res['instruction']}' reached='{res['subgoals'][res['final_subgoal_index']]}'"
              + (f" video={res['video']}" if "video" in res else ""), flush=True)

    make_policy = lambda: make_expert(env_cfg["backend"], env_cfg["task"], noise=float(cfg.policy.noise))  # noqa: E731
    results = run_episodes(env_cfg, make_policy, seeds=range(seed, seed + n), workers=int(cfg.workers),
                           jsonl=out / "episodes.jsonl", video_dir=(out / "videos") if cfg.video else None,
                           video_camera=camera, on_episode=report, total=n, desc=f"rollout {env_cfg['task']}")
    results = [r for r in results if seed <= r["seed"] < seed + n]
    k = sum(r["success"] for r in results)
    lo, hi = wilson(k, len(results))
    summary = {"task": env_cfg["task"], "policy": cfg.policy.type, "episodes": len(results), "successes": k,
               "success_rate": k / max(len(results), 1), "wilson95": [round(lo, 4), round(hi, 4)], "out": str(out)}
    write_json(out / "summary.json", summary)
    print(json.dumps(summary))
    return summary

"""`embodied collect`: scripted-expert demos into a robomimic-layout HDF5 with sub-goal labels."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embodied.datasets import DemoWriter, write_video
from embodied.envs import make_env
from embodied.envs.rollout import run_episodes
from embodied.errors import EmbodiedError
from embodied.policies import make_expert


def env_args(env, env_cfg: dict) -> dict:
    """robomimic's env metadata: type 1 is robosuite, 2 a gym env."""
    import robosuite

    if env_cfg["backend"] == "robosuite":
        return {"env_name": env_cfg["task"], "env_version": robosuite.__version__, "type": 1,
                "env_kwargs": dict(env.unwrapped.env_kwargs)}
    return {"env_name": f"{env_cfg['task']}-v3", "env_version": "metaworld-3.1.1", "type": 2, "env_kwargs": {}}


def _demonstrator(cfg: DictConfig, env_cfg: dict):
    """() -> the expert, or with loop=true the closed loop around it: the simulator's sub-goals as the
    plan, checked every few steps, failures and re-plans as the agent makes them. Such demos show the loop's
    own pace (a finished step held until the check sees it, the re-plan after a perturbation); oracle_lag
    holds finished steps longer, as a slow learned detector does."""
    def expert():
        return make_expert(env_cfg["backend"], env_cfg["task"], noise=float(cfg.noise), kind=str(cfg.expert))

    if not cfg.loop:
        return expert
    from embodied.agent import AgentConfig, EmbodiedAgent
    from embodied.planners import OraclePlanner

    agent_cfg = AgentConfig(**OmegaConf.to_container(cfg.agent, resolve=True))
    agent_cfg.camera = agent_cfg.camera or env_cfg["cameras"][-1]
    return lambda: EmbodiedAgent(OraclePlanner(lag=int(cfg.oracle_lag)), expert(), agent_cfg)


def run(cfg: DictConfig, default_dir: Path) -> Path:
    from embodied.cli import save_config

    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    out = Path(cfg.out) if cfg.out else default_dir / "demos.hdf5"
    if out.suffix not in (".hdf5", ".h5"):
        raise EmbodiedError(f"out: '{out}' should end in .hdf5")
    n = int(cfg.n)
    if n < 1:
        raise EmbodiedError(f"n: expected a positive number of demos, got {n}")
    if cfg.loop and not env_cfg.get("cameras"):
        raise EmbodiedError("loop=true: the loop watches a camera; env.cameras is empty")
    if int(cfg.oracle_lag) < 0:
        raise EmbodiedError(f"oracle_lag: expected a number of checks >= 0, got {cfg.oracle_lag}")
    probe = make_env(env_cfg)  # fails fast on a bad task or camera, before any worker starts
    try:
        make_expert(env_cfg["backend"], env_cfg["task"], kind=str(cfg.expert))  # and on a bad expert
    except EmbodiedError:
        probe.close()
        raise
    cams = env_cfg.get("cameras") or []
    video_cam = cfg.video_camera or (cams[-1] if cams else None)
    if cfg.video and video_cam is not None and video_cam not in cams:
        raise EmbodiedError(f"video_camera: '{video_cam}' is not one of env.cameras {cams}")
    meta = env_args(probe, env_cfg)
    xml = probe.unwrapped.model_xml()
    probe.close()

    video_dir = out.with_name(out.stem + "_videos")
    tmp_videos = out.with_name(f".{out.stem}_videos.tmp{os.getpid()}")
    attempts = int(cfg.max_attempts or 2 * n + 10)
    kept: list[int] = []
    # Workers finish episodes out of order; demos are written in seed order (the first n successes), so the
    # file, and what is trained on it, does not depend on the number of workers.
    pending: dict[int, tuple[dict, dict]] = {}
    finished: set[int] = set()
    next_seed = int(cfg.seed)
    try:
        with DemoWriter(out, meta, env_cfg, next_obs=bool(cfg.next_obs)) as writer:
            def write(res: dict, traj: dict) -> None:
                if not res["success"] or len(kept) >= n:
                    return
                video = ""
                if cfg.video and video_cam is not None:
                    name = f"demo_{len(kept)}"
                    write_video(tmp_videos / f"{name}.mp4", [o["rgb"][video_cam] for o in traj["obs"]])
                    video = f"{video_dir.name}/{name}.mp4"
                attrs = {k: res[k] for k in ("agent_log", "perturbation") if k in res}
                writer.add(traj, res["seed"], model_file=xml, video=video, attrs=attrs)
                kept.append(res["seed"])

            def drain(results: list[dict]) -> bool:
                """Write the finished episodes that continue the seed order; True once n demos are kept."""
                nonlocal next_seed
                finished.update(r["seed"] for r in results[len(finished):])  # called every step: only the new ones
                while next_seed in finished:
                    res, traj = pending.pop(next_seed, (None, None))  # none: its worker crashed
                    if res is not None:
                        write(res, traj)
                    next_seed += 1
                return len(kept) >= n

            def buffer(res: dict, traj: dict) -> None:
                pending[res["seed"]] = (res, traj)

            results = run_episodes(
                env_cfg, _demonstrator(cfg, env_cfg),
                seeds=range(int(cfg.seed), int(cfg.seed) + attempts), workers=int(cfg.workers), record=True,
                on_episode=buffer, stop=drain, total=None, desc=f"collect {env_cfg['task']}")
            drain(results)
            if len(kept) < n:
                raise EmbodiedError(f"collect: only {len(kept)} of {n} demos succeeded in {attempts} attempts "
                                    f"(raise max_attempts or lower noise)")
            writer.close()
        if tmp_videos.exists():
            if video_dir.exists():
                shutil.rmtree(video_dir)
            os.replace(tmp_videos, video_dir)
    finally:
        if tmp_videos.exists():
            shutil.rmtree(tmp_videos)
    save_config(cfg, out.parent if cfg.out is None else out.with_name(out.stem + "_config"))
    tried = len(results)
    print(json.dumps({"out": str(out), "demos": n, "attempts": tried, "expert_success": round(n / max(tried, 1), 3)}))
    return out

"""`embodied collect`: scripted-expert demos into a robomimic-layout HDF5 with sub-goal labels."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import h5py
from omegaconf import DictConfig, OmegaConf

from embodied.datasets import DemoWriter, write_video
from embodied.datasets.hdf5 import write_demo_file
from embodied.envs import make_env
from embodied.envs.runner import run_episodes
from embodied.errors import EmbodiedError
from embodied.io import read_jsonl, remove_stale_temps
from embodied.policies import make_expert
from embodied.runconfig import config_changes, save_config


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
    holds finished steps longer, as a slow learned detector does. With `policy`, a learned policy acts in the
    expert's place: its own motions, labelled by the simulator (the success detector trains on them)."""
    policy = None
    if cfg.get("policy"):
        from embodied.jobs.rollout import check_policy_fits
        from embodied.policies import load_policy

        policy = load_policy(str(cfg.policy))
        check_policy_fits(policy, env_cfg)

    def expert():
        if policy is not None:
            return policy.actor()
        return make_expert(env_cfg["backend"], env_cfg["task"], noise=float(cfg.noise), kind=str(cfg.expert))

    if not cfg.loop:
        return expert
    from embodied.agent import AgentConfig, EmbodiedAgent
    from embodied.planners import OraclePlanner

    agent_cfg = AgentConfig(**OmegaConf.to_container(cfg.agent, resolve=True))
    agent_cfg.camera = agent_cfg.camera or env_cfg["cameras"][-1]
    return lambda: EmbodiedAgent(OraclePlanner(lag=int(cfg.oracle_lag)), expert(), agent_cfg)


# Settings a rerun may change and still continue (or match) a run: how many demos, how, where.
RESUMABLE = ("n", "workers", "max_attempts", "out")


def run(cfg: DictConfig, default_dir: Path) -> Path:
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    out = Path(cfg.out) if cfg.out else default_dir / "demos.hdf5"
    if out.suffix not in (".hdf5", ".h5"):
        raise EmbodiedError(f"out: '{out}' should end in .hdf5")
    n = int(cfg.n)
    if cfg.loop and not env_cfg.get("cameras"):
        raise EmbodiedError("loop=true: the loop watches a camera; env.cameras is empty")
    if cfg.get("policy") and not cfg.loop:
        raise EmbodiedError("policy: a learned policy acts on the loop's sub-goals; it needs loop=true")
    if int(cfg.oracle_lag) < 0:
        raise EmbodiedError(f"oracle_lag: expected a number of checks >= 0, got {cfg.oracle_lag}")
    config_dir = out.parent if cfg.out is None else out.with_name(out.stem + "_config")
    if out.exists():
        return _finished(cfg, out, config_dir, n)
    probe = make_env(env_cfg)  # fails fast on a bad task or camera, before any worker starts
    try:
        make_expert(env_cfg["backend"], env_cfg["task"], kind=str(cfg.expert))  # and on a bad expert
        demonstrator = _demonstrator(cfg, env_cfg)  # and on a policy that does not fit the env
    except EmbodiedError:
        probe.close()
        raise
    cams = env_cfg.get("cameras") or []
    video_cam = cfg.video_camera or (cams[-1] if cams else None)
    if cfg.video and video_cam is not None and video_cam not in cams:
        probe.close()
        raise EmbodiedError(f"video_camera: '{video_cam}' is not one of env.cameras {cams}")
    meta = env_args(probe, env_cfg)
    xml = probe.unwrapped.model_xml()
    probe.close()

    # Each finished demo is kept in a hidden folder beside `out` until all n are there, so a killed or
    # interrupted run loses nothing: the same command continues it (episodes.jsonl lists the seeds tried).
    parts = out.with_name(f".{out.stem}.partial")
    video_dir = out.with_name(out.stem + "_videos")
    for stale in (out, video_dir):
        remove_stale_temps(stale)
    if parts.exists():
        diff = config_changes(cfg, parts, RESUMABLE)
        if diff:
            raise EmbodiedError(f"out={out}: an unfinished run with other settings ({_listed(diff)}) is kept in "
                                f"{parts}; rerun it as it was to finish it, use another out=, or remove {parts}")
    save_config(cfg, parts)
    earlier = len(read_jsonl(parts / "episodes.jsonl", repair=True))  # attempts a killed run finished
    first = int(cfg.seed)
    attempts = int(cfg.max_attempts or 2 * n + 10)
    record_video = bool(cfg.video) and video_cam is not None

    failures = bool(cfg.get("keep_failures"))

    def kept(res: dict) -> bool:
        """A demo: a success, or with keep_failures any episode that ran to its end (not a simulator error)."""
        return bool(res["success"]) or (failures and not res.get("error"))

    def keep(res: dict, traj: dict) -> None:
        if not kept(res):
            return
        if record_video:
            write_video(parts / f"seed{res['seed']}.mp4", [o["rgb"][video_cam] for o in traj["obs"]])
        attrs = {k: res[k] for k in ("agent_log", "perturbation") if k in res}
        write_demo_file(parts / f"seed{res['seed']}.hdf5", traj, res["seed"], env_cfg["backend"],
                        next_obs=bool(cfg.next_obs), model_file=xml, attrs=attrs)

    def chosen(results: list[dict]) -> list[int]:
        """The demos: the kept episodes among the seeds finished in order from the first, up to n of them.
        Workers finish out of order; the file does not depend on their number, nor on where a run was stopped."""
        ok = {r["seed"]: kept(r) for r in results}
        seeds = []
        s = first
        while s in ok and len(seeds) < n:
            if ok[s]:
                seeds.append(s)
            s += 1
        return seeds

    try:
        results = run_episodes(
            env_cfg, demonstrator, seeds=range(first, first + attempts), workers=int(cfg.workers),
            jsonl=parts / "episodes.jsonl", record=True, on_episode=keep, stop=lambda rs: len(chosen(rs)) >= n,
            total=None, desc=f"collect {env_cfg['task']}")
    except KeyboardInterrupt:
        print(f"collect: interrupted; the finished demos are kept in {parts}: run the same command to continue",
              file=sys.stderr)
        raise
    seeds = chosen(results)
    if len(seeds) < n:
        shutil.rmtree(parts)  # every attempt has run: nothing to continue
        raise EmbodiedError(f"collect: only {len(seeds)} of {n} demos succeeded in {attempts} attempts "
                            f"(raise max_attempts or lower noise)")
    missing = [s for s in seeds if not (parts / f"seed{s}.hdf5").exists()]
    if missing:
        raise EmbodiedError(f"{parts}: the demo of seed {missing[0]} is missing; remove {parts} to start over")

    tmp_videos = out.with_name(f".{out.stem}_videos.tmp{os.getpid()}")
    try:
        with DemoWriter(out, meta, env_cfg, next_obs=bool(cfg.next_obs)) as writer:
            for i, s in enumerate(seeds):
                video = ""
                if record_video:
                    tmp_videos.mkdir(exist_ok=True)
                    shutil.copyfile(parts / f"seed{s}.mp4", tmp_videos / f"demo_{i}.mp4")
                    video = f"{video_dir.name}/demo_{i}.mp4"
                writer.add_from(parts / f"seed{s}.hdf5", video=video)
            writer.close()
        if tmp_videos.exists():
            if video_dir.exists():
                shutil.rmtree(video_dir)
            os.replace(tmp_videos, video_dir)
    finally:
        if tmp_videos.exists():
            shutil.rmtree(tmp_videos)
    save_config(cfg, config_dir)
    shutil.rmtree(parts)
    tried = sum(1 for r in results if r["seed"] <= seeds[-1])
    won = sum(1 for r in results if r["seed"] <= seeds[-1] and r["success"])
    print(json.dumps({"out": str(out), "demos": n, "attempts": tried, "expert_success": round(won / max(tried, 1), 3),
                      "failed_demos": n - won if failures else 0, "resumed_attempts": earlier}))
    return out


def _finished(cfg: DictConfig, out: Path, config_dir: Path, n: int) -> Path:
    """A rerun onto a finished file: the same settings and n leave it as it is; anything else is refused (the
    demos there would be lost)."""
    if not (config_dir / "config.yaml").exists():
        raise EmbodiedError(f"out={out} exists and was not made by collect (no {config_dir / 'config.yaml'}); "
                            f"use another out=, or remove it")
    diff = config_changes(cfg, config_dir, RESUMABLE)
    if diff:
        raise EmbodiedError(f"out={out} holds demos made with other settings ({_listed(diff)}); collect does not "
                            f"overwrite demos: use another out=, or remove it")
    with h5py.File(out, "r") as f:
        have = len(f["data"].keys())
    if have != n:
        raise EmbodiedError(f"out={out} holds {have} demos made with these settings, not n={n}; use another out=, "
                            f"or remove it")
    print(json.dumps({"out": str(out), "demos": n, "attempts": None, "already_there": True}))
    return out


def _listed(diff: list[str]) -> str:
    return "; ".join(diff[:3]) + ("; ..." if len(diff) > 3 else "")

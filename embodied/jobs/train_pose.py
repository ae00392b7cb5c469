"""`embodied train-pose demos=STATE_DEMOS out=DIR`: the pose estimator (policies/pose) on simulator-labelled frames.

Two resumable phases in `out`: frames/ (rendered from the demos' stored states, a chunk file per 50 demos) and
training (last/ every `eval_every` steps with the optimizer state; best/ by the held-out error near the hand;
history.jsonl; curve.png). `stop_after=N` ends an invocation after N more steps and `time_limit=MIN` after about
that many minutes, checkpointed: the same command continues it, with the same batches as an uninterrupted run.
`rollouts.episodes=N` adds frames from where a camera-driven policy really goes (perception DAgger, rollout_frames/,
held out and scored apart as rollout_*); `init=` fine-tunes an earlier estimator on them.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from embodied.datasets.pose_frames import load_pose_frames, render_pose_frames, write_frames
from embodied.envs.actor import Actor
from embodied.errors import EmbodiedError
from embodied.io import append_jsonl, read_jsonl, write_json
from embodied.layers import random_shift
from embodied.policies.pose.estimator import PoseEstimator, PoseEstimatorConfig, errors_mm, pose_targets
from embodied.runconfig import check_continuation, save_config

STATE = "train_state.pt"
# A rerun may go further or stop elsewhere; anything else would mix two experiments in one folder.
RESUMABLE = ("steps", "stop_after", "time_limit", "workers", "out", "eval_every")


class _Recorder(Actor):
    """DAgger for perception: a camera-driven policy (`PosePolicy`: the state policy on the estimator's estimate)
    acts with Gaussian action noise, so the episodes go where such a policy goes, mistakes and recoveries
    included; every `every`-th frame is kept with the simulator's labels in `store[seed]`."""

    def __init__(self, policy, cams: list[str], every: int, noise: float, store: dict):
        self.actor, self.cams = policy.actor(), cams
        self.every, self.noise, self.store = every, noise, store
        self.rng, self.t, self.rows = np.random.default_rng(0), 0, None

    def reset(self) -> None:
        self.actor.reset()
        self.t = 0

    def seed(self, seed: int) -> None:  # called after reset with the episode's seed
        self.rng = np.random.default_rng(seed)
        self.rows = self.store.setdefault(seed, {"rgb": {c: [] for c in self.cams}, "proprio": [], "object": [],
                                                 "t": []})

    def act(self, obs: dict, subgoal: str | None = None, info: dict | None = None) -> np.ndarray:
        if self.t % self.every == 0:
            for c in self.cams:
                self.rows["rgb"][c].append(np.asarray(obs["rgb"][c]))
            self.rows["proprio"].append(np.asarray(obs["proprio"], np.float32))
            self.rows["object"].append(np.asarray(obs["object"], np.float32))
            self.rows["t"].append(self.t)
        self.t += 1
        a = self.actor.act(obs, subgoal)
        if self.noise > 0:
            a = np.clip(a + self.rng.normal(0.0, self.noise, a.shape), -1.0, 1.0)
        return a


def rollout_frames(r: DictConfig, folder: Path, cams: list[str], workers: int) -> list[Path]:
    """`r.episodes` episodes (seeds from `r.seed`) of `r.policy` acting on `r.estimator`'s estimate, kept as chunk
    files of `r.chunk` episodes in `folder` (the frames format of datasets/pose_frames.py, plus the episode
    step t); the chunks already there are kept, so a killed run resumes from the last whole chunk."""
    from embodied.envs.runner import run_episodes
    from embodied.policies import load_policy
    from embodied.policies.pose.policy import PosePolicy

    n, chunk = int(r.episodes or 0), int(r.chunk)
    if n <= 0:
        return []
    if not r.estimator:
        raise EmbodiedError("rollouts.estimator is not set: expected the train-pose checkpoint the episodes act on")
    estimator = PoseEstimator.from_pretrained(r.estimator)
    missing = [c for c in cams if c not in estimator.cfg.cameras]
    if missing:
        raise EmbodiedError(f"rollouts.estimator={r.estimator} reads {estimator.cfg.cameras}; cameras has {missing[0]}")
    policy = PosePolicy.from_parts(load_policy(r.policy), estimator)
    env_cfg = {**estimator.cfg.env, "cameras": list(estimator.cfg.cameras), "perturbation": None}
    if r.horizon:
        env_cfg["horizon"] = int(r.horizon)
    if int(r.every) < 1 or chunk < 1:
        raise EmbodiedError(f"rollouts.every={r.every}, rollouts.chunk={r.chunk}: expected at least 1")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    jobs = [(k, range(int(r.seed) + s, int(r.seed) + min(n, s + chunk))) for k, s in enumerate(range(0, n, chunk))]
    for k, seeds in jobs:
        path = folder / f"frames_{k:04d}.hdf5"
        paths.append(path)
        if path.exists():
            continue
        store: dict = {}
        run_episodes(env_cfg, lambda: _Recorder(policy, cams, int(r.every), float(r.noise), store),
                     seeds, workers=workers, desc=f"rollout frames {k + 1}/{len(jobs)}", total=len(seeds))
        frames = {c: [f for s in seeds for f in store[s]["rgb"][c]] for c in cams}
        rows = {key: [v for s in seeds for v in store[s][key]] for key in ("proprio", "object", "t")}
        rows["seed"] = [s for s in seeds for _ in store[s]["t"]]
        write_frames(path, frames, rows, env_cfg)
    return paths


def run(cfg: DictConfig, default_dir: Path) -> dict:
    if not cfg.demos:
        raise EmbodiedError("demos is not set: give a demo file from `embodied collect` (cameras not needed)")
    cams = [cfg.cameras] if isinstance(cfg.cameras, str) else list(cfg.cameras or [])
    if not cams:
        raise EmbodiedError("cameras is empty: expected the views the estimator reads, "
                            "e.g. [agentview,robot0_eye_in_hand]")
    out = Path(cfg.out) if cfg.out else default_dir
    last, best = out / "last", out / "best"
    if (out / "config.yaml").exists():
        check_continuation(cfg, out, RESUMABLE)
    paths = render_pose_frames(cfg.demos, out / "frames", cams, per_demo=int(cfg.per_demo), chunk=int(cfg.chunk),
                               workers=int(cfg.workers), seed=int(cfg.seed))
    roll_paths = rollout_frames(cfg.rollouts, out / "rollout_frames", cams, int(cfg.workers))
    save_config(cfg, out)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    size = int(model_cfg.get("image_size", 84))
    groups = [(paths, int(cfg.valid_demos))]
    if roll_paths:  # a tenth of the episodes held out: the error where the policy really goes
        groups.append((roll_paths, max(1, int(cfg.rollouts.episodes) // 10)))
    rgb, proprio, obj, group, valid = _load(groups, cams, size)
    train_idx = torch.nonzero(~valid).squeeze(1)
    valid_idx = [torch.nonzero(valid & (group == g)).squeeze(1) for g in range(len(groups))]
    if len(train_idx) == 0:
        raise EmbodiedError(f"valid_demos={cfg.valid_demos}: no demos left to train on")
    env = json.loads(_first_env(paths[0]))
    blocks = int(obj.shape[1]) // 7
    target = pose_targets(obj, proprio, blocks)
    info = {"demos": str(cfg.demos), "frames": int(len(train_idx)), "seed": int(cfg.seed),
            "rollout_episodes": int(cfg.rollouts.episodes or 0), "init": cfg.init}

    resume = (last / STATE).exists()
    if resume:
        model = PoseEstimator.from_pretrained(last)
        state = torch.load(last / STATE, weights_only=True)
    elif cfg.init:  # fine-tuning: the given estimator's weights and normalisation, this run's frames
        model = PoseEstimator.from_pretrained(cfg.init)
        if model.cfg.cameras != cams or model.cfg.image_size != size or model.cfg.blocks != blocks:
            raise EmbodiedError(f"init={cfg.init}: made for cameras {model.cfg.cameras} at {model.cfg.image_size} px "
                                f"and {model.cfg.blocks} objects; this run has {cams} at {size} px and {blocks}")
        model.cfg.train_info = info
        state = None
    else:
        torch.manual_seed(int(cfg.seed))
        model = PoseEstimator(PoseEstimatorConfig(
            cameras=cams, blocks=blocks, proprio_dim=int(proprio.shape[1]), env=env, train_info=info,
            **{k: v for k, v in model_cfg.items() if v is not None}))
        model.set_normalization(proprio[train_idx])
        state = None
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg.lr))
    step, best_err = 0, float("inf")
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        step, best_err = int(state["step"]), float(state["best"])
    steps, batch, shift = int(cfg.steps), int(cfg.batch_size), int(cfg.shift)
    every = int(cfg.eval_every)
    t0, losses, first = time.time(), [], step
    model.train()
    bar = tqdm(total=steps, initial=step, desc="train-pose", unit="step", dynamic_ncols=True)
    while step < steps:
        # Each step's batch and shifts come from the step number alone, so a resumed run sees the same batches.
        g = torch.Generator().manual_seed(int(cfg.seed) * 1_000_003 + step)
        idx = train_idx[torch.randint(len(train_idx), (batch,), generator=g)]
        views = {c: random_shift(rgb[c][idx], shift, generator=g) for c in cams}
        for group in opt.param_groups:  # cosine from lr to lr/10
            group["lr"] = float(cfg.lr) * (0.55 + 0.45 * math.cos(math.pi * step / steps))
        loss = model.loss(views, proprio[idx], target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        bar.update()
        over = (cfg.stop_after is not None and step - first >= int(cfg.stop_after)) or (
            cfg.time_limit is not None and time.time() - t0 > 60 * float(cfg.time_limit))
        if step % every == 0 or step == steps or over:
            metrics = {f"{('', 'rollout_')[g]}{k}": v for g, idx_g in enumerate(valid_idx)
                       for k, v in _evaluate(model, rgb, proprio, target, idx_g).items()}
            row = {"step": step, "loss": sum(losses) / len(losses), **metrics, "seconds": round(time.time() - t0, 1)}
            losses = []
            near = _near(metrics)
            if near < best_err:
                best_err = near
                model.save_pretrained(best)
            append_jsonl(out / "history.jsonl", row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", near_mm=f"{near:.1f}")
            model.save_pretrained(last, extra={STATE: lambda p, s=step, b=best_err: torch.save(
                {"optimizer": opt.state_dict(), "step": s, "best": b}, p)})
            model.train()
            if over:
                break
    bar.close()
    history = read_jsonl(out / "history.jsonl")
    _plot(history, out / "curve.png")
    summary = {"steps": step, "of": steps, "finished": step >= steps, "frames_train": int(len(train_idx)),
               "frames_valid": int(valid.sum()), "best_near_mm": best_err, **(history[-1] if history else {}),
               "out": str(out)}
    write_json(out / "summary.json", summary)
    print(json.dumps(summary))
    return summary


def _load(groups: list, cams: list[str], size: int) -> tuple:
    """Each group's frames (paths, held-out seeds) resized to `size` once and joined: rgb {camera: uint8}, proprio,
    object, the group index per frame, and the held-out mask (each group's highest seeds)."""
    rgb: dict[str, list] = {c: [] for c in cams}
    proprio, obj, group, valid = [], [], [], []
    for g, (paths, held) in enumerate(groups):
        d = load_pose_frames(paths, cams, size)
        for c in cams:
            rgb[c].append(d["rgb"].pop(c))  # the full size is dropped group by group
        seeds = d["seed"].tolist()
        hold = set(sorted(set(seeds))[-held:]) if held > 0 else set()
        valid.append(torch.tensor([s in hold for s in seeds], dtype=torch.bool))
        group.append(torch.full((len(seeds),), g))
        proprio.append(d["proprio"])
        obj.append(d["object"])
    return ({c: torch.cat(v) for c, v in rgb.items()}, torch.cat(proprio), torch.cat(obj), torch.cat(group),
            torch.cat(valid))


def _first_env(path: Path) -> str:
    import h5py

    with h5py.File(path, "r") as h:
        return str(h.attrs["env"])


def _near(metrics: dict) -> float:
    vals = [v for k, v in metrics.items() if k.endswith("_near_mm") and v == v]
    return sum(vals) / len(vals) if vals else float("inf")


@torch.no_grad()
def _evaluate(model: PoseEstimator, rgb: dict, proprio: torch.Tensor, target: torch.Tensor,
              idx: torch.Tensor) -> dict:
    if len(idx) == 0:
        return {}
    model.eval()
    preds = [model({c: v[idx[i:i + 256]] for c, v in rgb.items()}, proprio[idx[i:i + 256]])
             for i in range(0, len(idx), 256)]
    return {k: round(v, 2) for k, v in errors_mm(torch.cat(preds), target[idx]).items()}


def _plot(history: list[dict], path: Path) -> None:
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embodied.io import atomic_path

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    xs = [h["step"] for h in history]
    ax[0].plot(xs, [h["loss"] for h in history])
    ax[0].set(xlabel="step", ylabel="training loss", yscale="log")
    for k in sorted(k for k in history[-1] if k.endswith("_mm")):
        ax[1].plot(xs, [h.get(k) for h in history], label=k)
    ax[1].axhline(5.0, color="grey", ls="--", lw=0.8)
    ax[1].set(xlabel="step", ylabel="held-out position error (mm)", yscale="log")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)

"""`embodied train-pose demos=STATE_DEMOS out=DIR`: the pose estimator (policies/pose) on simulator-labelled frames.

Two resumable phases in `out`: frames/ (rendered from the demos' stored states, a chunk file per 50 demos) and
training (last/ every `eval_every` steps with the optimizer state; best/ by the held-out error near the hand;
history.jsonl; curve.png). `stop_after=N` ends an invocation after N more steps and `time_limit=MIN` after about
that many minutes, checkpointed: the same command continues it, with the same batches as an uninterrupted run.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from embodied.cli import check_continuation, save_config
from embodied.datasets.pose_frames import load_pose_frames, render_pose_frames
from embodied.errors import EmbodiedError
from embodied.io import append_jsonl, read_jsonl, write_json
from embodied.policies.base import random_shift, resize
from embodied.policies.pose.estimator import PoseEstimator, PoseEstimatorConfig, errors_mm, pose_targets

STATE = "train_state.pt"
# A rerun may go further or stop elsewhere; anything else would mix two experiments in one folder.
RESUMABLE = ("steps", "stop_after", "time_limit", "workers", "out", "eval_every")


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
    save_config(cfg, out)
    data = load_pose_frames(paths, cams)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    size = int(model_cfg.get("image_size", 84))
    rgb = {c: _resized(data["rgb"].pop(c), size) for c in cams}  # once, not at every step; the full size is dropped
    seeds = data["seed"]
    held = set(sorted(set(seeds.tolist()))[-int(cfg.valid_demos):]) if int(cfg.valid_demos) > 0 else set()
    valid = torch.tensor([int(s) in held for s in seeds.tolist()])
    train_idx, valid_idx = torch.nonzero(~valid).squeeze(1), torch.nonzero(valid).squeeze(1)
    if len(train_idx) == 0:
        raise EmbodiedError(f"valid_demos={cfg.valid_demos}: no demos left to train on")
    env = json.loads(_first_env(paths[0]))
    blocks = int(data["object"].shape[1]) // 7
    target = pose_targets(data["object"], data["proprio"], blocks)

    resume = (last / STATE).exists()
    if resume:
        model = PoseEstimator.from_pretrained(last)
        state = torch.load(last / STATE, weights_only=True)
    else:
        torch.manual_seed(int(cfg.seed))
        model = PoseEstimator(PoseEstimatorConfig(
            cameras=cams, blocks=blocks, proprio_dim=int(data["proprio"].shape[1]), env=env,
            train_info={"demos": str(cfg.demos), "frames": int(len(train_idx)), "seed": int(cfg.seed)},
            **{k: v for k, v in model_cfg.items() if v is not None}))
        model.set_normalization(data["proprio"][train_idx])
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
        loss = model.loss(views, data["proprio"][idx], target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        bar.update()
        over = (cfg.stop_after is not None and step - first >= int(cfg.stop_after)) or (
            cfg.time_limit is not None and time.time() - t0 > 60 * float(cfg.time_limit))
        if step % every == 0 or step == steps or over:
            metrics = _evaluate(model, rgb, data["proprio"], target, valid_idx)
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
               "frames_valid": int(len(valid_idx)), "best_near_mm": best_err, **(history[-1] if history else {}),
               "out": str(out)}
    write_json(out / "summary.json", summary)
    print(json.dumps(summary))
    return summary


def _first_env(path: Path) -> str:
    import h5py

    with h5py.File(path, "r") as h:
        return str(h.attrs["env"])


def _resized(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, size, size, 3) uint8, in blocks (the antialiased resize the model does too)."""
    if frames.shape[1] == size and frames.shape[2] == size:
        return frames
    out = [(resize(frames[i:i + 512], size) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
           for i in range(0, len(frames), 512)]
    return torch.cat(out)


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

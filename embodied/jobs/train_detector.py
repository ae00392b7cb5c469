"""`embodied train-detector demos=[A.hdf5,B.hdf5] out=DIR [planner.path=CKPT]`: the planner's success detector
(planners/success_detector.py) on frames the simulator labels.

Resumable phases in `out`, as train-pose's: frames/<demo file>/ (rendered from each demo file's stored states,
a chunk file per 50 demos), then training (last/ with the optimizer state every `eval_every` steps, best/ by the
held-out loss, history.jsonl, curve.png). `time_limit=MIN` or `stop_after=N` end an invocation checkpointed; the
same command continues it. Demos whose seed ends in 0 are held out: they score each checkpoint and set each
kind's threshold. `init=DIR` fine-tunes a trained detector (a detector's or a planner's) instead of a new one.
With `planner.path`, the finished detector is written into that planner checkpoint (success_detector/), where the
loop's planner reads it.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from embodied.datasets.pose_frames import load_pose_frames, render_pose_frames
from embodied.errors import EmbodiedError
from embodied.io import append_jsonl, read_jsonl, write_json
from embodied.layers import random_shift
from embodied.planners.done_head import detection_scores, kind
from embodied.planners.success_detector import DIR, SuccessDetector, SuccessDetectorConfig, done_labels
from embodied.runconfig import check_continuation, save_config

STATE = "train_state.pt"
RESUMABLE = ("steps", "stop_after", "time_limit", "workers", "out", "eval_every", "planner")
# frame_size is not among them: frames already rendered are kept, so a new size would mix two in one run.


def run(cfg: DictConfig, default_dir: Path) -> dict:
    demos = [cfg.demos] if isinstance(cfg.demos, str) else list(cfg.demos or [])
    if not demos:
        raise EmbodiedError("demos is empty: give demo files from `embodied collect` (cameras not needed)")
    for d in demos:
        if not Path(d).is_file():
            raise EmbodiedError(f"demos: {d} is not a file")
    if len({Path(d).stem for d in demos}) < len(demos):
        raise EmbodiedError(f"demos: two files share a name ({demos}); their frames would share a folder")
    cams = [cfg.cameras] if isinstance(cfg.cameras, str) else list(cfg.cameras or [])
    if not cams:
        raise EmbodiedError(
            "cameras is empty: expected the views the detector reads, e.g. [agentview,robot0_eye_in_hand]"
        )
    if not 0 <= float(cfg.max_fpr) < 1:
        raise EmbodiedError(f"max_fpr: expected a share in [0, 1), got {cfg.max_fpr}")
    if cfg.frame_size is not None and int(cfg.frame_size) < 16:
        raise EmbodiedError(f"frame_size: expected a frame side of 16 pixels or more, got {cfg.frame_size}")
    if cfg.planner.path and not (Path(cfg.planner.path) / "config.json").exists():
        raise EmbodiedError(f"planner.path={cfg.planner.path}: not a planner checkpoint (no config.json)")
    start = _init(str(cfg.init), cams) if cfg.get("init") else None  # a bad init fails before anything is written
    out = Path(cfg.out) if cfg.out else default_dir
    last, best = out / "last", out / "best"
    if (out / "config.yaml").exists():
        check_continuation(cfg, out, RESUMABLE)
    groups = [render_pose_frames(d, out / "frames" / Path(d).stem, cams, per_demo=int(cfg.per_demo),
                                 workers=int(cfg.workers), seed=int(cfg.seed), size=cfg.frame_size) for d in demos]
    save_config(cfg, out)
    size = int(cfg.model.image_size)
    rgb, y, mask, held, kinds = _load(groups, cams, size)
    train_idx, valid_idx = torch.nonzero(~held).squeeze(1), torch.nonzero(held).squeeze(1)
    if len(train_idx) == 0 or len(valid_idx) == 0:
        raise EmbodiedError(f"demos: {len(train_idx)} frames to train on and {len(valid_idx)} held out; need both "
                            "(demos whose seed ends in 0 are held out)")
    info = {"demos": demos, "frames": int(len(train_idx)), "held_out_frames": int(len(valid_idx)),
            "seed": int(cfg.seed), **({"init": str(cfg.init)} if cfg.get("init") else {})}
    model_cfg = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if v is not None}
    if (last / STATE).exists():
        model = SuccessDetector.from_pretrained(last).train()
        state = torch.load(last / STATE, weights_only=True)
    elif start is not None:
        model, state = start, None
    else:
        torch.manual_seed(int(cfg.seed))
        model = SuccessDetector(SuccessDetectorConfig(cameras=cams, kinds=kinds, thresholds=[0.0] * len(kinds),
                                                      train_info=info, **model_cfg))
        state = None
    if model.cfg.kinds != kinds:
        raise EmbodiedError(f"{last if state is not None else 'init=' + str(cfg.init)}: trained on kinds "
                            f"{model.cfg.kinds}, these demos have {kinds}")
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg.lr))
    step, best_loss = 0, float("inf")
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        step, best_loss = int(state["step"]), float(state["best"])
    steps, batch, shift, every = int(cfg.steps), int(cfg.batch_size), int(cfg.shift), int(cfg.eval_every)
    t0, losses, first = time.time(), [], step
    bar = tqdm(total=steps, initial=step, desc="train-detector", unit="step", dynamic_ncols=True)
    while step < steps:
        # The batch and shifts come from the step number alone: a resumed run sees the same batches.
        g = torch.Generator().manual_seed(int(cfg.seed) * 1_000_003 + step)
        idx = train_idx[torch.randint(len(train_idx), (batch,), generator=g)]
        for group in opt.param_groups:  # cosine from lr to lr/10
            group["lr"] = float(cfg.lr) * (0.55 + 0.45 * math.cos(math.pi * step / steps))
        logits = model({c: random_shift(rgb[c][idx], shift, generator=g) for c in cams})
        loss = _loss(logits, y[idx], mask[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        bar.update()
        over = (cfg.stop_after is not None and step - first >= int(cfg.stop_after)) or (
            cfg.time_limit is not None and time.time() - t0 > 60 * float(cfg.time_limit))
        if step % every == 0 or step == steps or over:
            logit = _predict(model, rgb, valid_idx)
            scores = _scores(logit, y[valid_idx], mask[valid_idx], kinds, np.zeros(len(kinds)))
            row = {"step": step, "loss": sum(losses) / len(losses),
                   "held_out_loss": round(_loss(logit, y[valid_idx], mask[valid_idx]).item(), 4),
                   "held_out_f1": {k: s["f1"] for k, s in scores.items()}, "seconds": round(time.time() - t0, 1)}
            losses = []
            if row["held_out_loss"] < best_loss:
                best_loss = row["held_out_loss"]
                model.save_pretrained(best)
            append_jsonl(out / "history.jsonl", row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", held=f"{row['held_out_loss']:.3f}")
            model.save_pretrained(last)
            torch.save({"optimizer": opt.state_dict(), "step": step, "best": best_loss}, last / STATE)
            model.train()
            if over:
                break
    bar.close()
    _plot(read_jsonl(out / "history.jsonl"), out / "curve.png")
    summary = {"steps": step, "of": steps, "finished": step >= steps, "kinds": kinds, **info, "out": str(out)}
    if step >= steps:  # thresholds on the held-out demos, then the detector is ready for a planner
        model = SuccessDetector.from_pretrained(best)
        logit = _predict(model, rgb, valid_idx)
        model.cfg.thresholds = _thresholds(logit, y[valid_idx], mask[valid_idx], float(cfg.max_fpr))
        scores = _scores(logit, y[valid_idx], mask[valid_idx], kinds, np.array(model.cfg.thresholds))
        model.cfg.train_info = {**info, "steps": step, "held_out": scores, "max_fpr": float(cfg.max_fpr)}
        model.save_pretrained(best)
        summary["held_out"] = scores
        if cfg.planner.path:
            model.save_pretrained(Path(cfg.planner.path) / DIR)
            summary["planner"] = str(cfg.planner.path)
        for k, s in scores.items():
            print(f"[train-detector] '{k}': held-out F1 {s['f1']:.3f} (TPR {s['tpr']:.3f}, FPR {s['fpr']:.3f}, "
                  f"{s['yes']} done, {s['no']} not), threshold {s['threshold']:+.2f}", flush=True)
    write_json(out / "summary.json", summary)
    return summary


def _init(path: str, cams: list[str]) -> SuccessDetector:
    """A detector to fine-tune: a detector directory or a planner checkpoint holding one (`tiny/planner` is the
    shipped one). Its architecture and kinds are kept (the `model` block is not read); it must read `cameras`."""
    from embodied.assets import resolve

    p = resolve(path)
    if (p / DIR / "config.json").exists():
        p = p / DIR
    if not (p / "config.json").exists():
        raise EmbodiedError(f"init={path}: neither a success detector nor a planner checkpoint holding one")
    model = SuccessDetector.from_pretrained(p).train()
    if model.cfg.cameras != cams:
        raise EmbodiedError(f"init={path}: the detector reads cameras {model.cfg.cameras}; cameras is {cams}")
    return model


def _task_kinds(path: Path, cache: dict) -> list[str]:
    """The sub-goal kinds of the task a frames file was rendered in, in plan order (from one env reset)."""
    import h5py

    from embodied.envs import make_env

    with h5py.File(path, "r") as h:
        env_cfg = json.loads(str(h.attrs["env"]))
    key = json.dumps({**env_cfg, "cameras": []}, sort_keys=True)
    if key not in cache:
        env = make_env({**env_cfg, "cameras": []})
        try:
            cache[key] = list(env.reset(seed=0)[1]["subgoals"])
        finally:
            env.close()
    return cache[key]


def _load(groups: list[list[Path]], cams: list[str], size: int) -> tuple:
    """All frames resized once: rgb {camera: uint8 (N, S, S, 3)}, targets and masks (N, kinds), the held-out
    mask (seed ending in 0), and the kinds in first-seen order."""
    cache: dict = {}
    files = [p for paths in groups for p in paths]
    task_subgoals = [_task_kinds(p, cache) for p in files]
    kinds: list[str] = []
    for subs in task_subgoals:
        kinds += [kind(s) for s in subs if kind(s) not in kinds]
    rgb: dict[str, list] = {c: [] for c in cams}
    ys, ms, held = [], [], []
    for p, subs in zip(tqdm(files, desc="load frames", leave=False), task_subgoals):
        d = load_pose_frames([p], cams, size, keys=("seed", "subgoal_index", "success"))
        for c in cams:
            rgb[c].append(d["rgb"][c])
        for index, success in zip(d["subgoal_index"].tolist(), d["success"].tolist()):
            y, m = done_labels(subs, int(index), None if success < 0 else bool(success), kinds)
            ys.append(y)
            ms.append(m)
        held.append(d["seed"] % 10 == 0)
    return ({c: torch.cat(v) for c, v in rgb.items()}, torch.tensor(ys), torch.tensor(ms), torch.cat(held), kinds)


def _loss(logits: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * m).sum() / m.sum().clamp(min=1)


@torch.no_grad()
def _predict(model: SuccessDetector, rgb: dict, idx: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model({c: v[idx[i:i + 256]] for c, v in rgb.items()}) for i in range(0, len(idx), 256)])


def _thresholds(logit: torch.Tensor, y: torch.Tensor, m: torch.Tensor, max_fpr: float) -> list[float]:
    """Per kind, the threshold of best held-out F1 among those calling at most max_fpr of the unfinished
    frames done (0 where a kind has no held-out frames of both answers; above every score where none does)."""
    out = []
    for j in range(logit.shape[1]):
        keep = m[:, j] > 0
        s, lab = logit[keep, j].numpy(), y[keep, j].numpy() > 0.5
        if lab.all() or not lab.any():
            out.append(0.0)
            continue
        best, best_f1 = float(s.max()) + 1.0, -1.0
        for t in np.unique(np.round(s, 2)):
            pred = s > t
            fp, tp, fn = (pred & ~lab).sum(), (pred & lab).sum(), (~pred & lab).sum()
            if fp > max_fpr * (~lab).sum():
                continue
            f1 = 2 * tp / max(1, 2 * tp + fp + fn)
            if f1 > best_f1:
                best, best_f1 = float(t), f1
        out.append(best)
    return out


def _scores(logit: torch.Tensor, y: torch.Tensor, m: torch.Tensor, kinds: list[str], thr: np.ndarray) -> dict:
    out = {}
    for j, k in enumerate(kinds):
        keep = m[:, j] > 0
        out[k] = {**detection_scores(logit[keep, j].numpy() > thr[j], y[keep, j].numpy() > 0.5),
                  "threshold": round(float(thr[j]), 3)}
    return out


def _plot(history: list[dict], path: Path) -> None:
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embodied.io import atomic_path

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    xs = [h["step"] for h in history]
    ax[0].plot(xs, [h["loss"] for h in history], label="training")
    ax[0].plot(xs, [h["held_out_loss"] for h in history], label="held out")
    ax[0].set(xlabel="step", ylabel="BCE", yscale="log")
    ax[0].legend(fontsize=7)
    for k in history[-1]["held_out_f1"]:
        ax[1].plot(xs, [h["held_out_f1"].get(k) for h in history], label=k)
    ax[1].set(xlabel="step", ylabel="held-out F1 (threshold 0)", ylim=(0, 1.02))
    ax[1].legend(fontsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)

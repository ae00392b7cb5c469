"""Our camera Stack policy against robomimic's image BC-RNN, trained by robomimic's own code on the same demos,
scored on the same held-out seeds in one run.

    bash bench/robomimic/setup.sh ROBOMIMIC_SRC              # once: robomimic in .venv-robomimic, apart from ours
    embodied rerender demos=runs/pose/stack_state1500.hdf5 out=runs/robomimic/stack300_84.hdf5 n_demos=300 \
        cameras=[agentview,robot0_eye_in_hand] size=84      # robomimic's inputs: both cameras at 84 x 84
    python bench/vs_robomimic.py train --demos runs/robomimic/stack300_84.hdf5 --out runs/robomimic/bc_rnn \
        --minutes 40                                          # one chunk; the same command continues the run
    python bench/vs_robomimic.py eval --robomimic runs/robomimic/bc_rnn --ours tiny/policies/stack_pose \
        --episodes 50 --seed 300000 --workers 2

robomimic's side (bench/robomimic/run.py) runs in its own venv and never imports this project; at evaluation it
serves actions over a pipe to a policy object here, so both contenders act in this project's env (random cube
colours, the same seeds, horizon and success test). Frames: the demo file stores them upright, as robomimic's
robosuite wrapper returns them, and this env renders them upright; `eval` checks the env's first frame of a demo's
seed against the file's before it starts (a flipped or shifted view fails loudly instead of scoring 0%).
Prints one JSON line per contender (success, Wilson 95%, training seconds and gradient steps where known, frames
seen in training, env steps/s in the rollouts) and a markdown table.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from embodied.envs.actor import Actor

RUN = Path(__file__).resolve().parent / "robomimic" / "run.py"


def _protocol():
    """run.py's pipe protocol (one definition for both ends; run.py imports neither robomimic nor this project at
    import time)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("robomimic_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_Pipe = _protocol()._Pipe


class RobomimicPolicy(Actor):
    """A robomimic checkpoint acting in our env: the obs become robomimic's keys, the action comes back over a pipe
    from `run.py serve` in robomimic's venv (its RolloutPolicy keeps the LSTM state between calls)."""

    def __init__(self, python: str, ckpt: Path):
        self.proc = subprocess.Popen([python, str(RUN), "serve", "--ckpt", str(ckpt)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.asks, self.answers = _Pipe(self.proc.stdin), _Pipe(self.proc.stdout)

    def _send(self, *arrays: np.ndarray) -> None:
        for a in arrays:
            np.lib.format.write_array(self.asks, np.asarray(a), allow_pickle=False)
        self.asks.flush()

    def reset(self) -> None:
        self._send(np.array(0))

    def act(self, obs: dict, subgoal: str | None = None, info: dict | None = None) -> np.ndarray:
        p = np.asarray(obs["proprio"], np.float64)
        self._send(np.array(1), p[:3], p[3:7], p[7:9], obs["rgb"]["agentview"], obs["rgb"]["robot0_eye_in_hand"])
        return np.lib.format.read_array(self.answers, allow_pickle=False)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _progress(out: Path) -> dict:
    p = out / "progress.json"
    return json.loads(p.read_text()) if p.exists() else {"epoch": 0, "steps": 0, "train_seconds": 0.0}


def train(args: argparse.Namespace) -> None:
    python = Path(args.venv) / "bin" / "python"
    if not python.exists():
        sys.exit(f"vs_robomimic: {python} not found: run bash bench/robomimic/setup.sh ROBOMIMIC_SRC first")
    if not Path(args.demos).exists():
        sys.exit(f"vs_robomimic: --demos {args.demos} not found (make it with `embodied rerender ... size=84`)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    before = _progress(out)
    cmd = [str(python), str(RUN), "train", "--dataset", str(Path(args.demos).resolve()), "--out", str(out.resolve()),
           "--seconds", str(args.minutes * 60), "--threads", str(args.threads), "--epoch-steps", str(args.epoch_steps)]
    with open(out / "train.log", "a") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if rc != 0:
        sys.exit(f"vs_robomimic: robomimic's trainer exited {rc}; see {out / 'train.log'}")
    after = _progress(out)
    print(json.dumps({"chunk_steps": after["steps"] - before["steps"], **after}))


def _check_orientation(demos: Path, env_cfg: dict) -> None:
    """The env's first frame of the first demo's seed against the file's: the same scene, so nearly the same
    pixels; a flip or another camera would differ by far more."""
    import h5py

    from embodied.envs import make_env

    with h5py.File(demos, "r") as f:
        g = f["data/demo_0"]
        seed, stored = int(g.attrs["seed"]), {c: g[f"obs/{c}_image"][0] for c in ("agentview", "robot0_eye_in_hand")}
    env = make_env(env_cfg)
    obs, _ = env.reset(seed=seed)
    env.close()
    for cam, frame in stored.items():
        err = np.abs(obs["rgb"][cam].astype(float) - frame).mean()
        flipped = np.abs(obs["rgb"][cam][::-1].astype(float) - frame).mean()
        if not err < min(10.0, flipped / 2):
            sys.exit(f"vs_robomimic: {cam}: the env's frame differs from {demos}'s by {err:.1f} / 255 on average "
                     f"({flipped:.1f} flipped): the policy would see other pixels than it was trained on")


def evaluate(args: argparse.Namespace) -> None:
    import torch

    from embodied.envs.runner import run_episodes
    from embodied.metrics import wilson
    from embodied.policies import load_policy

    torch.set_num_threads(1 if args.workers > 1 else torch.get_num_threads())
    out = Path(args.robomimic)
    ckpts = sorted(out.glob("bc_rnn_image/*/last.pth"))
    if not ckpts:
        sys.exit(f"vs_robomimic: no robomimic checkpoint under {out} (run `train` first)")
    rm_cfg = json.loads((out / "robomimic_config.json").read_text())
    prog = _progress(out)
    ours = load_policy(args.ours)
    base = {**ours.cfg.env, "perturbation": None, "horizon": args.horizon}
    rm_env = {**base, "cameras": ["agentview", "robot0_eye_in_hand"], "height": 84, "width": 84}
    _check_orientation(Path(rm_cfg["train"]["data"]), rm_env)
    python = str(Path(args.venv) / "bin" / "python")
    batch, seq = rm_cfg["train"]["batch_size"], rm_cfg["train"]["seq_length"]
    rows = {
        "ours": (base, lambda: ours.actor(), {"train_seconds": args.ours_train_seconds, "steps": None,
                                               "frames_seen": None}),
        "robomimic_bc_rnn_image": (rm_env, lambda: RobomimicPolicy(python, ckpts[-1]),
                                   {"train_seconds": prog["train_seconds"], "steps": prog["steps"],
                                    "frames_seen": prog["steps"] * batch * seq}),  # one step's cameras = one frame
    }
    seeds = range(args.seed, args.seed + args.episodes)
    table = []
    for name, (env_cfg, make, train_info) in rows.items():
        made: list = []

        def tracked():
            made.append(make())
            return made[-1]

        t0 = time.time()
        res = run_episodes(env_cfg, tracked, seeds, workers=args.workers, desc=name)
        wall = time.time() - t0
        for p in made:
            getattr(p, "close", lambda: None)()
        k = sum(r["success"] for r in res)
        lo, hi = wilson(k, len(res))
        row = {"policy": name, "success": k / len(res), "k": k, "n": len(res), "wilson95": [round(lo, 2), round(hi, 2)],
               **train_info, "env_steps_per_s": round(sum(r["steps"] for r in res) / wall, 1),
               "frame_size": env_cfg["height"], "seeds": [args.seed, args.seed + args.episodes - 1]}
        print(json.dumps(row), flush=True)
        table.append(row)
    print("| policy | success | Wilson 95% | training s | gradient steps | frames seen | env steps/s |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['policy']} | {r['k']}/{r['n']} | {r['wilson95'][0]:.2f}-{r['wilson95'][1]:.2f} | "
              f"{r['train_seconds']} | {r['steps']} | {r['frames_seen']} | {r['env_steps_per_s']} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--venv", default=".venv-robomimic", help="robomimic's venv (bench/robomimic/setup.sh)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="one chunk of robomimic's training; the same command continues it")
    t.add_argument("--demos", required=True, help="an image demo file (embodied rerender ... size=84)")
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float, default=40)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--epoch-steps", type=int, default=20, help="gradient steps per robomimic epoch (new runs)")
    e = sub.add_parser("eval", help="both policies on the same held-out seeds")
    e.add_argument("--robomimic", required=True, help="the --out of train")
    e.add_argument("--ours", default="tiny/policies/stack_pose")
    e.add_argument("--ours-train-seconds", type=float, default=None,
                   help="our policy's training time, all stages (docs/BENCHMARKS.md), for the table")
    e.add_argument("--episodes", type=int, default=50)
    e.add_argument("--seed", type=int, default=300000, help="first seed (held out: no training set uses them)")
    e.add_argument("--workers", type=int, default=2)
    e.add_argument("--horizon", type=int, default=250)
    args = ap.parse_args()
    train(args) if args.cmd == "train" else evaluate(args)


if __name__ == "__main__":
    main()

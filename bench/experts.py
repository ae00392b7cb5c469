"""Scripted expert success over 50 seeds per task (target >= 95% each).

    python bench/experts.py [--seeds 50] [--noise 0.0] [--tasks Lift Stack ...]
"""
from __future__ import annotations

import argparse
import time

from embodied.envs import TASKS, make_env
from embodied.envs.runner import run_episode
from embodied.policies import make_expert


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--tasks", nargs="*", default=None)
    args = ap.parse_args()
    print(f"| backend | task | success ({args.seeds} seeds, noise {args.noise}) | mean steps | s/episode |")
    print("|---|---|---|---|---|")
    for backend, tasks in TASKS.items():
        for task in tasks:
            if args.tasks and task not in args.tasks:
                continue
            env = make_env({"backend": backend, "task": task, "cameras": [], "horizon": 300})
            wins, steps, t0 = 0, 0, time.perf_counter()
            for seed in range(args.seeds):
                info = run_episode(env, make_expert(backend, task, noise=args.noise, seed=seed), seed)
                wins += info["success"]
                steps += info["t"]
            dt = (time.perf_counter() - t0) / args.seeds
            flag = "" if wins / args.seeds >= 0.95 else " (below 95%)"
            print(f"| {backend} | {task} | {wins}/{args.seeds} = {100 * wins / args.seeds:.0f}%{flag} | "
                  f"{steps / args.seeds:.0f} | {dt:.2f} |", flush=True)
            env.close()


if __name__ == "__main__":
    main()

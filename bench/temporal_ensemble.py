"""Temporal ensembling of action chunks (ACT) against running each chunk open loop: the same trained
policies, the same fresh seeds, in one run. Each policy is evaluated on the env it was trained for
(its config's `env`), with the simulator's own sub-goals, as `embodied train-policy` evaluates.

    python bench/temporal_ensemble.py runs/mw_p8_50/*/gripperPOV/egpt10/best [--episodes 50] [--seed 200000]
        [--m 0.0 0.5]

Prints one JSON line per policy and mode, then a markdown table (success per policy, mean per mode).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("policies", nargs="+", help="policy checkpoint directories")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=200000, help="first seed; the protocol's final seeds by default")
    ap.add_argument("--m", type=float, nargs="+", default=[0.0, 0.5], help="ensemble weights exp(-m*i) to try")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    from embodied.envs.runner import run_episodes
    from embodied.metrics import wilson
    from embodied.policies import load_policy

    modes: list[float | None] = [None, *args.m]
    seeds = range(args.seed, args.seed + args.episodes)
    table: dict[str, dict] = {}
    for path in args.policies:
        policy = load_policy(path)
        name = "/".join(Path(path).resolve().parts[-4:-1])  # task/camera/run of the protocol's layout
        for m in modes:
            policy.cfg.ensemble = m
            t0 = time.perf_counter()
            res = run_episodes(dict(policy.cfg.env), policy.actor, seeds, workers=args.workers,
                               total=len(seeds), desc=f"{name} m={m}")
            k = sum(r["success"] for r in res)
            row = {"policy": name, "ensemble": m, "success": k / len(res), "episodes": len(res),
                   "wilson95": list(wilson(k, len(res))), "seconds": round(time.perf_counter() - t0, 1)}
            print(json.dumps(row), flush=True)
            table.setdefault(name, {})[m] = row["success"]

    label = {m: "open loop" if m is None else f"ensemble m={m:g}" for m in modes}
    print("\n| policy | " + " | ".join(label[m] for m in modes) + " |")
    print("|---|" + "---|" * len(modes))
    for name, cells in table.items():
        print(f"| {name} | " + " | ".join(f"{100 * cells[m]:.0f}%" for m in modes) + " |")
    means = [sum(c[m] for c in table.values()) / len(table) for m in modes]
    print("| **mean** | " + " | ".join(f"**{100 * x:.0f}%**" for x in means) + " |")


if __name__ == "__main__":
    main()

"""A low-dim policy driven by the cameras: its obs/object replaced by the pose estimator's estimate, against the
same policy given the simulator's object state, on the same held-out seeds in one run.

    python bench/pose_in_loop.py --estimator runs/pose/est/best --policy tiny/policies/stack \
        --episodes 20 --seed 300000 --workers 2

The estimator reads both cameras (the env renders them; the policy itself never sees the simulator's object
state in the "estimated" row). Prints one JSON line per row (success, Wilson 95%, the estimate's mean position
error per object during the episodes, all frames and within 10 cm of the hand) and a markdown table.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


class EstimatedState:
    """The policy's actor with obs/object taken from the estimator; the true object state only scores it."""

    def __init__(self, estimator, policy, record: list):
        self.estimator, self.actor, self.record = estimator, policy.actor(), record

    def reset(self) -> None:
        self.actor.reset()

    def act(self, obs: dict, subgoal: str | None = None) -> np.ndarray:
        est = self.estimator.estimate(obs)
        true, hand = np.asarray(obs["object"]), np.asarray(obs["proprio"][:3])
        for b in range(self.estimator.cfg.blocks):
            p, t = est[7 * b: 7 * b + 3], true[7 * b: 7 * b + 3]
            self.record.append((b, float(np.linalg.norm(p - t)) * 1000, float(np.linalg.norm(t - hand)) < 0.10))
        return self.actor.act({**obs, "object": est.astype(np.float32)}, subgoal)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--estimator", required=True, help="a train-pose checkpoint (best/ or last/)")
    ap.add_argument("--policy", default="tiny/policies/stack", help="a low-dim (state) policy")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=300000, help="first seed (held out: no training set uses them)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--horizon", type=int, default=250)
    args = ap.parse_args()

    import torch

    from embodied.envs.rollout import run_episodes
    from embodied.jobs.rollout import wilson
    from embodied.policies import load_policy
    from embodied.policies.pose import PoseEstimator

    torch.set_num_threads(1 if args.workers > 1 else torch.get_num_threads())
    estimator = PoseEstimator.from_pretrained(args.estimator)
    policy = load_policy(args.policy)
    env_cfg = {**dict(policy.cfg.env), "cameras": list(estimator.cfg.cameras), "horizon": args.horizon,
               "height": estimator.cfg.env.get("height", 128), "width": estimator.cfg.env.get("width", 128)}
    seeds = range(args.seed, args.seed + args.episodes)
    rows = []
    for name in ("simulator state", "estimated from the cameras"):
        record: list = []
        make = policy.actor if name == "simulator state" else (lambda: EstimatedState(estimator, policy, record))
        t0 = time.perf_counter()
        res = run_episodes(env_cfg, make, seeds, workers=args.workers, desc=name)
        k = sum(r["success"] for r in res)
        lo, hi = wilson(k, len(res))
        row = {"object state": name, "success": f"{k}/{len(res)}", "rate": k / len(res),
               "wilson95": [round(lo, 3), round(hi, 3)], "seconds": round(time.perf_counter() - t0, 1)}
        for b in range(estimator.cfg.blocks):
            errs = [e for bb, e, _ in record if bb == b]
            near = [e for bb, e, n in record if bb == b and n]
            if errs:
                row[f"obj{b}_mm"] = round(float(np.mean(errs)), 1)
                row[f"obj{b}_near_mm"] = round(float(np.mean(near)), 1) if near else None
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| object state | success | Wilson 95% | cube A error, all / near (mm) | cube B error, all / near (mm) |")
    print("|---|---|---|---|---|")
    for r in rows:
        errs = [f"{r.get(f'obj{b}_mm', '')} / {r.get(f'obj{b}_near_mm', '')}" if f"obj{b}_mm" in r else ""
                for b in range(2)]
        print(f"| {r['object state']} | {r['success']} | {100 * r['wilson95'][0]:.0f}-{100 * r['wilson95'][1]:.0f}% | "
              f"{errs[0]} | {errs[1]} |")


if __name__ == "__main__":
    main()

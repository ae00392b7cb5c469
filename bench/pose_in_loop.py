"""A low-dim policy driven by the cameras (policy.type=pose: the state head on the pose estimator's estimate),
against the same head given the simulator's object state, on the same held-out seeds in one run.

    python bench/pose_in_loop.py --estimator runs/pose/est/best --policy tiny/policies/stack \
        --episodes 20 --seed 300000 --workers 2

The camera row is the shipped code path, `PosePolicy.from_parts(head, estimator)` (it never reads obs/object;
the bench reads it to score the estimate). The env gives the simulator's sub-goals (an oracle planner) to heads
that read them. Prints one JSON line per row (success, Wilson 95%, the estimate's mean position error per
object during the episodes, all frames and within 10 cm of the hand) and a markdown table.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from embodied.envs.actor import Actor


class Scored(Actor):
    """A camera-driven policy's actor; the estimate it acts on is scored against the true object state."""

    def __init__(self, policy, record: list):
        self.policy, self.actor, self.record = policy, policy.actor(), record

    def reset(self) -> None:
        self.actor.reset()

    def act(self, obs: dict, subgoal: str | None = None, info: dict | None = None) -> np.ndarray:
        est = self.policy.estimator.estimate(obs)
        true, hand = np.asarray(obs["object"]), np.asarray(obs["proprio"][:3])
        for b in range(self.policy.estimator.cfg.blocks):
            p, t = est[7 * b: 7 * b + 3], true[7 * b: 7 * b + 3]
            self.record.append((b, float(np.linalg.norm(p - t)) * 1000, float(np.linalg.norm(t - hand)) < 0.10))
        return self.actor.act({k: v for k, v in obs.items() if k != "object"}, subgoal)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--estimator", required=True, help="a train-pose checkpoint (best/ or last/)")
    ap.add_argument("--policy", default="tiny/policies/stack", help="a low-dim (state) policy")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=300000, help="first seed (held out: no training set uses them)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--horizon", type=int, default=250)
    ap.add_argument("--cameras-only", action="store_true", help="skip the simulator-state row (measured before)")
    args = ap.parse_args()

    import torch

    from embodied.envs.runner import run_episodes
    from embodied.metrics import wilson
    from embodied.policies import load_policy
    from embodied.policies.pose import PoseEstimator
    from embodied.policies.pose.policy import PosePolicy

    torch.set_num_threads(1 if args.workers > 1 else torch.get_num_threads())
    policy = load_policy(args.policy)
    pose = PosePolicy.from_parts(policy, PoseEstimator.from_pretrained(args.estimator))
    estimator = pose.estimator
    env_cfg = {**pose.cfg.env, "horizon": args.horizon}
    seeds = range(args.seed, args.seed + args.episodes)
    rows = []
    names = ("simulator state", "estimated from the cameras")
    for name in names[1:] if args.cameras_only else names:
        record: list = []
        make = policy.actor if name == "simulator state" else (lambda: Scored(pose, record))
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

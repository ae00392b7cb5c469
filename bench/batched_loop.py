"""Closed loops sharing one planner: the same seeds with the agents' planner calls one by one (today's default)
and answered in batches (planner.batch=true, planners/batching.py), in one run.

Prints per mode the wall time, the time inside planner calls, how many calls and batches, and whether every
episode's plans, checks and outcome were the same.

    python bench/batched_loop.py --task Stack --episodes 8 --workers 4
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--planner", default="tiny/planner")
    ap.add_argument("--task", default="Stack")
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=500000)
    ap.add_argument("--horizon", type=int, default=250)
    args = ap.parse_args()

    from embodied.agent import AgentConfig, EmbodiedAgent
    from embodied.envs.runner import run_episodes
    from embodied.planners import make_planner
    from embodied.planners.batching import PlanBatcher
    from embodied.policies import make_expert

    planner = make_planner("egpt", args.planner)
    spent = {"s": 0.0, "calls": 0}
    for name in ("replan_batch", "are_done_batch"):  # time inside the model, whichever mode calls it
        inner = getattr(planner, name)

        def timed(*a, _inner=inner, _name=name):
            t0 = time.perf_counter()
            try:
                return _inner(*a)
            finally:
                dt = time.perf_counter() - t0
                spent["s"] += dt
                spent["calls"] += 1
                spent.setdefault("by", {}).setdefault(f"{_name[:-6]} x{len(a[0])}", []).append(dt)

        setattr(planner, name, timed)
    env_cfg = {"backend": "robosuite", "task": args.task, "cameras": ["agentview", "robot0_eye_in_hand"],
               "height": 128, "width": 128, "horizon": args.horizon,
               "perturbation": {"kind": "drop", "at_subgoal": "lift", "delay": 3}}
    seeds = list(range(args.seed, args.seed + args.episodes))
    runs = {}
    for mode in ("one_by_one", "batched"):
        batcher = PlanBatcher(planner) if mode == "batched" else None
        shared = batcher or planner
        spent.update(s=0.0, calls=0, by={})
        t0 = time.perf_counter()
        res = run_episodes(env_cfg, lambda: EmbodiedAgent(shared, make_expert("robosuite", args.task, kind="skill"),
                                                          AgentConfig(camera="robot0_eye_in_hand")),
                           seeds, workers=args.workers, together=batcher.run if batcher else None, desc=mode)
        wall = time.perf_counter() - t0
        runs[mode] = {r["seed"]: (r["agent_log"], r["checks"], r["success"]) for r in res}
        print(
            json.dumps(
                {
                    "mode": mode,
                    "task": args.task,
                    "episodes": len(res),
                    "workers": args.workers,
                    "success": sum(r["success"] for r in res),
                    "wall_s": round(wall, 1),
                    "planner_s": round(spent["s"], 1),
                    "model_calls": spent["calls"],
                    "ms_per_call": {
                        k: [len(v), round(1e3 * sum(v) / len(v), 1)] for k, v in sorted(spent["by"].items())
                    },
                    "batch_sizes": dict(sorted(Counter(n for _, n in batcher.batches).items())) if batcher else None,
                }
            ),
            flush=True,
        )
    same = [s for s in seeds if runs["batched"][s] == runs["one_by_one"][s]]
    print(json.dumps({"same_episodes": len(same), "of": len(seeds)}))


if __name__ == "__main__":
    main()

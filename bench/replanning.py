"""Replanning study: the drop perturbation (the gripper opens shortly after the lift starts) on the same
seeds, with re-planning against without, plus the unperturbed reference, for robosuite Stack and Lift.

    python bench/replanning.py --planner runs/plan/checkpoint [--policy expert|Task=DIR] [--episodes 20]
    python bench/replanning.py --planner tiny/planner --tasks metaworld/hammer --policy metaworld/hammer=DIR \
        --drop-at hit --drop-delay 5

A Meta-World task (metaworld/<task>) runs from its gripper camera (the camera the tiny planner knows),
horizon 400.

recovered = (success with replanning - success without) / (success unperturbed - success without):
the share of the failures the perturbation causes that re-planning wins back (target >= 0.5).
"""
from __future__ import annotations

import argparse
import json
import time

from omegaconf import OmegaConf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--planner", default=None, help="EmbodiedGPT checkpoint; without it the oracle planner is used")
    ap.add_argument("--policy", default="expert", help="expert, or a learned policy directory per task: Task=DIR")
    ap.add_argument("--tasks", nargs="+", default=["Stack", "Lift"])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--drop-at", default="lift", help="the sub-goal (its first word) whose start the drop follows")
    ap.add_argument("--drop-delay", type=int, default=3, help="steps into that sub-goal")
    args = ap.parse_args()
    from embodied.envs.runner import run_episodes
    from embodied.jobs.rollout import make_agent_factory
    from embodied.metrics import wilson

    policies = dict(p.split("=", 1) for p in args.policy.split(",")) if args.policy != "expert" else {}
    rows = []
    for task in args.tasks:
        if task.startswith("metaworld/"):
            env = {"backend": "metaworld", "task": task.split("/", 1)[1], "cameras": ["gripperPOV"], "horizon": 400}
        else:
            env = {"backend": "robosuite", "task": task, "cameras": ["agentview", "robot0_eye_in_hand"], "horizon": 300,
                   "variety": task == "Stack"}
        drop = {"kind": "drop", "at_subgoal": args.drop_at, "delay": args.drop_delay}
        row = {"task": task, "planner": "egpt" if args.planner else "oracle", "policy": policies.get(task, "expert")}
        for name, perturb, replan in (
            ("unperturbed", None, True),
            ("drop_no_replan", drop, False),
            ("drop_replan", drop, True),
        ):
            cfg = OmegaConf.create(
                {
                    "policy": {
                        "type": "learned" if task in policies else "expert",
                        "path": policies.get(task),
                        "noise": 0.0,
                    },
                    "planner": {"type": "egpt" if args.planner else "oracle", "path": args.planner},
                    "agent": {
                        "camera": None,
                        "clip_len": 8,
                        "clip_stride": 3,
                        "check_every": 6,
                        "subgoal_budget": 80,
                        "max_replans": 2,
                        "replan": replan,
                    },
                }
            )
            env_cfg = {**env, **({"perturbation": perturb} if perturb else {})}
            make, _, _ = make_agent_factory(cfg, env_cfg, policies.get(task))
            t0 = time.perf_counter()
            res = run_episodes(env_cfg, make, range(args.seed, args.seed + args.episodes), workers=args.workers,
                               total=args.episodes, desc=f"{task} {name}")
            k = sum(r["success"] for r in res)
            row[name] = {"success": k / len(res), "wilson95": [round(x, 3) for x in wilson(k, len(res))],
                         "replans": sum(r.get("replans", 0) for r in res), "seconds": round(time.perf_counter() - t0)}
        lost = row["unperturbed"]["success"] - row["drop_no_replan"]["success"]
        won = row["drop_replan"]["success"] - row["drop_no_replan"]["success"]
        row["recovered_share"] = round(won / lost, 3) if lost > 0 else None
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("| task | planner | policy | unperturbed | drop, no replan | drop, replan | recovered |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['task']} | {r['planner']} | {r['policy']} | {100 * r['unperturbed']['success']:.0f}% | "
            f"{100 * r['drop_no_replan']['success']:.0f}% | {100 * r['drop_replan']['success']:.0f}% | "
            f"{r['recovered_share']} |"
        )


if __name__ == "__main__":
    main()

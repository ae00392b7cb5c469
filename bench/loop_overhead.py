"""Closed-loop overhead: env steps/s of the full EmbodiedAgent loop (the EmbodiedGPT policy every step,
the planner at the start, on "is it done?" checks and on re-plans) against raw env stepping with the same
cameras, in one run, on one process. The loop runs twice: with the done checks on the background thread
(the default) and in line.

    python bench/loop_overhead.py --planner runs/plan/checkpoint [--steps 300] [--task Lift] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--planner", required=True)
    ap.add_argument("--policy", default=None, help="a trained policy dir; default: an untrained EmbodiedGPT policy")
    ap.add_argument("--task", default="Lift")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--check-every", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from embodied.agent import AgentConfig, EmbodiedAgent
    from embodied.envs import make_env
    from embodied.planners import EmbodiedGPTPlanner
    from embodied.policies import load_policy, make_policy

    torch.set_grad_enabled(False)
    cams = ["agentview", "robot0_eye_in_hand"]
    env = make_env({"backend": "robosuite", "task": args.task, "cameras": cams, "horizon": 10**6})
    planner = EmbodiedGPTPlanner.from_pretrained(args.planner)
    policy = load_policy(args.policy) if args.policy else make_policy(
        {"type": "egpt", "planner": args.planner, "camera": cams[-1], "proprio_dim": 9, "action_dim": 7})
    agents = {mode: EmbodiedAgent(planner, policy, AgentConfig(camera=cams[-1], check_every=args.check_every,
                                                              background_checks=mode == "background"))
              for mode in ("background", "in_line")}

    def run(act) -> float:
        obs, info = env.reset(seed=0)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            obs, _, term, trunc, info = env.step(act(obs, info))
        return args.steps / (time.perf_counter() - t0)

    rng = np.random.default_rng(0)
    rows = []
    for _ in range(args.repeats):  # raw and loop interleaved, each ratio against its own raw run: the machine drifts
        row = {"raw": run(lambda obs, info: rng.uniform(-1, 1, 7).astype(np.float32))}
        for mode, agent in agents.items():
            policy.reset()
            agent.reset()
            row[mode] = run(lambda obs, info: agent.act(obs, info["subgoal"], info))
        rows.append(row)
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    ratio = {k: float(np.median([r[k] / r["raw"] for r in rows])) for k in agents}
    agent = agents["background"]
    print(json.dumps({"task": args.task, "cameras": cams, "steps": args.steps, "repeats": args.repeats,
                      "raw_env_steps_per_s": round(med["raw"], 2), "full_loop_steps_per_s": round(med["background"], 2),
                      "ratio_loop_over_raw": round(ratio["background"], 3),
                      "ratio_with_checks_in_line": round(ratio["in_line"], 3),
                      "ratios_per_repeat": [round(r["background"] / r["raw"], 3) for r in rows],
                      "plans_and_replans": sum(e["event"] in ("plan", "replan") for e in agent.log),
                      "done_checks": args.steps // args.check_every, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()

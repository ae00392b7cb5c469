"""Is it the Stack demos' expert or the learner? State BC and DAgger from a reactive Stack expert.

A one-off study (bench/studies/): its result is in docs/BENCHMARKS.md, "DAgger: does the learner fail on the states
its own errors lead to?" and "Stack from a reactive expert".

The scripted `StackExpert` is a waypoint state machine: its action depends on a phase and step counters that
are not in the observation, so a learner cannot be asked what it "would have done" in a state the learner
reached (DAgger's question). `ReactiveStackExpert` answers that: every action is a function of the current
observation only (cone approach to the cube, grasp axis away from the other cube, hand kept level). This
script collects its demos in process (noise 0.1), trains `state_bc`'s MLP on the privileged state, then runs
DAgger rounds with it as the teacher, evaluating on the same fresh seeds after each round.

    python bench/studies/stack_dagger.py [--n-demos 20 --rounds 3 --round-episodes 20 --chunk 4 --epochs 200
        --std-floor 0.05]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from state_bc import add_labels, chunk_labels, dagger_round, evaluate, features, learner, train

from embodied.envs import make_env
from embodied.policies.scripted import ReactiveStackExpert


def demos(env, n: int, chunk: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n successful episodes of seeds 0, 1, ... (as `embodied collect` keeps only successes)."""
    xs, ys, kept, seed = [], [], 0, 0
    while kept < n:
        if seed >= 2 * n + 10:
            raise SystemExit(f"only {kept} of {n} expert demos succeeded in {seed} attempts")
        expert = ReactiveStackExpert(noise=noise, seed=seed)
        obs, info = env.reset(seed=seed)
        seed += 1
        feats, acts = [], []
        while True:
            acts.append(expert.act(obs))
            feats.append(features(obs["proprio"], obs["object"], True))
            obs, _, term, trunc, info = env.step(acts[-1])
            if term or trunc:
                break
        if info["success"]:
            xs += feats
            ys += chunk_labels(np.array(acts), chunk)
            kept += 1
    return torch.tensor(np.array(xs)), torch.tensor(np.array(ys), dtype=torch.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-demos", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round-episodes", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--std-floor", type=float, default=0.05)
    ap.add_argument("--noise", type=float, default=0.1, help="the demos' action noise (the DAgger labels have none)")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--bins", type=int, default=0,
                    help="classify each action dimension into this many mu-law spaced values (0: MSE regression)")
    ap.add_argument("--seed", type=int, default=300000, help="first evaluation seed")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    env = make_env({"backend": "robosuite", "task": "Stack", "cameras": [], "horizon": 250, "variety": True})
    seeds = range(args.seed, args.seed + args.episodes)

    expert_ok = evaluate(env, lambda: (lambda obs, e=ReactiveStackExpert(): [e.act(obs)]), seeds)
    x, y = demos(env, args.n_demos, args.chunk, args.noise)
    net = None  # trained at the end of round 0, before the first DAgger round reads it
    for r in range(args.rounds + 1):
        if r:
            first = 400000 + (r - 1) * args.round_episodes
            xs, ys, _ = dagger_round(env, net, ReactiveStackExpert(), range(first, first + args.round_episodes),
                                     args.chunk, True)
            x, y = add_labels(x, y, xs, ys)
        net = train(x, y, args.epochs, seed=0, std_floor=args.std_floor, bins=args.bins)
        policy = learner(net, args.chunk, True)
        won = evaluate(env, lambda: policy, seeds)
        print(
            json.dumps(
                {
                    "dagger_round": r,
                    "bins": args.bins,
                    "samples": len(x),
                    "state_bc_success": sum(won) / len(won),
                    "expert_success": sum(expert_ok) / len(expert_ok),
                    "seconds": round(time.time() - t0),
                }
            ),
            flush=True,
        )
    env.close()


if __name__ == "__main__":
    main()

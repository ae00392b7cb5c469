"""Is it the Stack demos' expert or the learner? State BC and DAgger from a Markov Stack expert.

The scripted `StackExpert` is a waypoint state machine: its action depends on a phase and step counters that
are not in the observation, so a learner cannot be asked what it "would have done" in a state the learner
reached (DAgger's question). `MarkovStackExpert` answers that: every action is a function of the current
observation only (cone approach to the cube, grasp axis away from the other cube, hand kept level). This
script collects its demos in process (noise 0.1), trains `state_bc`'s MLP on the privileged state, then runs
DAgger rounds with it as the teacher, evaluating on the same fresh seeds after each round.

    python bench/stack_dagger.py [--n-demos 20 --rounds 3 --round-episodes 20 --chunk 4 --epochs 200 --std-floor 0.05]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from embodied.envs import make_env
from embodied.policies.scripted import NutAssemblySquareExpert, RobosuiteExpert, _wrap, _yaw_from_xyzw
from state_bc import add_labels, chunk_labels, dagger_round, evaluate, features, learner, train


class MarkovStackExpert(RobosuiteExpert):
    finger_yaw = np.pi / 2  # the fingers close across the hand's yaw direction

    def _act(self, obs):
        p, o = obs["proprio"], obs["object"]
        eef, gap = p[:3], p[7] - p[8]
        cube_a, cube_b = o[0:3], o[7:10]
        a = np.zeros(7)
        near = np.linalg.norm(cube_a - eef) < 0.02
        place_z = cube_b[2] + 0.025 + 0.02 + 0.004  # cube A's centre resting on cube B
        if near and 0.01 < gap < 0.055:  # holding cube A: carry it (not the hand) down a cone onto cube B
            d = np.linalg.norm((cube_a - cube_b)[:2])
            z = place_z + min(0.10, max(0.0, 2.0 * (d - 0.004)))
            move = np.array([cube_b[0] - cube_a[0], cube_b[1] - cube_a[1], z - cube_a[2]])
            if cube_a[2] < z - 0.03:
                move[:2] = 0.0  # rise before crossing over
            a[:3] = np.clip(self.gain * move, -1, 1)
            a[6] = -1.0 if d < 0.008 and cube_a[2] - place_z < 0.008 else 1.0
        else:  # down a cone onto cube A, along the grasp axis whose fingers stay clear of cube B
            d = np.linalg.norm((cube_a - eef)[:2])
            z = cube_a[2] + min(0.10, max(0.0, 2.0 * (d - 0.004)))
            move = np.array([cube_a[0] - eef[0], cube_a[1] - eef[1], z - eef[2]])
            if eef[2] < z - 0.03:
                move[:2] = 0.0
            a[:3] = np.clip(self.gain * move, -1, 1)
            ab = np.arctan2(cube_b[1] - cube_a[1], cube_b[0] - cube_a[0])
            yaw_a = _yaw_from_xyzw(o[3:7])
            goal = max((yaw_a, yaw_a + np.pi / 2), key=lambda g: abs(np.sin(g + self.finger_yaw - ab)))
            yerr = _wrap(goal - _yaw_from_xyzw(p[3:7]), np.pi)
            a[5] = np.clip(self.rot_gain * yerr, -1, 1)
            at_grasp = d < 0.008 and eef[2] - cube_a[2] < 0.01 and abs(yerr) < 0.1
            a[6] = 1.0 if at_grasp or near and 0.01 < gap < 0.075 else -1.0
        down = -NutAssemblySquareExpert._z_axis(p[3:7])  # OSC does not hold the hand level: turn it back
        a[3:5] = np.clip(self.rot_gain * np.array([down[1], -down[0]]), -1, 1)
        return a


def demos(env, n: int, chunk: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for seed in range(n):
        expert = MarkovStackExpert(noise=noise, seed=seed)
        obs, info = env.reset(seed=seed)
        feats, acts = [], []
        while True:
            acts.append(expert.act(obs))
            feats.append(features(obs["proprio"], obs["object"], True))
            obs, _, term, trunc, info = env.step(acts[-1])
            if term or trunc:
                break
        xs += feats
        ys += chunk_labels(np.array(acts), chunk)
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
    ap.add_argument("--seed", type=int, default=300000, help="first evaluation seed")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    env = make_env({"backend": "robosuite", "task": "Stack", "cameras": [], "horizon": 250, "variety": True})
    seeds = range(args.seed, args.seed + args.episodes)

    expert_ok = evaluate(env, lambda: (lambda obs, e=MarkovStackExpert(): [e.act(obs)]), seeds)
    x, y = demos(env, args.n_demos, args.chunk, args.noise)
    for r in range(args.rounds + 1):
        if r:
            first = 400000 + (r - 1) * args.round_episodes
            xs, ys, _ = dagger_round(env, net, MarkovStackExpert(), range(first, first + args.round_episodes),
                                     args.chunk, True)
            x, y = add_labels(x, y, xs, ys)
        net = train(x, y, args.epochs, seed=0, std_floor=args.std_floor)
        policy = learner(net, args.chunk, True)
        won = evaluate(env, lambda: policy, seeds)
        print(json.dumps({"dagger_round": r, "samples": len(x), "state_bc_success": sum(won) / len(won),
                          "markov_expert_success": sum(expert_ok) / len(expert_ok),
                          "seconds": round(time.time() - t0)}), flush=True)
    env.close()


if __name__ == "__main__":
    main()

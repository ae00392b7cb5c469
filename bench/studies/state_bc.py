"""How far behaviour cloning gets from the same demos with perfect perception: an MLP on the privileged

A one-off study (bench/studies/): its result is in docs/BENCHMARKS.md, "Stack from privileged state: are the demos
or the vision the limit?".
state (obs/proprio + obs/object) instead of pixels, evaluated on fresh seeds beside the scripted expert.

It separates the two reasons a pixel policy can fail: if even this low-dim policy fails, the demos (their
number, their expert) are the limit, not the vision. Not a shipped policy: rollouts here read the
simulator's object poses, which a real robot does not have.

    python bench/studies/state_bc.py --demos stack.hdf5 --n-demos 20 [--relative] [--episodes 20 --seed 300000]
        [--dagger 4 --dagger-episodes 20]
    python bench/studies/state_bc.py --demos runs/mw/demos/assembly.hdf5 --n-demos 10 --episodes 50 --seed 200000 \
        --horizon 200

`--dagger R` then runs R rounds of DAgger: the learner drives E episodes (seeds apart from the demos' and the
evaluation's), the scripted expert, fed the same observations, labels every state the learner visits, and
the learner is retrained on the demos plus all labelled states. Does the learner fail on the demos it
has, or on the states its own errors lead to?
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from embodied.datasets.demos import demo_names, open_demo_file
from embodied.envs import make_env
from embodied.errors import EmbodiedError
from embodied.metrics import wilson
from embodied.policies import make_expert

POSE = 7  # robosuite Lift and Stack: obs/object is one (position, quaternion) block per cube
METAWORLD_OBS = 39


def features(proprio: np.ndarray, obj: np.ndarray, relative: bool) -> np.ndarray:
    """State input; `relative` adds each cube's position from the hand and the first cube's from the others,
    the vectors robosuite's own low-dim observations carry (gripper_to_cubeA, cubeA_to_cubeB). Meta-World's
    object state is its 39-d observation (hand, gripper, object at 4:7, goal at 36:39): there it adds the
    object from the hand and the goal from the object."""
    parts = [proprio, obj]
    if relative and len(obj) == METAWORLD_OBS:
        parts += [obj[4:7] - obj[:3], obj[36:39] - obj[4:7]]
    elif relative:
        cubes = [obj[i: i + 3] for i in range(0, len(obj), POSE)]
        parts += [c - proprio[:3] for c in cubes] + [cubes[0] - c for c in cubes[1:]]
    return np.concatenate(parts).astype(np.float32)


def chunk_labels(actions: np.ndarray, chunk: int) -> list[np.ndarray]:
    """For every step, the next `chunk` actions flattened, the last one repeated past the end."""
    n = len(actions)
    return [actions[np.minimum(np.arange(t, t + chunk), n - 1)].reshape(-1) for t in range(n)]


def learner(net: nn.Module, chunk: int, relative: bool):
    """`act(obs) -> (chunk, A)` actions of a trained net."""
    @torch.no_grad()
    def act(obs):
        return net(torch.from_numpy(features(obs["proprio"], obs["object"], relative))[None]).view(chunk, -1).numpy()
    return act


def load(path: str, n: int | None, chunk: int, relative: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
    with open_demo_file(path) as f:
        env_cfg = json.loads(f["data"].attrs.get("embodied_env", "{}"))
        if not (env_cfg.get("backend") == "metaworld" or env_cfg.get("task") in ("Lift", "Stack")):
            raise EmbodiedError(f"{path}: state BC here takes robosuite Lift or Stack, or Meta-World, demos from "
                                f"`embodied collect`")
        names = demo_names(f)
        if n is not None and n > len(names):
            raise EmbodiedError(f"--n-demos {n}: {path} has {len(names)} demos")
        xs, ys = [], []
        for name in names[:n]:
            g = f["data"][name]
            p, o, a = g["obs/proprio"][()], g["obs/object"][()], g["actions"][()]
            xs += [features(p[t], o[t], relative) for t in range(len(a))]
            ys += chunk_labels(a, chunk)
    return torch.tensor(np.array(xs)), torch.tensor(np.array(ys), dtype=torch.float32), env_cfg


def bin_centres(k: int, mu: float = 20.0) -> torch.Tensor:
    """`k` action values in [-1, 1], mu-law spaced: next to zero 0.008 apart for k=41 (0.8 mm of position error
    at the experts' gain of 10 per metre), coarse near the clip, where the exact value matters less."""
    u = torch.linspace(-1, 1, k)
    return torch.sign(u) * ((1 + mu) ** u.abs() - 1) / mu


def train(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int, std_floor: float = 1e-3,
          bins: int = 0) -> nn.Module:
    """An MLP from standardised state to the action chunk: regression (MSE) when `bins` is 0, else each action
    dimension classified into `bins` values (cross-entropy), which cannot blur a switch into an average."""
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0).clamp(min=std_floor)
    dims = y.shape[1]
    out = [nn.Linear(256, dims), nn.Tanh()] if not bins else [nn.Linear(256, dims * bins)]
    net = nn.Sequential(nn.Linear(x.shape[1], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), *out)
    if bins:
        centres = bin_centres(bins)
        target = (y[..., None] - centres).abs().argmin(-1)  # (N, dims) nearest bin
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 256):
            b = order[i: i + 256]
            pred = net((x[b] - mean) / std)
            if bins:
                loss = nn.functional.cross_entropy(pred.view(-1, bins), target[b].reshape(-1))
            else:
                loss = ((pred - y[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    tail = [_Decode(centres, dims)] if bins else []
    return nn.Sequential(_Standardize(mean, std), net, *tail).eval()


class _Standardize(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class _Decode(nn.Module):
    """Logits -> the most likely bin's value per action dimension."""
    def __init__(self, centres: torch.Tensor, dims: int):
        super().__init__()
        self.centres, self.dims = centres, dims

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.centres[logits.view(len(logits), self.dims, -1).argmax(-1)]


def evaluate(env, make_act, seeds: range) -> list[bool]:
    """`make_act()` gives a fresh `act(obs) -> list of actions` (a chunk, run open loop) for each seed's episode."""
    results = []
    for seed in seeds:
        act = make_act()
        obs, info = env.reset(seed=seed)
        queue: list = []
        while True:
            if not queue:
                queue = list(act(obs))
            obs, _, term, trunc, info = env.step(queue.pop(0))
            if term or trunc:
                break
        results.append(bool(info["success"]))
    return results


def dagger_round(env, net, expert, seeds: range, chunk: int, relative: bool) -> tuple[list, list, float]:
    """States the learner visits on `seeds` with the expert's labels (chunks of the labels along the learner's
    own path, as the demos' chunks are), and the learner's success on them."""
    act = learner(net, chunk, relative)
    xs, ys, wins = [], [], 0
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        expert.reset()
        labels = []
        while True:
            labels.append(expert.act(obs))  # also advances the expert's own phase along the learner's path
            xs.append(features(obs["proprio"], obs["object"], relative))
            obs, _, term, trunc, info = env.step(act(obs)[0])
            if term or trunc:
                break
        wins += bool(info["success"])
        ys += chunk_labels(np.array(labels), chunk)
    return xs, ys, wins / len(seeds)


def add_labels(x: torch.Tensor, y: torch.Tensor, xs: list, ys: list) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([x, torch.tensor(np.array(xs))]), torch.cat([y, torch.tensor(np.array(ys), dtype=torch.float32)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demos", required=True)
    ap.add_argument("--n-demos", type=int, default=20)
    ap.add_argument("--relative", action="store_true", help="add the cubes' positions relative to the hand")
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--bins", type=int, default=0,
                    help="classify each action dimension into this many mu-law spaced values (0: MSE regression)")
    ap.add_argument("--seed", type=int, default=300000, help="first evaluation seed")
    ap.add_argument("--horizon", type=int, default=250)
    ap.add_argument(
        "--std-floor",
        type=float,
        default=1e-3,
        help="smallest input std in the standardisation: a feature (the bottom cube's height, a quaternion "
        "component) that hardly varies in the demos blows up to tens of stds when it moves in a rollout",
    )
    ap.add_argument("--dagger", type=int, default=0, help="DAgger rounds after BC (0: BC only)")
    ap.add_argument("--dagger-episodes", type=int, default=20, help="learner episodes per DAgger round")
    ap.add_argument("--dagger-seed", type=int, default=400000, help="first seed of the DAgger rollouts")
    args = ap.parse_args()
    torch.set_num_threads(1)

    t0 = time.time()
    x, y, env_cfg = load(args.demos, args.n_demos, args.chunk, args.relative)
    net = train(x, y, args.epochs, seed=0, std_floor=args.std_floor, bins=args.bins)
    env = make_env({**env_cfg, "cameras": [], "horizon": args.horizon, "perturbation": None,
                    "terminate_on_success": True})
    for r in range(args.dagger):
        first = args.dagger_seed + r * args.dagger_episodes
        xs, ys, won = dagger_round(env, net, make_expert(env_cfg["backend"], env_cfg["task"]),
                                   range(first, first + args.dagger_episodes), args.chunk, args.relative)
        x, y = add_labels(x, y, xs, ys)
        net = train(x, y, args.epochs, seed=0, std_floor=args.std_floor, bins=args.bins)
        print(json.dumps({"round": r + 1, "learner_success": won, "samples": len(x)}), flush=True)
    seeds = range(args.seed, args.seed + args.episodes)
    policy = learner(net, args.chunk, args.relative)
    learned = evaluate(env, lambda: policy, seeds)
    expert_ok = evaluate(
        env, lambda: lambda obs, e=make_expert(env_cfg["backend"], env_cfg["task"]): [e.act(obs)], seeds
    )
    env.close()
    k, m = sum(learned), sum(expert_ok)
    lo, hi = wilson(k, len(learned))
    print(
        json.dumps(
            {
                "demos": args.demos,
                "n_demos": args.n_demos,
                "std_floor": args.std_floor,
                "relative": args.relative,
                "chunk": args.chunk,
                "dagger_rounds": args.dagger,
                "bins": args.bins,
                "samples": len(x),
                "state_bc_success": k / len(learned),
                "wilson95": [round(lo, 3), round(hi, 3)],
                "expert_success": m / len(expert_ok),
                "ratio": round(k / max(m, 1), 3),
                "episodes": len(learned),
                "seconds": round(time.time() - t0, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

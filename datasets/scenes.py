"""Frames of fresh scenes with their privileged object state, for the policies' object-state target.

Ten demos show the objects in ten places only, so an object-position estimate learnt from their frames alone
has ten points to generalise from. A simulator can show many more: reset the task on new seeds, move the
hand at random for a while, and render what the policy's camera sees, labelled with `obs/object`. These
frames carry no actions: they teach where things are, never what to do, and cost no demonstrations.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from embodied.envs import make_env
from embodied.errors import EmbodiedError


def scene_frames(env_cfg: dict, camera: str, n: int, seed: int, max_moves: int = 60,
                 hold: int = 10) -> dict:
    """`n` scenes (one frame each) of the demos' task on seeds `seed`..`seed+n-1`: after each reset the hand
    takes up to `max_moves` random actions, each held `hold` steps so that it travels rather than jitters.
    Returns {"rgb": (n, H, W, 3) uint8, "proprio": (n, P), "object": (n, O), "subgoal": n task sub-goals}."""
    if n <= 0:
        raise EmbodiedError(f"aux_scenes={n}: expected a positive number of scenes")
    env = make_env({**env_cfg, "cameras": [camera], "perturbation": None, "terminate_on_success": False,
                    "horizon": max_moves + 1})
    low, high = env.action_space.low, env.action_space.high
    out: dict[str, list] = {"rgb": [], "proprio": [], "object": [], "subgoal": []}
    try:
        for s in tqdm(range(seed, seed + n), desc="scene frames", leave=False):
            rng = np.random.default_rng(s)
            obs, info = env.reset(seed=s)
            subgoals = list(info["subgoals"])
            for t in range(int(rng.integers(0, max_moves + 1))):
                if t % hold == 0:
                    action = rng.uniform(low, high).astype(np.float32)
                obs, _, term, trunc, info = env.step(action)
                if term or trunc:
                    break
            out["rgb"].append(obs["rgb"][camera])
            out["proprio"].append(obs["proprio"])
            out["object"].append(obs["object"])
            # The E-former reads a sub-goal with every frame; rollouts give it each of the task's in turn.
            out["subgoal"].append(subgoals[int(rng.integers(len(subgoals)))])
    finally:
        env.close()
    return {"rgb": torch.from_numpy(np.stack(out["rgb"])), "proprio": torch.from_numpy(np.stack(out["proprio"])),
            "object": torch.from_numpy(np.stack(out["object"])), "subgoal": out["subgoal"]}

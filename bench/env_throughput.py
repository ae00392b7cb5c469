"""Env throughput, in one run (ratios, since the machine is noisy):
  1. raw robosuite Lift steps/s against embodied.envs Lift with identical settings (target ratio >= 0.9)
  2. 1 against 2 AsyncVectorEnv workers (target ratio >= 1.6 on 2 cores)
  3. seconds to collect 10 Lift demos with two cameras

    python bench/env_throughput.py [--steps 300] [--size 128]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

CAMS = ["agentview", "robot0_eye_in_hand"]


def raw_robosuite(size: int):
    import robosuite

    ctrl = robosuite.load_composite_controller_config(controller="BASIC", robot="Panda")
    env = robosuite.make("Lift", robots="Panda", controller_configs=ctrl, has_renderer=False,
                         has_offscreen_renderer=True, use_camera_obs=True, camera_names=CAMS,
                         camera_heights=size, camera_widths=size, hard_reset=False, horizon=10**6,
                         ignore_done=True, reward_shaping=False, control_freq=20, seed=0)
    env.reset()
    flags = env.sim._render_context_offscreen.scn.flags
    flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    return env


def rate(step, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    from embodied.envs import make_env
    from embodied.envs.runner import make_vector_env

    cfg = {"backend": "robosuite", "task": "Lift", "cameras": CAMS, "height": args.size, "width": args.size,
           "horizon": 10**6}
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.3, 0.3, (args.steps, 7))
    raw, ours = raw_robosuite(args.size), make_env(cfg)
    ours.reset(seed=0)
    r_raw, r_ours = [], []
    for _ in range(2):  # interleave so drifts in machine load hit both alike
        it = iter(actions)
        r_raw.append(rate(lambda: raw.step(next(it)), args.steps))
        it = iter(actions)
        r_ours.append(rate(lambda: ours.step(next(it)), args.steps))
    raw_sps, ours_sps = max(r_raw), max(r_ours)
    print(f"[1] raw robosuite Lift, 2 cams {args.size}px: {raw_sps:.1f} steps/s | embodied env: {ours_sps:.1f} steps/s"
          f" | ratio {ours_sps / raw_sps:.3f} (target >= 0.9)")

    vec = {}
    for workers in (1, 2):
        envs = make_vector_env(cfg, workers, asynchronous=True)
        envs.reset(seed=list(range(workers)))
        batch = np.zeros((workers, 7), np.float32)
        for _ in range(10):
            envs.step(batch)  # warm up
        vec[workers] = rate(lambda: envs.step(batch), args.steps // workers) * workers
        envs.close()
    print(f"[2] AsyncVectorEnv env-steps/s: 1 worker {vec[1]:.1f} | 2 workers {vec[2]:.1f}"
          f" | ratio {vec[2] / vec[1]:.2f} (target >= 1.6)")

    from embodied.cli import main as cli

    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            rc = cli(["collect", "env=robosuite/lift", "n=10", f"workers={workers}", f"out={d}/lift.hdf5",
                      f"env.height={args.size}", f"env.width={args.size}"])
            assert rc == 0
            print(
                f"[3] collect 10 Lift demos, 2 cams {args.size}px, {workers} worker(s): {time.perf_counter() - t:.1f} s"
            )


if __name__ == "__main__":
    main()

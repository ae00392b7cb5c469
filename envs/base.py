"""The one observation layout and info contract shared by every simulator backend.

obs = {"rgb": {camera: uint8 HxWx3, upright}, "proprio": float32, "object": float32 (privileged state)}
info = {"instruction", "success", "subgoals", "subgoal_index", "subgoal", "state"}
"""
from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from embodied.errors import EmbodiedError

# Named colors for the visual-variety option; the name goes into the instruction.
PALETTE = {
    "red": (0.85, 0.1, 0.1),
    "green": (0.1, 0.7, 0.15),
    "blue": (0.1, 0.25, 0.9),
    "yellow": (0.95, 0.85, 0.1),
    "purple": (0.55, 0.15, 0.75),
    "orange": (1.0, 0.5, 0.05),
    "cyan": (0.05, 0.8, 0.85),
    "white": (0.92, 0.92, 0.92),
}


class EmbodiedEnv(gym.Env):
    """Backend-independent part: spaces, episode bookkeeping, sub-goal labels, info.

    A backend implements `_load`, `_reset_sim`, `_step_sim`, `_render_cameras`, `_proprio`,
    `_object`, `_progress` (sub-goal index and success from simulator state), `get_sim_state`
    and `set_sim_state`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    backend = ""
    tasks: dict[str, Any] = {}
    cameras_available: tuple[str, ...] = ()

    def __init__(self, cfg: dict):
        self.cfg = dict(cfg)
        self.task = cfg["task"]
        if self.task not in self.tasks:
            raise EmbodiedError(
                f"env.task: unknown {self.backend} task '{self.task}'; expected one of {sorted(self.tasks)}"
            )
        self.camera_names = list(cfg.get("cameras") or [])
        bad = [c for c in self.camera_names if c not in self.cameras_available]
        if bad:
            raise EmbodiedError(
                f"env.cameras: unknown camera '{bad[0]}' for {self.backend}; "
                f"expected some of {list(self.cameras_available)}"
            )
        self.height, self.width = int(cfg.get("height", 128)), int(cfg.get("width", 128))
        self.horizon = int(cfg.get("horizon", 200))
        self.terminate_on_success = bool(cfg.get("terminate_on_success", True))
        variety = cfg.get("variety", False)
        if variety not in (True, False, None, "cycle"):
            raise EmbodiedError(f"env.variety={variety!r}: expected true, false or cycle")
        self.variety = variety if variety == "cycle" else bool(variety)
        self.render_mode = "rgb_array"
        self._episode_seed: int | None = None
        self._load()
        proprio_dim, object_dim = len(self._proprio()), len(self._object())
        obs_spaces = {
            "proprio": spaces.Box(-np.inf, np.inf, (proprio_dim,), np.float32),
            "object": spaces.Box(-np.inf, np.inf, (object_dim,), np.float32),
        }
        if self.camera_names:
            obs_spaces["rgb"] = spaces.Dict(
                {c: spaces.Box(0, 255, (self.height, self.width, 3), np.uint8) for c in self.camera_names}
            )
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        self.instruction, self.subgoals = "", []
        self._t = 0

    # -- gymnasium API --------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # One integer drives the simulator's own randomisation, so a seed fixes the whole scene.
        sim_seed = int(self.np_random.integers(2**31 - 1))
        self._episode_seed = seed
        self._t = 0
        self._reset_sim(sim_seed)
        self.instruction, self.subgoals = self._language()
        return self._obs(), self._info()

    def step(self, action):
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (self.action_dim,):
            raise EmbodiedError(f"action: expected shape ({self.action_dim},) for {self.task}, got {action.shape}")
        self._step_sim(np.clip(action, -1.0, 1.0))
        self._t += 1
        info = self._info()
        reward = float(info["success"])
        terminated = bool(info["success"]) and self.terminate_on_success
        truncated = self._t >= self.horizon
        return self._obs(), reward, terminated, truncated, info

    def render(self):
        frames = self._render_cameras()
        if frames:
            return frames[self.camera_names[0]]
        return np.zeros((self.height, self.width, 3), np.uint8)

    # -- shared helpers -------------------------------------------------------------------------
    def _obs(self) -> dict:
        obs = {
            "proprio": np.asarray(self._proprio(), np.float32),
            "object": np.asarray(self._object(), np.float32),
        }
        if self.camera_names:
            obs["rgb"] = self._render_cameras()
        return obs

    def _info(self) -> dict:
        index, success = self._progress()
        return {
            "instruction": self.instruction,
            "success": bool(success),
            "subgoals": list(self.subgoals),
            "subgoal_index": int(index),
            "subgoal": self.subgoals[index],
            "state": self.get_sim_state(),
            "t": self._t,
        }

    def set_colors(self, colors: Sequence[str]) -> None:
        """Repaint the task's coloured objects and rename them in the language (robosuite Lift and Stack)."""
        raise EmbodiedError(f"colors: {self.backend} {self.task} has no objects to recolour")

    def _pick_colors(self, defaults: tuple[str, ...]) -> tuple[str, ...]:
        """Distinct palette colors for the variety option, else the task's defaults. variety=cycle takes them
        in turn from every ordered choice of distinct colours, by the episode's seed: seeds s..s+55 show Stack
        every pair of the eight colours in both roles (Lift: seeds s..s+7, every colour)."""
        if not self.variety:
            return defaults
        names = list(PALETTE)
        if self.variety == "cycle" and self._episode_seed is not None:
            from itertools import permutations

            choices = list(permutations(names, len(defaults)))
            return choices[int(self._episode_seed) % len(choices)]
        idx = self.np_random.choice(len(names), size=len(defaults), replace=False)
        return tuple(names[i] for i in idx)

    # -- perturbation hooks (used by embodied.envs.perturb) -------------------------------------
    def _main_free_joint(self) -> tuple[int, int]:
        """(body id, joint id) of the task's main movable object."""
        import mujoco

        m, _ = self._mj()
        body = self._main_body()
        joint = m.body_jntadr[body] if body is not None else -1
        if joint < 0 or m.jnt_type[joint] != mujoco.mjtJoint.mjJNT_FREE:
            raise EmbodiedError(f"env.perturbation: task {self.task} has no free-moving object to displace or push")
        return body, joint

    def displace_object(self, offset: np.ndarray) -> None:
        import mujoco

        m, d = self._mj()
        _, joint = self._main_free_joint()
        q, v = m.jnt_qposadr[joint], m.jnt_dofadr[joint]
        d.qpos[q : q + 3] += offset
        d.qvel[v : v + 6] = 0.0
        mujoco.mj_forward(m, d)

    def push_object(self, force: np.ndarray) -> None:
        _, d = self._mj()
        body, _ = self._main_free_joint()
        d.xfrc_applied[body, :3] = force

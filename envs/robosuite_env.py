"""robosuite backend: Lift, Stack, PickPlaceCan, Door, NutAssemblySquare with one Panda arm (OSC pose)."""
from __future__ import annotations

import logging
from typing import Sequence

import mujoco
import numpy as np

from embodied.envs.base import PALETTE, EmbodiedEnv
from embodied.errors import EmbodiedError

CAMERAS = ("agentview", "robot0_eye_in_hand", "frontview", "birdview", "sideview", "robot0_robotview")


def _quat_xyzw(q_wxyz: np.ndarray) -> np.ndarray:
    return np.array([q_wxyz[1], q_wxyz[2], q_wxyz[3], q_wxyz[0]])


class RobosuiteEnv(EmbodiedEnv):
    backend = "robosuite"
    tasks = {"Lift": None, "Stack": None, "PickPlaceCan": None, "Door": None, "NutAssemblySquare": None}
    cameras_available = CAMERAS
    action_dim = 7

    def _load(self) -> None:
        import robosuite

        logging.getLogger("robosuite_logs").setLevel(logging.ERROR)
        controller = robosuite.load_composite_controller_config(controller="BASIC", robot="Panda")
        kwargs = dict(
            robots="Panda",
            controller_configs=controller,
            has_renderer=False,
            has_offscreen_renderer=bool(self.camera_names),
            use_camera_obs=bool(self.camera_names),
            camera_names=self.camera_names or "agentview",
            camera_heights=self.height,
            camera_widths=self.width,
            # A model rebuild on every reset costs 2-3 s; reset in place instead.
            hard_reset=bool(self.cfg.get("hard_reset", False)),
            horizon=10**6,  # episode length is ours (self.horizon)
            ignore_done=True,
            reward_shaping=False,
            control_freq=int(self.cfg.get("control_freq", 20)),
            seed=0,
        )
        kwargs.update(self.cfg.get("robosuite_kwargs") or {})
        self.env_kwargs = kwargs
        self.sim_env = robosuite.make(self.task, **kwargs)
        self._raw_obs = self.sim_env.reset()
        self._cache_ids()

    def _cache_ids(self) -> None:
        e, m = self.sim_env, self.sim_env.sim.model
        self._gripper = e.robots[0].gripper["right"] if isinstance(e.robots[0].gripper, dict) else e.robots[0].gripper
        self.table_z = float(e.table_offset[2]) if hasattr(e, "table_offset") else 0.8
        if self.task == "Lift":
            self._objs = {"cube": e.cube}
        elif self.task == "Stack":
            self._objs = {"cubeA": e.cubeA, "cubeB": e.cubeB}
        elif self.task == "PickPlaceCan":
            self._objs = {"can": e.objects[e.object_to_id["can"]]}
            self.target_pos = np.array(e.target_bin_placements[e.object_to_id["can"]])
        elif self.task == "NutAssemblySquare":
            nut = e.nuts[e.nut_to_id["square"]]
            self._objs = {"nut": nut}
            self._nut_handle_site = m.site_name2id(nut.important_sites["handle"])
            self.peg_pos = np.array(e.sim.data.body_xpos[e.peg1_body_id])
        elif self.task == "Door":
            self._objs = {}
        self._body_ids = {k: m.body_name2id(o.root_body) for k, o in self._objs.items()}

    # -- simulation -----------------------------------------------------------------------------
    def _reset_sim(self, sim_seed: int) -> None:
        e = self.sim_env
        # robosuite's samplers hold a reference to env.rng: reseed it in place.
        e.rng.bit_generator.state = np.random.default_rng(sim_seed).bit_generator.state
        self._raw_obs = e.reset()
        self._set_render_flags()
        if self.task in ("Stack", "Lift"):
            self.set_colors(self._pick_colors(("red", "green") if self.task == "Stack" else ("red",)))
            if self.camera_names:
                self._raw_obs = e._get_observations(force_update=True)
        if self.task == "PickPlaceCan":
            self.target_pos = np.array(e.target_bin_placements[e.object_to_id["can"]])

    def close(self) -> None:
        self.sim_env.close()

    def set_colors(self, colors: Sequence[str]) -> None:
        """Paint the cubes (Lift: one, Stack: the top one, then the bottom one) and name them so in the
        instruction and sub-goals. Frames rendered afterwards show the new colours."""
        cubes = {"Lift": ("cube",), "Stack": ("cubeA", "cubeB")}.get(self.task)
        if cubes is None:
            return super().set_colors(colors)  # the shared error: nothing to recolour
        if len(colors) != len(cubes) or len(set(colors)) != len(colors) or any(c not in PALETTE for c in colors):
            raise EmbodiedError(f"colors={list(colors)}: {self.task} takes {len(cubes)} distinct colours from "
                                f"{list(PALETTE)}")
        self.colors = tuple(colors)
        for name, color in zip(cubes, colors):
            self._paint(getattr(self.sim_env, name), color)
        self.instruction, self.subgoals = self._language()

    def _paint(self, obj, color: str) -> None:
        m = self.sim_env.sim.model._model
        for name in obj.visual_geoms:
            gid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, name)
            m.geom_matid[gid] = -1  # drop the wood texture so the palette color shows
            m.geom_rgba[gid] = (*PALETTE[color], 1.0)

    def _set_render_flags(self) -> None:
        ctx = getattr(self.sim_env.sim, "_render_context_offscreen", None)
        if ctx is not None:
            ctx.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = int(bool(self.cfg.get("shadows", False)))
            ctx.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = int(bool(self.cfg.get("reflections", False)))

    def _step_sim(self, action: np.ndarray) -> None:
        self._raw_obs, _, _, _ = self.sim_env.step(action)

    def _render_cameras(self) -> dict:
        # robosuite renders with OpenGL's bottom-up row order: flip to upright.
        return {c: np.ascontiguousarray(self._raw_obs[f"{c}_image"][::-1]) for c in self.camera_names}

    def get_sim_state(self) -> np.ndarray:
        return np.array(self.sim_env.sim.get_state().flatten())

    def mujoco_data(self):
        return self.sim_env.sim.data._data

    def set_sim_state(self, state: np.ndarray) -> dict:
        """Restore a stored state (robomimic `states` layout) and return the re-rendered observation."""
        self.sim_env.sim.set_state_from_flattened(np.asarray(state))
        self.sim_env.sim.forward()
        self._raw_obs = self.sim_env._get_observations(force_update=True)
        return self._obs()

    def _mj(self):
        return self.sim_env.sim.model._model, self.sim_env.sim.data._data

    def _main_body(self):
        return next(iter(self._body_ids.values()), None)

    def model_xml(self) -> str:
        return self.sim_env.sim.model.get_xml()

    # -- observations ---------------------------------------------------------------------------
    def _eef(self) -> np.ndarray:
        return np.asarray(self._raw_obs["robot0_eef_pos"])

    def _proprio(self) -> np.ndarray:
        o = self._raw_obs
        return np.concatenate([o["robot0_eef_pos"], o["robot0_eef_quat"], o["robot0_gripper_qpos"]])

    def _pos(self, key: str) -> np.ndarray:
        return np.array(self.sim_env.sim.data.body_xpos[self._body_ids[key]])

    def _quat(self, key: str) -> np.ndarray:
        return _quat_xyzw(self.sim_env.sim.data.body_xquat[self._body_ids[key]])

    def _object(self) -> np.ndarray:
        d = self.sim_env.sim.data
        if self.task == "Door":
            e = self.sim_env
            handle = np.array(d.site_xpos[e.door_handle_site_id])
            return np.concatenate([handle, [d.qpos[e.hinge_qpos_addr], d.qpos[e.handle_qpos_addr]]])
        parts = []
        for k in self._objs:
            parts += [self._pos(k), self._quat(k)]
        if self.task == "PickPlaceCan":
            parts.append(self.target_pos)
        if self.task == "NutAssemblySquare":
            parts += [np.array(d.site_xpos[self._nut_handle_site]), self.peg_pos]
        return np.concatenate(parts)

    # -- language and progress ------------------------------------------------------------------
    def _language(self) -> tuple[str, list[str]]:
        if self.task == "Lift":
            c = f"the {self.colors[0]} cube"
            return f"lift {c}", [f"reach {c}", f"grasp {c}", f"lift {c}"]
        if self.task == "Stack":
            a, b = (f"the {c} cube" for c in self.colors)
            return f"stack {a} on {b}", [f"reach {a}", f"grasp {a}", f"lift {a}", f"place {a} on {b}", f"release {a}"]
        if self.task == "PickPlaceCan":
            c = "the can"
            return "pick up the can and put it in the bin", [
                f"reach {c}", f"grasp {c}", f"lift {c}", f"move {c} over the bin", f"release {c} into the bin"]
        if self.task == "NutAssemblySquare":
            n = "the square nut"
            return "put the square nut on the square peg", [
                f"reach {n}", f"grasp {n}", f"lift {n}", f"move {n} over the square peg", f"release {n} onto the peg"]
        return "open the door", ["reach the door handle", "turn the door handle", "pull the door open"]

    def _grasping(self, key: str) -> bool:
        return bool(self.sim_env._check_grasp(gripper=self._gripper, object_geoms=self._objs[key]))

    def _progress(self) -> tuple[int, bool]:
        e, eef = self.sim_env, self._eef()
        success = bool(e._check_success())
        if self.task == "Door":
            hinge, handle = e.sim.data.qpos[e.hinge_qpos_addr], e.sim.data.qpos[e.handle_qpos_addr]
            near = np.linalg.norm(eef - e.sim.data.site_xpos[e.door_handle_site_id]) < 0.06
            if success or hinge > 0.03:
                return 2, success
            return (1 if near or handle > 0.15 else 0), success
        key = next(iter(self._objs))
        pos = self._pos(key)
        grasped = self._grasping(key)
        lifted = pos[2] > self._rest_z(key) + 0.03
        if self.task == "Lift":
            if success:
                return 2, success
            if grasped:
                return 2, success
            return (1 if np.linalg.norm(eef - pos) < 0.03 else 0), success
        target = {"Stack": lambda: self._pos("cubeB"), "PickPlaceCan": lambda: self.target_pos,
                  "NutAssemblySquare": lambda: self.peg_pos}[self.task]()
        over = np.linalg.norm(pos[:2] - target[:2]) < (0.06 if self.task == "PickPlaceCan" else 0.02)
        if success:
            return 4, success
        if grasped:
            if not lifted:
                return 2, success
            return (4 if over and self._placed(pos, target) else 3), success
        if over:  # let go above the target: the object is settling onto it
            return 4, success
        reach_point = np.array(e.sim.data.site_xpos[self._nut_handle_site]) if self.task == "NutAssemblySquare" else pos
        return (1 if np.linalg.norm(eef - reach_point) < 0.03 else 0), success

    def _rest_z(self, key: str) -> float:
        half = {"cube": 0.02, "cubeA": 0.02, "can": 0.04, "nut": 0.01}.get(key, 0.02)
        base = self.table_z
        if self.task == "PickPlaceCan":
            base = self.sim_env.bin1_pos[2]
        return base + half

    def _placed(self, pos: np.ndarray, target: np.ndarray) -> bool:
        """Held object lowered onto its target: time to let go."""
        if self.task == "Stack":
            return bool(pos[2] < target[2] + 0.025 + 0.02 + 0.02)
        if self.task == "PickPlaceCan":
            return bool(pos[2] < target[2] + 0.12)
        return bool(pos[2] < self.table_z + 0.08)

"""Meta-World backend: the five tasks of EmbodiedGPT's control study (Sawyer arm, mocap xyz + gripper)."""
from __future__ import annotations

import mujoco
import numpy as np

from embodied.envs.base import EmbodiedEnv
from embodied.errors import EmbodiedError

CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")
# These fixed cameras are mounted upside down in Meta-World's scene: rotate their images by 180 degrees.
_ROTATED = {"corner", "corner2", "corner3", "corner4"}

# instruction, sub-goals; "pick" tasks follow reach/grasp/lift/<final>.
TASKS = {
    "assembly": (
        "put the round nut on the red peg",
        ["reach the round nut", "grasp the round nut", "lift the round nut", "place the round nut on the red peg"],
    ),
    "bin-picking": (
        "move the cube into the other bin",
        ["reach the cube", "grasp the cube", "lift the cube", "place the cube in the other bin"],
    ),
    "button-press-topdown": ("press the button from the top", ["reach the top of the button", "press the button down"]),
    "drawer-open": ("open the drawer", ["reach the drawer handle", "pull the drawer open"]),
    "hammer": (
        "hammer the nail into the wall",
        ["reach the hammer", "grasp the hammer", "lift the hammer", "hit the nail with the hammer"],
    ),
}


class MetaWorldEnv(EmbodiedEnv):
    backend = "metaworld"
    tasks = TASKS
    cameras_available = CAMERAS
    action_dim = 4

    def _load(self) -> None:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

        cls = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{self.task}-v3-goal-observable"]
        self.sim_env = cls(seed=0)
        # Randomise object and goal positions on every reset, from the env's seeded generator.
        self.sim_env._freeze_rand_vec = False
        self.sim_env.seeded_rand_vec = True
        self.sim_env.max_path_length = 10**6  # episode length is ours (self.horizon)
        self._set_fovy(self.cfg.get("fovy") or {})
        self._renderer = None
        if self.camera_names:
            self._renderer = mujoco.Renderer(self.sim_env.model, self.height, self.width)
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = int(bool(self.cfg.get("shadows", False)))
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = int(bool(self.cfg.get("reflections", False)))
        self._mw_obs, _ = self.sim_env.reset()
        self._obj0 = self._mw_obs[4:7].copy()

    def _set_fovy(self, fovy: dict) -> None:
        # The corner cameras' 45 degrees show the whole room: at 128 px a nut is a few pixels wide, so the
        # third-person protocol can narrow a camera onto the table.
        if not isinstance(fovy, dict):
            raise EmbodiedError(f"env.fovy={fovy!r}: expected camera -> degrees, e.g. env.fovy={{corner:30}}")
        m = self.sim_env.model
        for cam, deg in fovy.items():
            if cam not in CAMERAS:
                raise EmbodiedError(f"env.fovy: unknown camera '{cam}'; expected some of {list(CAMERAS)}")
            if not isinstance(deg, (int, float)) or isinstance(deg, bool) or not 0 < deg < 180:
                raise EmbodiedError(
                    f"env.fovy.{cam}={deg!r}: expected a vertical field of view in degrees, between 0 and 180"
                )
            m.cam_fovy[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, cam)] = float(deg)

    def close(self) -> None:
        # Free the GL context now: left to the garbage collector at exit, EGL teardown fails noisily.
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self.sim_env.close()

    def _reset_sim(self, sim_seed: int) -> None:
        self.sim_env.seed(sim_seed)
        self.sim_env.reset()
        # Meta-World's reset observation can predate its last object placement: recompute it.
        mujoco.mj_forward(self.sim_env.model, self.sim_env.data)
        self._mw_obs = self.sim_env._get_obs()
        self._obj0 = self._mw_obs[4:7].copy()
        self._mw_success = False

    def _step_sim(self, action: np.ndarray) -> None:
        self._mw_obs, _, _, _, info = self.sim_env.step(action.astype(np.float32))
        self._mw_success = bool(info["success"])

    def _render_cameras(self) -> dict:
        frames = {}
        for c in self.camera_names:
            self._renderer.update_scene(self.sim_env.data, camera=c)
            img = self._renderer.render()
            frames[c] = np.ascontiguousarray(img[::-1, ::-1]) if c in _ROTATED else img
        return frames

    def _state_spec(self):
        return mujoco.mjtState.mjSTATE_FULLPHYSICS

    def mujoco_data(self):
        return self.sim_env.data

    def get_sim_state(self) -> np.ndarray:
        m, d = self.sim_env.model, self.sim_env.data
        state = np.empty(mujoco.mj_stateSize(m, self._state_spec()))
        mujoco.mj_getState(m, d, state, self._state_spec())
        return state

    def set_sim_state(self, state: np.ndarray) -> dict:
        m, d = self.sim_env.model, self.sim_env.data
        mujoco.mj_setState(m, d, np.asarray(state, np.float64), self._state_spec())
        mujoco.mj_forward(m, d)
        self._mw_obs = self.sim_env._get_obs()
        return self._obs()

    def _mj(self):
        return self.sim_env.model, self.sim_env.data

    def _main_body(self):
        """The free body nearest to the task object's reported position."""
        m, d = self._mj()
        free = [
            b
            for b in range(m.nbody)
            if m.body_jntadr[b] >= 0 and m.jnt_type[m.body_jntadr[b]] == mujoco.mjtJoint.mjJNT_FREE
        ]
        if not free:
            return None
        return min(free, key=lambda b: np.linalg.norm(d.xpos[b] - self._mw_obs[4:7]))

    def model_xml(self) -> str:
        return ""

    def _proprio(self) -> np.ndarray:
        return self._mw_obs[:4]  # hand xyz, gripper opening

    def _object(self) -> np.ndarray:
        return self._mw_obs  # Meta-World's full 39-d state: its scripted experts read it

    def _language(self) -> tuple[str, list[str]]:
        instruction, subgoals = TASKS[self.task]
        return instruction, list(subgoals)

    def _progress(self) -> tuple[int, bool]:
        o = self._mw_obs
        hand, grip, obj, goal = o[:3], o[3], o[4:7], o[36:39]
        success = getattr(self, "_mw_success", False)
        last = len(TASKS[self.task][1]) - 1
        if success:
            return last, True
        # The hand's reference point sits a few centimetres above the fingertips.
        dz = hand[2] - obj[2]
        near = np.linalg.norm(hand[:2] - obj[:2]) < 0.04 and -0.03 < dz < 0.08
        if last == 1:  # reach, then push or pull the object
            moved = np.linalg.norm(obj - self._obj0) > 0.01
            return (1 if near or moved else 0), False
        held = near and grip < 0.8
        rise = obj[2] - self._obj0[2]
        over_goal = np.linalg.norm(obj[:2] - goal[:2]) < 0.05
        if held:
            return (3 if rise > 0.04 or rise > 0.01 and over_goal else 2 if rise > 0.01 else 1), False
        if rise > 0.01 and over_goal:
            return last, False  # let go over the goal: the object is settling there
        return (1 if near else 0), False

"""Scripted experts: robosuite tasks by OSC pose waypoints, Meta-World by its own scripted policies.

They read privileged state (obs["object"], obs["proprio"]) so they can run in the main process of a
parallel rollout while the simulators live in worker processes.
"""
from __future__ import annotations

import numpy as np

from embodied.envs.actor import Actor


def _yaw_from_xyzw(q: np.ndarray) -> float:
    x, y, z, w = q
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def _wrap(a: float, period: float) -> float:
    """Wrap an angle difference into [-period/2, period/2)."""
    return (a + period / 2) % period - period / 2


class ScriptedExpert(Actor):
    """Base: an Actor (envs/actor.py) with optional Gaussian action noise, drawn per episode from its seed."""

    def __init__(self, noise: float = 0.0, seed: int | None = None):
        self.noise = float(noise)
        self.base_seed = seed
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        self.phase, self.count, self.yaw_offset = 0, 0, 0.0

    def seed(self, episode_seed: int) -> None:
        """This episode's noise from its seed, so a demo depends on its seed alone."""
        self.rng = np.random.default_rng([episode_seed] if self.base_seed is None else [self.base_seed, episode_seed])

    def act(self, obs: dict, subgoal: str | None = None, info: dict | None = None) -> np.ndarray:
        action = np.asarray(self._act(obs), np.float64)
        if self.noise > 0:
            action[:-1] += self.rng.normal(0, self.noise, action.shape[0] - 1)
        return np.clip(action, -1, 1).astype(np.float32)

    def _next(self, done: bool) -> None:
        if done:
            self.phase += 1
            self.count = 0
        else:
            self.count += 1


class RobosuiteExpert(ScriptedExpert):
    """Waypoint state machine over OSC deltas: 1.0 action = 5 cm (position), 0.5 rad (rotation)."""

    gain, rot_gain, tol = 10.0, 2.0, 0.012

    def _move(self, eef, target, yaw_err=0.0, grip=-1.0) -> np.ndarray:
        a = np.zeros(7)
        a[:3] = np.clip(self.gain * (target - eef), -1, 1)
        a[5] = np.clip(self.rot_gain * yaw_err, -1, 1)
        a[6] = grip
        return a

    @staticmethod
    def _z_axis(q: np.ndarray) -> np.ndarray:
        """The z axis, in world coordinates, of the frame an xyzw quaternion rotates to."""
        x, y, z, w = q
        return np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])

    def _yaw_err(self, obs, target_yaw: float, period: float = np.pi / 2) -> float:
        eef_yaw = _yaw_from_xyzw(obs["proprio"][3:7])
        return _wrap(target_yaw - eef_yaw, period)

    def pick_and_place(self, obs, grasp, yaw, lift_z, place=None, place_z=None, yaw_period=np.pi / 2,
                       hover=0.08, grasp_dz=0.0, close_steps=12, carry_offset=None) -> np.ndarray:
        eef = obs["proprio"][:3]
        yerr = self._yaw_err(obs, yaw + self.yaw_offset, yaw_period)
        above = grasp + [0, 0, hover]
        p = self.phase
        if p == 0:  # hover above the grasp point, aligning the gripper with the object
            a = self._move(eef, above, yerr)
            self._next(np.linalg.norm(eef - above) < self.tol and abs(yerr) < 0.05 or self.count > 80)
        elif p == 1:  # descend
            tgt = grasp + [0, 0, grasp_dz]
            a = self._move(eef, tgt, yerr)
            if self.count > 40 and eef[2] > tgt[2] + 0.015:
                # Blocked (a finger on the object or a neighbour): retry across the other faces.
                self.yaw_offset += yaw_period / 2 if yaw_period < np.pi else np.pi / 2
                self.phase, self.count = 0, 0
            else:
                self._next(np.linalg.norm(eef - tgt) < 0.008 or self.count > 40)
        elif p == 2:  # close
            a = self._move(eef, grasp + [0, 0, grasp_dz], 0.0, grip=1.0)
            self._next(self.count >= close_steps)
        elif p == 3:  # lift
            if obs["proprio"][7] - obs["proprio"][8] < 0.01:  # fingers closed on nothing: missed, retry
                self.phase, self.count = 0, 0
                return self._move(eef, above, 0.0)
            tgt = np.array([eef[0], eef[1], lift_z])
            a = self._move(eef, tgt, 0.0, grip=1.0)
            self._next(abs(eef[2] - lift_z) < 0.015 or self.count > 60)
        elif place is None:
            a = self._move(eef, np.array([eef[0], eef[1], lift_z]), 0.0, grip=1.0)
        elif p == 4:  # carry over the target
            off = np.zeros(3) if carry_offset is None else carry_offset
            tgt = np.array([place[0], place[1], lift_z]) + [off[0], off[1], 0]
            a = self._move(eef, tgt, yerr if carry_offset is not None else 0.0, grip=1.0)
            self._next(np.linalg.norm((eef - tgt)[:2]) < 0.008 or self.count > 100)
        elif p == 5:  # lower onto it
            off = np.zeros(3) if carry_offset is None else carry_offset
            tgt = np.array([place[0] + off[0], place[1] + off[1], place_z])
            a = self._move(eef, tgt, 0.0, grip=1.0)
            self._next(abs(eef[2] - place_z) < 0.01 or self.count > 60)
        elif p == 6:  # release
            a = self._move(eef, eef, 0.0, grip=-1.0)
            self._next(self.count >= 8)
        else:  # retreat upward, gripper open
            a = self._move(eef, np.array([eef[0], eef[1], lift_z + 0.05]), 0.0, grip=-1.0)
        return a


class LiftExpert(RobosuiteExpert):
    def _act(self, obs):
        o = obs["object"]
        cube, yaw = o[0:3], _yaw_from_xyzw(o[3:7])
        if self.phase == 0:
            self.lift_z = cube[2] + 0.12  # the cube rises with the gripper: fix the height from its rest pose
        return self.pick_and_place(obs, cube, yaw, lift_z=self.lift_z)


class StackExpert(RobosuiteExpert):
    def _act(self, obs):
        o = obs["object"]
        a_pos, a_yaw, b_pos = o[0:3], _yaw_from_xyzw(o[3:7]), o[7:10]
        b_yaw = _yaw_from_xyzw(o[10:14])
        lift_z = b_pos[2] + 0.12
        place_z = b_pos[2] + 0.025 + 0.02 + 0.012
        return self.pick_and_place(obs, a_pos, a_yaw if self.phase < 4 else b_yaw, lift_z, b_pos, place_z)


class ReactiveStackExpert(RobosuiteExpert):
    """Stack where every action is a function of the current observation (no phase, no counters): a cone
    down onto cube A, the grasp axis chosen so that the fingers stay clear of cube B, cube A carried down a
    cone onto cube B, the hand kept level. So a learner can be asked what the expert would do in any state
    (DAgger), and a dropped cube is picked up again by the same rule."""

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
        down = -self._z_axis(p[3:7])  # OSC does not hold the hand level: turn it back
        a[3:5] = np.clip(self.rot_gain * np.array([down[1], -down[0]]), -1, 1)
        return a


class PickPlaceCanExpert(RobosuiteExpert):
    def _act(self, obs):
        o = obs["object"]
        can, target = o[0:3], o[7:10]
        eef_yaw = _yaw_from_xyzw(obs["proprio"][3:7])
        # A can is round: keep the current yaw.
        return self.pick_and_place(obs, can, eef_yaw, lift_z=target[2] + 0.25, place=target,
                                   place_z=target[2] + 0.12, grasp_dz=0.0)


class NutAssemblySquareExpert(RobosuiteExpert):
    def _act(self, obs):
        eef = obs["proprio"][:3]
        o = obs["object"]
        nut, nut_yaw, handle, peg = o[0:3], _yaw_from_xyzw(o[3:7]), o[7:10], o[10:13]
        lift_z = peg[2] + 0.125  # the nut's underside 1.5 cm above the peg's top (peg[2] + 0.1)
        p = self.phase
        if p < 4:  # grasp the handle across its width (fingers along the nut's y axis) and lift
            # 8 mm out from the handle's centre the fingers clear the nut's frame by as much.
            grasp = handle + 0.008 * (handle - nut) / np.linalg.norm(handle - nut)
            a = self.pick_and_place(obs, grasp, nut_yaw, lift_z, yaw_period=np.pi)
        else:
            # Steer the nut, not the hand: its centre onto the peg's axis, its sides parallel to the
            # peg's (the hole is only 13 mm wider than the peg).
            if p == 4 and self.count == 0:
                # Any quarter turn fits, but with the handle pointing away (+x) the hand is out of reach.
                self._yaw_goal = min((np.pi / 2, np.pi, -np.pi / 2), key=lambda g: abs(_wrap(g - nut_yaw, 2 * np.pi)))
            tgt = eef + 2 * np.array([peg[0] - nut[0], peg[1] - nut[1], 0])
            yerr = _wrap(self._yaw_goal - nut_yaw, 2 * np.pi)
            if p == 4:  # carry over the peg
                tgt[2] = lift_z
                a = self._move(eef, tgt, yerr, grip=1.0)
                settled = np.linalg.norm(nut - self._prev_nut) < 0.001  # not swinging past the peg
                self._next(np.linalg.norm((peg - nut)[:2]) < 0.004 and abs(yerr) < 0.05 and settled
                           or self.count > 100)
            elif p == 5:  # lower it down the peg
                if self.count > 30 and nut[2] > peg[2] + 0.05:  # caught on the peg's top: realign
                    self.phase, self.count = 4, 1
                tgt[2] = eef[2] - 0.02
                a = self._move(eef, tgt, yerr, grip=1.0)
                self._next(nut[2] < peg[2] - 0.01 or self.count > 60)
            elif p == 6:  # release
                a = self._move(eef, eef, grip=-1.0)
                self._next(self.count >= 8)
            else:  # retreat upward, gripper open
                a = self._move(eef, np.array([eef[0], eef[1], lift_z]), grip=-1.0)
        # OSC does not hold the orientation and the nut's weight tips the hand over: keep the hand
        # pointing down until the grasp, then the nut level.
        if p < 3:
            z = -self._z_axis(obs["proprio"][3:7])
        else:
            z = self._z_axis(o[3:7])
        a[3:5] = np.clip(self.rot_gain * np.array([z[1], -z[0]]), -1, 1)
        self._prev_nut = nut
        return a


class DoorExpert(RobosuiteExpert):
    tilt = -0.3  # fingertips leaned towards the door (rad about x)

    def _act(self, obs):
        eef = obs["proprio"][:3]
        o = obs["object"]
        handle, hinge, latch = o[0:3], o[3], o[4]
        # The fingers close along y and the hand is ~20 cm wide: to straddle the lever without hitting
        # the door, lean the hand away from it and grasp 1 cm off the lever's centre.
        grasp = handle + [0, 0.01, 0]
        p = self.phase
        if p == 0:  # above the lever's tip
            tgt = grasp + [0, 0, 0.06]
            a = self._move(eef, tgt, self._yaw_err(obs, 0.0))
            self._next(np.linalg.norm(eef - tgt) < self.tol or self.count > 80)
        elif p == 1:  # descend around it
            a = self._move(eef, grasp, self._yaw_err(obs, 0.0))
            self._next(np.linalg.norm(eef - grasp) < 0.008 or self.count > 40)
        elif p == 2:  # grasp
            a = self._move(eef, grasp, grip=1.0)
            self._next(self.count >= 10)
        elif obs["proprio"][7] - obs["proprio"][8] < 0.01:  # fingers closed on nothing: grasp again
            self.phase, self.count = 0, 0
            a = self._move(eef, grasp + [0, 0, 0.06])
        elif p == 3:  # press the lever down
            a = self._move(eef, eef + [0, 0, -0.05], grip=1.0)
            self._next(latch > 1.2 or self.count > 40)
        else:  # pull the door towards the robot along the hinge arc, keeping the lever down
            d = np.array([-np.sin(hinge), np.cos(hinge), 0])
            a = self._move(eef, eef + 0.05 * d + [0, 0, -0.02], grip=1.0)
        if p < 3:
            a[3] = np.clip(self.rot_gain * (self.tilt - self._tilt(obs)), -1, 1)
        return a

    @staticmethod
    def _tilt(obs) -> float:
        """Lean of the fingers about x: 0 when pointing straight down, > 0 towards +y."""
        x, y, z, w = obs["proprio"][3:7]
        return float(np.arctan2(2 * (y * z - w * x), 2 * (x * x + y * y) - 1))


class MetaWorldExpert(ScriptedExpert):
    """Meta-World's own scripted policy for the task, reading the 39-d state in obs["object"]."""

    def __init__(self, task: str, noise: float = 0.0, seed: int | None = None):
        from metaworld import policies

        name = "Sawyer" + "".join(w.capitalize() for w in task.split("-")) + "V3Policy"
        self.policy = getattr(policies, name)()
        super().__init__(noise, seed)

    def _act(self, obs):
        return self.policy.get_action(np.asarray(obs["object"], np.float64))

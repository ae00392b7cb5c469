"""A scripted controller that does what the sub-goal it is given says, and nothing else.

The task experts in scripted.py run the whole task whatever they are told. To score a planner in the loop,
the controller must instead execute the planner's current sub-goal faithfully: "place the red cube on the
yellow cube" with no yellow cube in the scene, or "place" with the cube lying on the table, then fails as it
would on a robot, and a correct plan succeeds because the execution is perfect. `SkillExpert` parses the
sub-goal (verb and objects), finds the named objects in the scene and runs that skill:

    reach O     down a cone onto O's grasp point, gripper open          (holds there)
    grasp O     the same, then close on O                              (holds closed)
    lift O      close and rise                                          (holds at the lift height)
    place O on T / move O over T   carry O (or the empty hand) down a cone onto T   (holds there, closed)
    release O   open, then rise                                         (holds above)

Every action is a function of the observation and the sub-goal (no phases, no counters, as
ReactiveStackExpert), so any sub-goal can start from any state, and each skill settles at a fixed point
while the planner decides whether it is done. A sub-goal naming an object the scene does not have, or a verb
it does not know, holds the arm still. Names are read from the simulator's own sub-goals (`info`), the only
privileged language it reads; the robosuite tasks Lift, Stack and PickPlaceCan have one.
"""
from __future__ import annotations

import numpy as np

from embodied.datasets.egocot import subgoal_action
from embodied.errors import EmbodiedError
from embodied.policies.scripted import ScriptedExpert, _wrap, _yaw_from_xyzw

TASKS = ("Lift", "Stack", "PickPlaceCan")
TABLE_Z = 0.8  # robosuite's table top (table_offset z) for Lift and Stack


def _z_axis(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])


class SkillExpert(ScriptedExpert):
    gain, rot_gain = 10.0, 2.0
    finger_yaw = np.pi / 2  # the fingers close across the hand's yaw direction
    lift_speed = 0.3  # action units (1 = 5 cm commanded per step)

    def __init__(self, task: str, noise: float = 0.0, seed: int | None = None):
        if task not in TASKS:
            raise EmbodiedError(f"expert=skill: no sub-goal-following expert for robosuite task '{task}' "
                                f"(only {', '.join(TASKS)})")
        self.task = task
        super().__init__(noise, seed)

    def reset(self) -> None:
        super().reset()
        self.grip = -1.0  # held while the sub-goal cannot be executed

    def act(self, obs: dict, subgoal: str | None = None, info: dict | None = None) -> np.ndarray:
        self._subgoal, self._info = subgoal or "", info or {}  # the scene's object names come from the simulator
        return super().act(obs, subgoal)

    # -- the scene ---------------------------------------------------------------------------------
    def _objects(self, obs: dict) -> dict[str, tuple[np.ndarray, float]]:
        """Name -> (position, yaw) of the scene's objects and targets, named as the simulator names them."""
        sim = [subgoal_action(s)[1] for s in self._info.get("subgoals", [])]
        names = max(sim, key=len) if sim else []  # the sub-goal naming both the object and its target
        o = obs["object"]
        places = [(o[0:3], _yaw_from_xyzw(o[3:7]))]
        if self.task == "Stack":
            places.append((o[7:10], _yaw_from_xyzw(o[10:14])))
        elif self.task == "PickPlaceCan":
            places.append((o[7:10], 0.0))
        return dict(zip(names, places))

    def _act(self, obs: dict) -> np.ndarray:
        verb, args = subgoal_action(self._subgoal)
        objects = self._objects(obs)
        target = args[1] if len(args) > 1 else None
        known = bool(args) and args[0] in objects and (verb not in ("place", "move") or target in objects)
        p = obs["proprio"]
        eef = p[:3]
        a = np.zeros(7)
        if not known or verb not in ("reach", "grasp", "lift", "place", "move", "release"):
            a[6] = self.grip  # nothing this controller can do: hold still
            return a
        obj, yaw = objects[args[0]]
        gap = p[7] - p[8]
        holding = np.linalg.norm(obj - eef) < 0.02 and 0.01 < gap < 0.075
        if verb in ("reach", "grasp"):
            a[:3], yerr, at_grasp = self._approach(eef, p, obj, yaw, objects, args[0])
            a[5] = np.clip(self.rot_gain * yerr, -1, 1)
            a[6] = 1.0 if verb == "grasp" and (at_grasp or holding) else -1.0
        elif verb == "lift":
            a[:3] = np.clip(self.gain * (np.array([eef[0], eef[1], self._lift_z(objects)]) - eef), -1, 1)
            a[2] = min(a[2], self.lift_speed)  # a careful lift (Lift's task is done 2 cm up: see it happen)
            a[6] = 1.0
        elif verb in ("place", "move"):
            goal, _ = objects[target]
            # Steer the held object, not the hand, onto the target; an empty hand goes there on its own.
            moved = obj if holding else eef
            place = goal + [0, 0, self._place_height()]
            d = np.linalg.norm((moved - place)[:2])
            z = place[2] + min(self._lift_z(objects) - place[2], max(0.0, self._cone() * (d - 0.004)))
            move = np.array([place[0] - moved[0], place[1] - moved[1], z - moved[2]])
            if moved[2] < z - 0.03:
                move[:2] = 0.0  # rise before crossing over
            a[:3] = np.clip(self.gain * move, -1, 1)
            a[6] = 1.0
        else:  # release: open, and once open rise clear of the object
            if gap > 0.06 or not holding:
                a[:3] = np.clip(self.gain * (np.array([eef[0], eef[1], self._lift_z(objects)]) - eef), -1, 1)
            a[6] = -1.0
        if self.task != "PickPlaceCan":  # (over the far bin the arm cannot keep the hand level and reach)
            down = -_z_axis(p[3:7])  # OSC does not hold the hand level: turn it back
            a[3:5] = np.clip(self.rot_gain * np.array([down[1], -down[0]]), -1, 1)
        self.grip = a[6]
        return a

    def _approach(self, eef, p, obj, yaw, objects, name):
        """Move down a cone onto the object's grasp point, the grasp axis turned so that the fingers stay clear
        of a neighbouring object; returns (move, yaw error, at the grasp point)."""
        d = np.linalg.norm((obj - eef)[:2])
        z = obj[2] + min(0.10, max(0.0, 2.0 * (d - 0.004)))
        move = np.array([obj[0] - eef[0], obj[1] - eef[1], z - eef[2]])
        if eef[2] < z - 0.03:
            move[:2] = 0.0
        eef_yaw = _yaw_from_xyzw(p[3:7])
        if self.task == "PickPlaceCan":  # round: any yaw grasps it
            yerr = 0.0
        else:
            others = [pos for n, (pos, _) in objects.items() if n != name]
            if others:
                ab = np.arctan2(others[0][1] - obj[1], others[0][0] - obj[0])
                goal = max((yaw, yaw + np.pi / 2), key=lambda g: abs(np.sin(g + self.finger_yaw - ab)))
            else:
                goal = yaw
            yerr = _wrap(goal - eef_yaw, np.pi if others else np.pi / 2)
        # The can stands in a bin whose floor can stop the fingertips a little above its centre.
        tol = 0.015 if self.task == "PickPlaceCan" else 0.01
        at_grasp = d < 0.008 + tol - 0.01 and eef[2] - obj[2] < tol and abs(yerr) < 0.1
        return np.clip(self.gain * move, -1, 1), yerr, at_grasp

    def _cone(self) -> float:
        """Height gained per metre off the target: the bin's walls need a steep descent, a cube a gentle one."""
        return 8.0 if self.task == "PickPlaceCan" else 2.0

    def _lift_z(self, objects) -> float:
        if self.task == "PickPlaceCan":
            return float(list(objects.values())[-1][0][2] + 0.2)  # over the bin's walls, within the arm's reach
        return TABLE_Z + 0.14

    def _place_height(self) -> float:
        """The held object's centre above the target's: a cube resting on a cube, or the can above the bin."""
        return 0.045 + 0.004 if self.task == "Stack" else 0.10

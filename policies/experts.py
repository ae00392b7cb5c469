"""Choosing a task's scripted expert: the waypoint state machines and the reactive Stack expert
(policies/scripted.py) and the skill controller that does what a sub-goal says (policies/skills.py)."""
from __future__ import annotations

from embodied.errors import EmbodiedError
from embodied.policies.scripted import (
    DoorExpert,
    LiftExpert,
    MetaWorldExpert,
    NutAssemblySquareExpert,
    PickPlaceCanExpert,
    ReactiveStackExpert,
    ScriptedExpert,
    StackExpert,
)
from embodied.policies.skills import TASKS, SkillExpert

_ROBOSUITE = {"Lift": LiftExpert, "Stack": StackExpert, "PickPlaceCan": PickPlaceCanExpert,
              "Door": DoorExpert, "NutAssemblySquare": NutAssemblySquareExpert}
_REACTIVE = {"Stack": ReactiveStackExpert}
EXPERT_KINDS = ("waypoint", "reactive", "skill")


def follows_subgoal(backend: str, task: str, kind: str) -> bool:
    """Whether make_expert(..., kind) does what the sub-goal it is given says (else it runs the whole task)."""
    return kind == "skill" and backend == "robosuite" and task in TASKS


def make_expert(backend: str, task: str, noise: float = 0.0, seed: int | None = None,
                kind: str = "waypoint") -> ScriptedExpert:
    """The scripted expert for a task. `kind`: "waypoint" (a state machine over waypoints, every task),
    "reactive" (a function of the observation alone; robosuite Stack) or "skill" (executes the sub-goal it is
    given, so that a planner's mistakes show: robosuite Lift, Stack and PickPlaceCan; any other task gets its
    waypoint expert, which runs the whole task whatever it is told: see `follows_subgoal`)."""
    if kind not in EXPERT_KINDS:
        raise EmbodiedError(f"expert: '{kind}' is not one of {list(EXPERT_KINDS)}")
    if follows_subgoal(backend, task, kind):
        return SkillExpert(task, noise=noise, seed=seed)
    if kind == "reactive":
        if backend != "robosuite" or task not in _REACTIVE:
            raise EmbodiedError(f"expert: no reactive expert for {backend} task '{task}' (only robosuite "
                                f"{', '.join(_REACTIVE)})")
        return _REACTIVE[task](noise=noise, seed=seed)
    if backend == "robosuite" and task in _ROBOSUITE:
        return _ROBOSUITE[task](noise=noise, seed=seed)
    if backend == "metaworld":
        return MetaWorldExpert(task, noise=noise, seed=seed)
    raise EmbodiedError(f"policy: no scripted expert for {backend} task '{task}'")

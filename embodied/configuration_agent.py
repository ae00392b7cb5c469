"""The closed loop's typed configuration (the loop is in embodied/agent.py); configs/agent/default.yaml holds only
what it changes, and every key can be set on the command line (`agent.check_every=4`)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AgentConfig:
    """When the agent looks, checks and re-plans.

    Args:
        camera: the camera the planner watches, or several (one clip each); null: the last camera in
            env.cameras (the wrist).
        clip_len: frames per clip.
        clip_stride: env steps between a clip's frames.
        check_every: steps between "is it done?" checks. A multiple of clip_stride x the ViT's temporal patch (2)
            moves the clip by whole time slots, so the planner re-encodes only the newest slot.
        subgoal_budget: steps before a sub-goal counts as failed (the last one: steps since it was judged done).
        max_replans: re-plans per episode.
        replan: false: the no-replanning ablation (failures are logged, the plan stands).
        background_checks: checks run beside the next env step (planners/background.py) and their decision applies
            one step later; false: in line.
        ground_replans: after "X is no longer done", the experience names the earliest step of the first plan the
            detector says is undone (X, or one before it), and the new plan starts no later than that step (the
            planner alone re-grasped a cube that had fallen out of reach).
    """

    camera: str | list[str] | None = None
    clip_len: int = 8
    clip_stride: int = 3
    check_every: int = 6
    subgoal_budget: int = 80
    max_replans: int = 2
    replan: bool = True
    background_checks: bool = True
    ground_replans: bool = True

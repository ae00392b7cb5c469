"""Several closed loops sharing one planner: their plans and checks answered in batches (planners/batching.py)
must be the answers each would get alone, in real simulation with the shipped tiny planner."""
import json

import numpy as np
import pytest
from conftest import run_cli

from embodied.agent import AgentConfig, EmbodiedAgent
from embodied.envs.runner import run_episodes
from embodied.planners import make_planner
from embodied.planners.batching import PlanBatcher
from embodied.policies import make_expert


@pytest.fixture(scope="module")
def planner():
    return make_planner("egpt", "tiny/planner")


def test_batched_plans_and_checks_equal_one_by_one(planner):
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 255, (8, 128, 128, 3), dtype=np.uint8) for _ in range(3)]
    instructions = ["stack the red cube on the green cube", "lift the blue cube", ""]
    experiences = ["", "Step 3 'lift the blue cube' failed: not done after 81 steps.", ""]
    alone = [planner.replan(c, i, e) for c, i, e in zip(clips, instructions, experiences)]
    together = planner.replan_batch(clips, instructions, experiences)
    assert [p.to_text() for p in together] == [p.to_text() for p in alone]
    asked = [["reach the red cube", "grasp the red cube"], ["lift the blue cube"],
             ["place the red cube on the green cube", "release the red cube"]]  # release: the LLM answers
    for frames in ([{c: clip[-1] for c in planner.detector_cameras} for clip in clips], [None] * 3):
        alone = [planner.are_done(c, s, None, f) for c, s, f in zip(clips, asked, frames)]
        assert planner.are_done_batch(clips, asked, frames) == alone


def test_agents_sharing_a_batcher_act_as_they_would_alone(planner):
    """Three Lift episodes stepped in lockstep: with the batcher, each agent's plans, checks and decisions are
    those of the same agents asking one by one, and the calls did arrive together (batches of 3)."""
    env_cfg = {"backend": "robosuite", "task": "Lift", "cameras": ["agentview", "robot0_eye_in_hand"],
               "height": 64, "width": 64, "horizon": 40}
    cfg = AgentConfig(camera="robot0_eye_in_hand")
    batcher = PlanBatcher(planner)
    runs = {}
    for name, shared, together in [("alone", planner, None), ("batched", batcher, batcher.run)]:
        res = run_episodes(env_cfg, lambda: EmbodiedAgent(shared, make_expert("robosuite", "Lift", kind="skill"), cfg),
                           seeds=[0, 1, 2], workers=3, asynchronous=False, together=together)
        runs[name] = {r["seed"]: (r["agent_log"], r["checks"], r["success"], r["steps"]) for r in res}
    assert runs["batched"] == runs["alone"]
    assert ("plan", 3) in batcher.batches and ("done", 3) in batcher.batches
    assert all(size <= 3 for _, size in batcher.batches)


def test_a_call_outside_run_is_answered_alone(planner):
    batcher = PlanBatcher(planner)
    clip = np.zeros((8, 128, 128, 3), np.uint8)
    assert batcher.plan(clip, "lift the red cube").to_text() == planner.plan(clip, "lift the red cube").to_text()
    later = batcher.are_done_later(clip, ["lift the red cube"])
    assert later.result() == planner.are_done(clip, ["lift the red cube"])
    assert batcher.batches == [("plan", 1), ("done", 1)]


def test_eval_loop_with_batched_planning(tmp_path):
    r = run_cli("eval-loop", "env=robosuite/lift", "planners=[egpt]", "conditions=[none]", "n=2", "workers=2",
                "planner.batch=true", "env.horizon=20", "video_episodes=0", "plots=false", f"out={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    recs = [json.loads(line) for line in (tmp_path / "none" / "egpt" / "episodes.jsonl").read_text().splitlines()]
    assert sorted(r["seed"] for r in recs) == [500000, 500001] and all(r["first_plan"] for r in recs)

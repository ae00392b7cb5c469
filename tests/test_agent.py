"""The closed loop on real simulation: plan, sub-goal progress from the video, failure detection,
experience summaries and re-planning; and the EmbodiedGPT planner behind the same interface."""
import json

import numpy as np
import pytest
from conftest import run_cli

from embodied.agent import AgentConfig, EmbodiedAgent
from embodied.envs import make_env
from embodied.envs.runner import run_episode
from embodied.planners import BlindPlanner, EmbodiedGPTPlanner, OraclePlanner, Plan
from embodied.policies import make_expert

DROP = {"kind": "drop", "at_subgoal": "lift", "delay": 3}


def stack_env(perturb=True):
    return make_env({"backend": "robosuite", "task": "Stack", "cameras": ["robot0_eye_in_hand"], "height": 64,
                     "width": 64, "horizon": 260, **({"perturbation": DROP} if perturb else {})})


@pytest.mark.parametrize("replan", [True, False])
def test_drop_is_detected_and_replanning_recovers(replan):
    env = stack_env()
    agent = EmbodiedAgent(OraclePlanner(), make_expert("robosuite", "Stack"),
                          AgentConfig(camera="robot0_eye_in_hand", replan=replan))
    info = run_episode(env, agent, seed=3)
    events = [e["event"] for e in agent.log]
    assert events[0] == "plan" and "done" in events
    failure = next(e for e in agent.log if e["event"] == "failure")
    assert "is no longer done" in failure["reason"] and failure["reason"].startswith("Step ")
    assert info["perturbation"]["applied"]
    if replan:
        assert "replan" in events and agent.replans >= 1 and info["success"]
    else:
        assert "replan" not in events and agent.replans == 0
    env.close()


class PlacesAfterADrop(OraclePlanner):
    """The simulator's detector, but the re-plan the shipped planner once made after a drop: go on placing."""

    def replan(self, video, instruction, experience, info=None):
        return Plan.from_subgoals(instruction, list(info["subgoals"])[3:])


@pytest.mark.parametrize("ground", [True, False])
def test_a_replan_after_a_drop_is_held_to_what_is_undone(ground):
    env = stack_env()
    agent = EmbodiedAgent(PlacesAfterADrop(), make_expert("robosuite", "Stack", kind="skill"),
                          AgentConfig(camera="robot0_eye_in_hand", ground_replans=ground))
    info = run_episode(env, agent, seed=3)
    replan = next(e for e in agent.log if e["event"] == "replan")
    if ground:  # it starts where the simulator is (the detector's answers), re-grasping, and the episode succeeds
        assert replan["grounded_from"].startswith("place") and replan["plan"][0].split()[0] in ("reach", "grasp")
        failure = next(e for e in agent.log if e["event"] == "failure")
        assert (
            failure["undone"] == replan["plan"][0] and f"'{failure['undone']}' is no longer done" in failure["reason"]
        )
        assert info["success"]
    else:  # placing a cube it does not hold: the episode fails
        assert replan["plan"][0].startswith("place") and "grounded_from" not in replan and not info["success"]
    env.close()


@pytest.mark.parametrize("background", [True, False])
def test_agent_without_perturbation_follows_the_plan(background):
    env = stack_env(perturb=False)
    agent = EmbodiedAgent(OraclePlanner(), make_expert("robosuite", "Stack"),
                          AgentConfig(camera="robot0_eye_in_hand", background_checks=background))
    info = run_episode(env, agent, seed=5)
    assert info["success"] and agent.replans == 0
    done = [e["subgoal"] for e in agent.log if e["event"] == "done"]
    assert done == info["subgoals"][: len(done)] and len(done) >= 3
    frame = agent.annotate(np.zeros((64, 64, 3), np.uint8))
    assert frame.shape == (256, 256, 3) and frame[:10].any()  # the sub-goal is written on the frame
    env.close()


@pytest.mark.parametrize("cls", [EmbodiedGPTPlanner, BlindPlanner])
def test_embodiedgpt_planner_in_the_loop(cls):
    """A random small model plans badly, but the loop must run on whatever it writes (partial plans too)."""
    import torch
    from test_model import PLAN, small_cfg

    from embodied.modeling import EmbodiedGPT
    from embodied.tokenizer import train_tokenizer

    torch.manual_seed(0)
    model = EmbodiedGPT(small_cfg(), tokenizer=train_tokenizer([PLAN] * 5, 300))
    planner = cls(model, max_new_tokens=12)
    clip = np.zeros((8, 64, 64, 3), np.uint8)
    plan = planner.plan(clip, "stack the red cube on the green cube")
    assert isinstance(plan, Plan)
    assert isinstance(planner.is_done(clip, "reach the red cube"), bool)
    env = make_env({"backend": "robosuite", "task": "Lift", "cameras": ["robot0_eye_in_hand"], "height": 64,
                    "width": 64, "horizon": 12})
    agent = EmbodiedAgent(planner, make_expert("robosuite", "Lift"),
                          AgentConfig(camera="robot0_eye_in_hand", check_every=4, subgoal_budget=6))
    threads = torch.get_num_threads()
    run_episode(env, agent, seed=0)
    assert agent.log[0]["event"] == "plan"
    assert torch.get_num_threads() == threads  # the background check gives its one-thread setting back
    env.close()


def test_rollout_job_with_planner_writes_annotated_videos(tmp_path):
    r = run_cli("rollout", "env=robosuite/stack", "n=1", f"out={tmp_path}", "planner.type=oracle", "policy.type=expert",
                "env.height=64", "env.width=64", "env.perturbation={kind: drop, at_subgoal: lift, delay: 3}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "replan" in r.stdout and "no longer done" in r.stdout
    rec = json.loads((tmp_path / "episodes.jsonl").read_text().splitlines()[0])
    assert rec["replans"] >= 1 and rec["first_plan"][0].startswith("reach")
    from embodied.datasets.video import read_video

    frames = read_video(tmp_path / "videos" / "seed01000.mp4")
    assert frames.shape[1:] == (256, 512, 3)  # the third-person view beside the planner's (wrist) camera
    assert (tmp_path / "results.md").read_text().count("| Stack |") == 1


def test_the_last_step_is_reported_done_once_and_its_budget_still_counts():
    """The last step stays current after it is judged done (the env ends the episode when the task is done),
    and every later check judges it again: the log reports it once, and a detector that keeps saying "done"
    while the episode goes on does not switch off the step budget."""
    agent = EmbodiedAgent(OraclePlanner(), make_expert("robosuite", "Lift"),
                          AgentConfig(camera="wrist", subgoal_budget=80, replan=False))
    agent._new_plan(Plan.from_subgoals("lift the red cube", ["reach the red cube", "grasp the red cube",
                                                             "lift the red cube"]), "plan")
    for _ in range(6):
        agent._decide([agent.subgoal], [True, True], "", None)
        agent.steps_in_subgoal += 6  # the steps between two checks
    assert [e["subgoal"] for e in agent.log if e["event"] == "done"] == [s.text for s in agent.plan.subgoals]
    assert agent.finished and agent.subgoal == "lift the red cube"
    assert not any(e["event"] == "failure" for e in agent.log)
    agent.steps_in_subgoal = 81  # still "done", but the episode has gone on for the whole budget
    agent._decide([agent.subgoal], [True, True], "", None)
    assert agent.log[-1]["event"] == "failure" and agent.log[-1]["reason"] == (
        "Step 3 'lift the red cube' failed: not done after 81 steps.")
    agent._decide([agent.subgoal], [False, True], "", None)  # judged undone: it may be reported again
    agent._decide([agent.subgoal], [True, True], "", None)
    assert [e["subgoal"] for e in agent.log if e["event"] == "done"][-2:] == ["lift the red cube"] * 2


def test_agent_watches_the_cameras_its_planner_was_trained_on():
    from embodied.errors import EmbodiedError
    from embodied.jobs.rollout import planner_camera

    env_cfg = {"backend": "robosuite", "task": "Lift", "cameras": ["agentview", "robot0_eye_in_hand"], "height": 48,
               "width": 48, "horizon": 10}
    planner = OraclePlanner()
    assert planner_camera(None, planner, env_cfg) == "robot0_eye_in_hand"  # knows nothing: the wrist
    planner.cameras = ["agentview", "robot0_eye_in_hand"]
    cams = planner_camera(None, planner, env_cfg)
    assert cams == ["agentview", "robot0_eye_in_hand"]
    assert planner_camera("agentview", planner, env_cfg) == "agentview"  # agent.camera decides
    with pytest.raises(EmbodiedError, match=r"trained on cameras \['agentview', 'robot0_eye_in_hand'\]"):
        planner_camera(None, planner, {**env_cfg, "cameras": ["robot0_eye_in_hand"]})
    env = make_env(env_cfg)
    agent = EmbodiedAgent(planner, make_expert("robosuite", "Lift"), AgentConfig(camera=cams))
    run_episode(env, agent, seed=0)
    assert agent.clip().shape == (2, 8, 48, 48, 3)  # one clip per camera
    env.close()

"""The loop-quality evaluation: the skill expert does what it is told, the scores are right against the
simulator, and the eval-loop job writes its outputs and resumes."""
import json

import numpy as np
from conftest import run_cli

from embodied.agent import AgentConfig, EmbodiedAgent
from embodied.envs import make_env
from embodied.envs.runner import run_episode, run_episodes
from embodied.metrics import aggregate, score_episode
from embodied.planners import OraclePlanner
from embodied.policies import make_expert

STACK = {"backend": "robosuite", "task": "Stack", "cameras": [], "horizon": 200, "variety": True}


def test_skill_expert_follows_the_simulators_subgoals_to_success():
    env = make_env(STACK)
    for seed in (0, 1):
        info = run_episode(env, make_expert("robosuite", "Stack", kind="skill"), seed)
        assert info["success"], seed
    env.close()


def _drive(env, subgoal: str, steps: int, seed: int = 0):
    expert = make_expert("robosuite", "Stack", kind="skill")
    expert.reset()
    obs, info = env.reset(seed=seed)
    start = obs["proprio"][:3].copy()
    for _ in range(steps):
        obs, _, _, _, info = env.step(expert.act(obs, subgoal.format(*info["instruction"].split()[2:7:4]), info))
    return start, obs, info


def test_skill_expert_does_only_what_the_subgoal_says():
    env = make_env(STACK)
    # A cube the scene does not have: the arm holds still.
    start, obs, _ = _drive(env, "reach the chartreuse cube", 30)
    assert np.linalg.norm(obs["proprio"][:3] - start) < 0.01
    # "place" with the cube still on the table: the empty hand goes over the other cube, nothing is stacked.
    _, obs, info = _drive(env, "place the {} cube on the {} cube", 80)
    assert not info["success"] and info["subgoal_index"] == 0
    assert np.linalg.norm(obs["proprio"][:2] - obs["object"][7:9]) < 0.03
    # "grasp" the named (top) cube: the simulator sees it held.
    _, _, info = _drive(env, "grasp the {} cube", 60)
    assert info["subgoal_index"] == 2  # grasped: "lift" is next
    env.close()


def _record(log, checks, trace, subgoals, **kw):
    return {"subgoals": subgoals, "subgoal_trace": trace, "agent_log": log, "checks": checks, "success": True,
            "replans": sum(e["event"] == "replan" for e in log), **kw}


def test_scores_against_the_simulator():
    sub = ["reach the red cube", "grasp the red cube", "lift the red cube"]
    trace = [[0, 0, False], [10, 1, False], [20, 2, False], [30, 0, False], [50, 1, False], [60, 2, False],
             [70, 2, True]]
    log = [{"t": 0, "event": "plan", "plan": sub},
           {"t": 13, "event": "done", "subgoal": sub[0]},           # 3 steps late
           {"t": 19, "event": "done", "subgoal": sub[1]},           # too early: the simulator says not yet
           {"t": 37, "event": "failure", "cause": "regressed", "undone": sub[1], "clip_t": 36},  # true: it fell at 30
           {"t": 37, "event": "replan", "plan": sub},               # right: the simulator is back at reach
           {"t": 55, "event": "done", "subgoal": sub[0]},
           {"t": 58, "event": "failure", "cause": "regressed", "undone": sub[0], "clip_t": 57},  # spurious
           {"t": 58, "event": "replan", "plan": sub[2:]}]           # wrong: grasp is in progress
    checks = [[6, [sub[0]], [False]], [12, [sub[0]], [True]], [18, [sub[1], sub[0]], [True, True]],
              [36, [sub[2], sub[1]], [False, False]], [42, [sub[0]], [False]], [54, [sub[0]], [True]],
              [57, [sub[1], sub[0]], [False, False]]]
    s = score_episode(_record(log, checks, trace, sub))
    assert s["first_plan_exact"] and s["first_plan_step_acc"] == 1.0
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (2, 1, 0, 4)
    assert s["by_step"] == {
        "reach": {"tp": 2, "fp": 0, "fn": 0, "tn": 2},
        "grasp": {"tp": 0, "fp": 1, "fn": 0, "tn": 1},
        "lift": {"tp": 0, "fp": 0, "fn": 0, "tn": 1},
    }  # the same checks, per step
    assert s["delays"] == [3, 5]  # reach at t=13 (done since 10), reach again at 55 (done since 50)
    assert s["spurious"] == 1 and s["failures"] == 2
    assert (s["replans_scored"], s["replan_first_ok"]) == (2, 1)
    m = aggregate([s, score_episode(_record(log[:1], [], trace, sub, success=False))])
    assert m["episodes"] == 2 and m["successes"] == 1 and m["episodes_with_spurious_failure"] == 1
    assert abs(m["done"]["precision"] - 2 / 3) < 1e-9 and m["done"]["recall"] == 1.0
    assert m["done_by_step"]["reach"]["f1"] == 1.0 and m["done_by_step"]["grasp"]["f1"] == 0.0
    wrong = score_episode(_record([{"t": 0, "event": "plan", "plan": ["reach the red cube", "grasp the blue cube",
                                                                       "lift the red cube"]}], [], trace, sub))
    assert not wrong["first_plan_exact"] and abs(wrong["first_plan_step_acc"] - 2 / 3) < 1e-9


def test_runner_records_the_simulators_progress_and_agent_checks():
    env_cfg = {"backend": "robosuite", "task": "Lift", "cameras": ["robot0_eye_in_hand"], "height": 48, "width": 48,
               "horizon": 120, "variety": True}
    agent = lambda: EmbodiedAgent(OraclePlanner(), make_expert("robosuite", "Lift", kind="skill"),  # noqa: E731
                                  AgentConfig(camera="robot0_eye_in_hand"))
    res = run_episodes(env_cfg, agent, seeds=[3])[0]
    assert res["success"]
    trace = res["subgoal_trace"]
    assert trace[0][:2] == [0, 0] and trace[-1][2] is True
    assert [row[1] for row in trace] == sorted(row[1] for row in trace)  # unperturbed: the index only rises
    assert res["checks"] and all(len(c[1]) == len(c[2]) for c in res["checks"])
    s = score_episode(res)
    assert s["first_plan_exact"] and s["fp"] == 0 and s["spurious"] == 0 and s["delays"]


def test_eval_loop_job_writes_scores_plots_videos_and_resumes(tmp_path):
    args = ["eval-loop", "env=robosuite/lift", "planners=[oracle]", "conditions=[none,drop]", "n=2",
            "env.height=48", "env.width=48", "env.horizon=150", "video_episodes=1", f"out={tmp_path}"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(c["condition"], c["planner"]) for c in summary["cells"]] == [("none", "oracle"), ("drop", "oracle")]
    none, drop = summary["cells"]
    assert none["success_rate"] == 1.0 and none["first_plan_exact_rate"] == 1.0 and none["spurious_rate"] == 0.0
    assert none["done"]["f1"] == 1.0 and drop["perturbed_episodes"] == 2
    assert "skill" in summary["controller"]
    assert "| drop | oracle |" in (tmp_path / "results.md").read_text()
    assert (
        "Done detection per step" in (tmp_path / "results.md").read_text()
        and none["done_by_step"]["reach"]["f1"] == 1.0
    )
    cell = tmp_path / "drop" / "oracle"
    assert len((cell / "episodes.jsonl").read_text().splitlines()) == 2
    assert sorted(p.name for p in (cell / "plots").iterdir()) == ["seed500000.png", "seed500001.png"]
    from embodied.datasets.video import read_video

    frames = read_video(cell / "videos" / "seed500000.mp4")
    assert frames.shape[1:] == (256, 512, 3)  # third-person view beside the planner's camera
    assert not (cell / "videos" / "seed500001.mp4").exists()
    again = run_cli(*[a for a in args if not a.startswith("n=")], "n=3")  # more seeds: the finished are kept
    assert again.returncode == 0, again.stderr[-2000:]
    assert len((cell / "episodes.jsonl").read_text().splitlines()) == 3
    refused = run_cli(*args, "agent.check_every=3")
    assert refused.returncode == 2 and "other settings" in refused.stderr


def test_eval_loop_bad_input_names_the_value(tmp_path):
    r = run_cli("eval-loop", "planners=[egpt,psychic]", f"out={tmp_path}/a")
    assert r.returncode == 2 and "'psychic'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("eval-loop", "conditions=[earthquake]", f"out={tmp_path}/b")
    assert r.returncode == 2 and "'earthquake'" in r.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

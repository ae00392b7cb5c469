import json

import numpy as np
from conftest import run_cli

from embodied.envs import make_env
from embodied.envs.actor import Actor
from embodied.envs.runner import run_episodes
from embodied.io import read_jsonl
from embodied.policies import make_expert

MW = {"backend": "metaworld", "task": "button-press-topdown", "cameras": [], "horizon": 150}


def test_parallel_rollout_resumes(tmp_path):
    jsonl = tmp_path / "ep.jsonl"
    expert = lambda: make_expert("metaworld", "button-press-topdown")  # noqa: E731
    first = run_episodes(MW, expert, seeds=range(3), workers=2, jsonl=jsonl)
    assert sorted(r["seed"] for r in first) == [0, 1, 2] and all(r["success"] for r in first)
    with open(jsonl, "a") as f:
        f.write('{"seed": 9, "succ')  # a writer killed mid-line
    again = run_episodes(MW, expert, seeds=range(5), workers=2, jsonl=jsonl)
    seeds = [r["seed"] for r in read_jsonl(jsonl)]
    assert sorted(seeds) == [0, 1, 2, 3, 4]  # 0-2 not rerun, the torn line gone
    assert len(again) == 5


def test_rollout_cli_writes_video_and_summary(tmp_path):
    r = run_cli(
        "rollout",
        "env=metaworld/drawer_open",
        "planner=none",
        "env.perturbation=null",
        "n=2",
        "env.height=48",
        "env.width=48",
        f"out={tmp_path}",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 2
    assert (tmp_path / "config.yaml").exists()
    # rerun into the same folder: more episodes continue it; other settings would mix two experiments
    base = [
        "rollout",
        "env=metaworld/drawer_open",
        "planner=none",
        "env.perturbation=null",
        "env.height=48",
        "env.width=48",
    ]
    r = run_cli(*base, "n=3", f"out={tmp_path}")
    assert r.returncode == 0 and json.loads((tmp_path / "summary.json").read_text())["episodes"] == 3, r.stderr[-2000:]
    r = run_cli(*base, "n=3", "env.horizon=20", f"out={tmp_path}")
    assert r.returncode == 2 and "env.horizon=20 here, 300 there" in r.stderr, r.stderr[-2000:]


def test_perturbations_are_applied_and_recorded():
    cfg = {"backend": "robosuite", "task": "Stack", "cameras": [], "horizon": 120,
           "perturbation": {"kind": "drop", "at_subgoal": "lift", "delay": 3}}
    env, expert = make_env(cfg), make_expert("robosuite", "Stack")
    obs, info = env.reset(seed=0)
    labels = []
    while True:
        obs, _, term, trunc, info = env.step(expert.act(obs))
        labels.append(info["subgoal_index"])
        if term or trunc:
            break
    assert info["perturbation"]["applied"] and info["perturbation"]["kind"] == "drop"
    assert 2 in labels and labels[-1] < 2 and not info["success"]  # dropped: back to reach/grasp

    cfg["perturbation"] = {"kind": "displace", "at_step": 2, "offset": [0.05, 0.0, 0.0]}
    env = make_env(cfg)
    obs, _ = env.reset(seed=0)
    before = obs["object"][:3].copy()
    for _ in range(3):
        obs, *_ = env.step(np.zeros(7))
    assert abs(obs["object"][0] - before[0] - 0.05) < 0.01

    cfg["perturbation"] = {"kind": "push", "at_step": 0, "force": [0.0, 0.0, 20.0], "duration": 5}
    env = make_env(cfg)
    obs, _ = env.reset(seed=0)
    z0 = obs["object"][2]
    for _ in range(5):
        obs, _, _, _, info = env.step(np.zeros(7))
    assert obs["object"][2] > z0 + 0.01 and info["perturbation"]["active"]


def test_simulator_failures_are_recorded_and_the_run_goes_on(tmp_path):
    """A MuJoCo instability (an absurd push) and a killed worker process: each affected episode is
    recorded with its error, the env or worker is rebuilt, and every seed still gets a record."""
    import os
    import signal

    import psutil

    from embodied.envs.runner import run_episodes
    from embodied.policies import make_expert

    blowup = {"backend": "robosuite", "task": "Lift", "cameras": [], "horizon": 30,
              "perturbation": {"kind": "push", "at_step": 5, "force": [1e30, 0, 0]}}
    res = run_episodes(blowup, lambda: make_expert("robosuite", "Lift"), seeds=[0, 1], workers=1)
    assert [r["error"].startswith("MuJoCo instability") for r in res] == [True, True]

    class KillerExpert(Actor):  # kills one worker process once, from the main process, mid-episode
        killed = False

        def __init__(self):
            self.inner, self.t = make_expert("robosuite", "Lift"), 0

        def reset(self):
            self.inner.reset()

        def act(self, obs, subgoal=None, info=None):
            self.t += 1
            if self.t == 5 and not KillerExpert.killed:
                workers = [p for c in psutil.Process().children() for p in c.children()]
                os.kill(workers[0].pid, signal.SIGKILL)
                KillerExpert.killed = True
            return self.inner.act(obs, subgoal)

    cfg = {"backend": "robosuite", "task": "Lift", "cameras": [], "horizon": 80}
    res = run_episodes(cfg, KillerExpert, seeds=range(4), workers=2, jsonl=tmp_path / "e.jsonl")
    assert len(res) == 4 and {r["seed"] for r in res} <= {0, 1, 2, 3}
    crashed = [r for r in res if "worker crashed" in r.get("error", "")]
    assert crashed and all(not r["success"] for r in crashed)
    assert sum(r["success"] for r in res) >= 1  # the rest of the run went on with fresh workers

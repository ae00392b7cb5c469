"""The planner's success detector: labels from the simulator's sub-goal index, the train-detector job on real
rendered frames (resume, thresholds, bad input), and the planner and the loop deciding by it."""
import json
import shutil

import numpy as np
import pytest
from conftest import run_cli

from embodied.envs.actor import Actor
from embodied.errors import EmbodiedError
from embodied.planners.success_detector import DIR, SuccessDetector, done_labels

STACK = ["reach the red cube", "grasp the red cube", "lift the red cube", "place the red cube on the blue cube",
         "release the red cube"]
KINDS = ["reach the cube", "grasp the cube", "lift the cube", "place the cube on the cube", "release the cube",
         "open the drawer"]


def test_labels_follow_the_simulators_index_and_mask_what_it_does_not_say():
    y, m = done_labels(STACK, 2, False, KINDS)
    assert y == [1, 1, 0, 0, 0, 0] and m == [1, 1, 1, 1, 1, 0]  # another task's kind is unknown
    y, m = done_labels(STACK, 4, None, KINDS)  # no success flag recorded: the last step is unknown once current
    assert y[:4] == [1, 1, 1, 1] and m[4] == 0
    assert done_labels(STACK, 4, True, KINDS)[0][:5] == [1] * 5
    assert done_labels(STACK[:3], 1, False, KINDS)[0][:3] == [1, 0, 0]  # Lift's steps share Stack's kinds


@pytest.fixture(scope="module")
def state_demos(tmp_path_factory):
    """Five Lift demos without cameras (frames are rendered afterwards); seed 0 is held out."""
    out = tmp_path_factory.mktemp("det") / "lift.hdf5"
    r = run_cli("collect", "env=robosuite/lift", "n=5", f"out={out}", "env.cameras=[]", "video=false",
                "expert=skill", "noise=0.1", "env.height=64", "env.width=64")
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_train_detector_resumes_sets_thresholds_and_the_planner_decides_by_it(state_demos, tmp_path):
    from embodied.assets import ASSETS
    from embodied.planners import BlindPlanner, EmbodiedGPTPlanner

    planner = tmp_path / "planner"
    shutil.copytree(ASSETS / "tiny" / "planner", planner, ignore=shutil.ignore_patterns(DIR))
    out = tmp_path / "det"
    args = ["train-detector", f"demos=[{state_demos}]", f"out={out}", f"planner.path={planner}", "per_demo=6",
            "eval_every=3", "model.image_size=32", "batch_size=8"]
    r = run_cli(*args, "steps=6", "stop_after=3")  # stopped after 3 steps: checkpointed, nothing for the planner
    assert r.returncode == 0, r.stderr[-2000:]
    assert [h["step"] for h in map(json.loads, (out / "history.jsonl").read_text().splitlines())] == [3]
    assert not (planner / DIR).exists()
    r = run_cli(*args, "steps=6")  # the same command continues from step 3
    assert r.returncode == 0, r.stderr[-2000:]
    assert [h["step"] for h in map(json.loads, (out / "history.jsonl").read_text().splitlines())] == [3, 6]
    assert "[train-detector] 'grasp the cube'" in r.stdout
    det = SuccessDetector.from_pretrained(planner / DIR)
    assert det.cfg.kinds == ["reach the cube", "grasp the cube", "lift the cube"]
    assert len(det.cfg.thresholds) == 3 and set(det.cfg.train_info["held_out"]) == set(det.cfg.kinds)
    assert (out / "curve.png").stat().st_size > 0

    p = EmbodiedGPTPlanner.from_pretrained(planner)
    assert p.detector is not None and p.detector_cameras == ["agentview", "robot0_eye_in_hand"]
    assert BlindPlanner.from_pretrained(planner).detector is None
    rng = np.random.default_rng(0)
    frames = {c: rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for c in p.detector_cameras}
    clip = np.zeros((8, 64, 64, 3), np.uint8)
    asked = ["lift the green cube", "place the green cube on the red cube"]
    llm = EmbodiedGPTPlanner(p.model).are_done(clip, asked)
    for t, want in ((-1e9, True), (1e9, False)):  # its kinds are its decision; the others stay the LLM's
        p.detector.cfg.thresholds = [t] * 3
        assert p.are_done(clip, asked, frames=frames) == [want, llm[1]]
    assert p.are_done(clip, asked) == llm  # no frames given: the clip's answer
    with pytest.raises(EmbodiedError, match="no frame of camera"):
        p.are_done(clip, asked, frames={"robot0_eye_in_hand": frames["robot0_eye_in_hand"]})

    # init= fine-tunes a trained detector (here the one just written into the planner), keeping its architecture
    r = run_cli("train-detector", f"demos=[{state_demos}]", f"out={tmp_path / 'ft'}", f"init={planner}", "per_demo=6",
                "eval_every=3", "steps=3", "batch_size=8", "model.image_size=48", "model.channels=4")
    assert r.returncode == 0, r.stderr[-2000:]
    ft = SuccessDetector.from_pretrained(tmp_path / "ft" / "best")
    assert ft.cfg.image_size == det.cfg.image_size == 32 and ft.cfg.channels == det.cfg.channels
    assert ft.cfg.train_info["init"] == str(planner)
    r = run_cli("train-detector", f"demos=[{state_demos}]", f"out={tmp_path / 'bad'}", f"init={tmp_path}")
    assert r.returncode == 2 and "neither a success detector nor a planner checkpoint holding one" in r.stderr
    r = run_cli("train-detector", f"demos=[{state_demos}]", f"out={tmp_path / 'bad'}", f"init={planner}",
                "cameras=[agentview]")
    assert r.returncode == 2 and "the detector reads cameras ['agentview', 'robot0_eye_in_hand']" in r.stderr
    r = run_cli("train-detector", f"demos=[{state_demos}]", f"out={tmp_path / 'bad'}", "max_fpr=2")
    assert r.returncode == 2 and "max_fpr: expected a share in [0, 1)" in r.stderr
    r = run_cli("train-detector", f"demos=[{state_demos}]", f"out={tmp_path / 'bad'}", "frame_size=8")
    assert r.returncode == 2 and "frame_size: expected a frame side of 16 pixels or more" in r.stderr
    r = run_cli("train-detector", f"demos=[{tmp_path / 'none.hdf5'}]", f"out={tmp_path / 'bad'}")
    assert r.returncode == 2 and "none.hdf5 is not a file" in r.stderr
    r = run_cli("eval-loop", "env=robosuite/lift", "env.cameras=[robot0_eye_in_hand]", f"planner.path={planner}",
                "planners=[egpt]", "conditions=[none]", "n=1", "env.horizon=8", "video_episodes=0", "plots=false",
                f"out={tmp_path / 'el'}")  # the env lacks a camera the detector reads: it is off, with a note
    assert r.returncode == 0 and "success detector reads cameras" in r.stderr and "it is off" in r.stderr, r.stderr[
        -2000:
    ]


def test_the_loop_asks_the_detector_with_the_newest_frames(state_demos, tmp_path):
    """A real Lift episode: the agent hands the detector each camera's newest frame at every check."""
    from embodied.agent import AgentConfig, EmbodiedAgent
    from embodied.assets import ASSETS
    from embodied.envs import make_env
    from embodied.planners import EmbodiedGPTPlanner
    from embodied.planners.success_detector import SuccessDetectorConfig

    p = EmbodiedGPTPlanner.from_pretrained(ASSETS / "tiny" / "planner")
    p.detector = SuccessDetector(SuccessDetectorConfig(cameras=["agentview", "robot0_eye_in_hand"],
                                                       kinds=["reach the cube"], thresholds=[-1e9], image_size=32))
    seen = []
    judge = p.detector.judge_batch
    p.detector.judge_batch = lambda frames, subgoals: seen.extend(
        {c: f.copy() for c, f in scene.items()} for scene in frames) or judge(frames, subgoals)
    env = make_env({"backend": "robosuite", "task": "Lift", "cameras": ["agentview", "robot0_eye_in_hand"],
                    "height": 64, "width": 64, "variety": True})
    try:
        obs, info = env.reset(seed=3)
        agent = EmbodiedAgent(
            p, _Still(env.action_space.shape[0]), AgentConfig(camera="robot0_eye_in_hand", background_checks=False)
        )
        for _ in range(7):
            agent.act(obs, None, info)
            obs, _, _, _, info = env.step(np.zeros(env.action_space.shape[0]))
    finally:
        env.close()
    assert len(seen) == 1 and set(seen[0]) == {"agentview", "robot0_eye_in_hand"}  # the check at step 6
    assert any(e["event"] == "done" for e in agent.log)  # "reach" judged done by the detector (threshold -inf)


class _Still(Actor):
    """A policy that holds still: the test is about what the planner is asked, not about control."""

    def __init__(self, dim: int):
        self.dim = dim

    def act(self, obs, subgoal=None, info=None):
        return np.zeros(self.dim)

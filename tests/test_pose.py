"""The pose estimator: labelled frames rendered from demos' stored states, training that resumes exactly, the
checkpoint round trip, and estimates in the simulator's obs/object layout."""
import json
import math

import h5py
import numpy as np
import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file


@pytest.fixture(scope="module")
def state_demos(tmp_path_factory):
    """Three Stack demos without cameras (frames are rendered afterwards), at 64 px."""
    out = tmp_path_factory.mktemp("pose") / "stack.hdf5"
    r = run_cli("collect", "env=robosuite/stack", "expert=reactive", "noise=0.1", "env.cameras=[]", "video=false",
                "env.height=64", "env.width=64", "n=3", "next_obs=false", f"out={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    return out


ARGS = ["per_demo=5", "chunk=2", "valid_demos=1", "eval_every=4", "batch_size=8", "model.image_size=48",
        "model.keypoints=8", "model.hidden=64"]


def test_frames_match_the_simulator_and_training_resumes_exactly(state_demos, tmp_path):
    from embodied.envs import make_env

    straight, split = tmp_path / "straight", tmp_path / "split"
    r = run_cli("train-pose", f"demos={state_demos}", f"out={straight}", "steps=8", *ARGS)
    assert r.returncode == 0, r.stderr[-2000:]
    # Frames: two chunk files (2 + 1 demos), 5 steps each, labelled with the state they were rendered from.
    chunks = sorted((straight / "frames").glob("frames_*.hdf5"))
    assert len(chunks) == 2
    with h5py.File(chunks[0]) as h, h5py.File(state_demos) as d:
        assert h["rgb/agentview"].shape == (10, 64, 64, 3) and h["rgb/robot0_eye_in_hand"].shape == (10, 64, 64, 3)
        seed, t = int(h["seed"][0]), int(h["t"][0])
        demo = next(g for g in d["data"].values() if int(g.attrs["seed"]) == seed)
        assert np.allclose(h["object"][0], demo["obs/object"][t], atol=1e-5)
        env = make_env({**json.loads(d["data"].attrs["embodied_env"]), "cameras": ["agentview"], "height": 64,
                        "width": 64})
        env.reset(seed=seed)
        frame = env.unwrapped.set_sim_state(demo["states"][t])["rgb"]["agentview"]
        env.close()
        assert np.array_equal(frame, h["rgb/agentview"][0])  # upright, as the env gives it
    # Stopped after 4 steps and continued: the same weights as 8 steps in one go.
    r = run_cli("train-pose", f"demos={state_demos}", f"out={split}", "steps=8", "stop_after=4", *ARGS)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("train-pose", f"demos={state_demos}", f"out={split}", "steps=8", *ARGS)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = (load_file(str(d / "last" / "model.safetensors")) for d in (straight, split))
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = [json.loads(x) for x in (split / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [4, 8] and "obj0_near_mm" in history[-1]
    assert (split / "curve.png").exists() and (split / "best" / "config.json").exists()
    # Another setting is refused rather than mixed into the run.
    r = run_cli("train-pose", f"demos={state_demos}", f"out={split}", "steps=8", *ARGS[:-1], "model.hidden=32")
    assert r.returncode == 2 and "model.hidden=32 here, 64 there" in r.stderr


def test_estimator_round_trip_and_obs_layout(tmp_path):
    from embodied.errors import EmbodiedError
    from embodied.policies.pose import PoseEstimator, PoseEstimatorConfig, object_from_pose, pose_targets

    torch.manual_seed(0)
    model = PoseEstimator(PoseEstimatorConfig(cameras=["agentview", "robot0_eye_in_hand"], image_size=32,
                                              keypoints=4, hidden=32)).eval()
    model.save_pretrained(tmp_path / "p")
    again = PoseEstimator.from_pretrained(tmp_path / "p")
    obs = {"rgb": {c: np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8) for c in model.cfg.cameras},
           "proprio": np.linspace(-1, 1, 9).astype(np.float32)}
    est = model.estimate(obs)
    assert est.shape == (14,) and np.array_equal(est, again.estimate(obs))
    with pytest.raises(EmbodiedError, match="reads camera 'robot0_eye_in_hand'"):
        model.estimate({"rgb": {"agentview": obs["rgb"]["agentview"]}, "proprio": obs["proprio"]})
    # pose_targets and object_from_pose invert each other: positions exactly, yaw modulo 90 degrees.
    yaw = torch.tensor([0.3, 2.0])  # 2.0 rad = 114.6 deg, seen as 24.6 deg
    obj = torch.cat(
        [
            torch.tensor([[0.1, -0.05, 0.83]]).repeat(2, 1),
            torch.stack([torch.zeros(2), torch.zeros(2), torch.sin(yaw / 2), torch.cos(yaw / 2)], 1),
            torch.tensor([[0.0, 0.1, 0.82]]).repeat(2, 1),
            torch.tensor([[0.0, 0.0, 0.0, 1.0]]).repeat(2, 1),
        ],
        1,
    )
    proprio = torch.tensor([[0.05, 0.0, 1.0, 0, 0, 0, 1, 0.04, -0.04]]).repeat(2, 1)
    back = object_from_pose(pose_targets(obj, proprio, 2), proprio)
    assert torch.allclose(back[:, :3], obj[:, :3], atol=1e-6) and torch.allclose(back[:, 7:10], obj[:, 7:10], atol=1e-6)
    back_yaw = 2 * torch.atan2(back[:, 5], back[:, 6])
    assert torch.allclose(back_yaw, torch.tensor([0.3, 2.0 - math.pi / 2]), atol=1e-5)
    from embodied.policies.pose.estimator import canonical_object

    assert torch.equal(canonical_object(obj, proprio, 2), back)  # the form a pose policy's head is trained on
    # A hand-edited config names its field.
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    (tmp_path / "p" / "config.json").write_text(json.dumps({**cfg, "keypoints": "many"}))
    with pytest.raises(EmbodiedError, match=r"config.json: keypoints='many': expected an integer"):
        PoseEstimator.from_pretrained(tmp_path / "p")


@pytest.fixture(scope="module")
def estimator(state_demos, tmp_path_factory):
    """A few steps of train-pose on the three demos: a real checkpoint (its estimates are not yet good)."""
    out = tmp_path_factory.mktemp("est")
    r = run_cli("train-pose", f"demos={state_demos}", f"out={out}", "steps=2", *ARGS)
    assert r.returncode == 0, r.stderr[-2000:]
    return out / "last"


def test_pose_policy_acts_from_the_cameras_and_follows_the_subgoal(state_demos, estimator, tmp_path):
    """policy.type=pose: the state head trained on the demos, the estimator frozen inside one checkpoint; its
    rollouts (checkpoint selection included) render the estimator's cameras; obs/object is never read."""
    from embodied.envs import make_env
    from embodied.errors import EmbodiedError
    from embodied.policies import load_policy
    from embodied.policies.pose import PoseEstimator
    from embodied.policies.pose.policy import PosePolicy

    out = tmp_path / "pol"
    r = run_cli("train-policy", f"demos={state_demos}", "n_demos=null", f"out={out}", "policy.type=pose",
                f"policy.estimator={estimator}", "policy.object_noise=0.005", "epochs=2", "eval_every=2",
                "eval_episodes=1", "eval_horizon=10", "restarts=1")
    assert r.returncode == 0, r.stderr[-2000:]
    policy = load_policy(out / "best")
    assert isinstance(policy, PosePolicy) and policy.cfg.env["cameras"] == ["agentview", "robot0_eye_in_hand"]
    est = PoseEstimator.from_pretrained(estimator)
    assert all(torch.equal(v, policy.estimator.state_dict()[k]) for k, v in est.state_dict().items())
    # The head learnt on the object state in the estimator's form: yaw-only quaternions (x = y = 0).
    assert policy.object_mean[[3, 4, 10, 11]].abs().max() == 0
    env = make_env({**policy.cfg.env, "horizon": 20})
    obs, info = env.reset(seed=7)
    # The cameras, not the simulator's object state: a wrong obs/object changes nothing.
    a = policy.actor().act(obs, "reach the red cube")
    b = policy.actor().act({**obs, "object": np.zeros_like(obs["object"])}, "reach the red cube")
    assert np.array_equal(a, b) and a.shape == (7,) and np.isfinite(a).all()
    # The sub-goal's skill is an input: another sub-goal, another action.
    c = policy.actor().act(obs, "lift the red cube")
    assert not np.allclose(a, c)
    # An env without one of its cameras: one error naming the camera and what the env gives.
    with pytest.raises(EmbodiedError, match="reads camera 'robot0_eye_in_hand'"):
        policy.actor().act({**obs, "rgb": {"agentview": obs["rgb"]["agentview"]}}, "reach the red cube")
    env.close()
    # Without an estimator: one line naming the key.
    r = run_cli("train-policy", f"demos={state_demos}", f"out={tmp_path / 'no'}", "policy.type=pose", "epochs=1")
    assert r.returncode == 2 and "policy.estimator" in r.stderr


def test_from_parts_acts_as_its_head_on_the_estimate(estimator):
    from embodied.policies.pose import PoseEstimator
    from embodied.policies.pose.policy import PosePolicy
    from embodied.policies.state_bc import StatePolicy
    from embodied.policies.state_bc.policy import StatePolicyConfig

    torch.manual_seed(0)
    head = StatePolicy(StatePolicyConfig(proprio_dim=9, action_dim=7, object_dim=14, pose_blocks=2, hidden=32,
                                         skills=["lift", "reach"], env={"task": "Stack", "cameras": []})).eval()
    est = PoseEstimator.from_pretrained(estimator)
    pose = PosePolicy.from_parts(head, est)
    assert pose.cfg.env["cameras"] == est.cfg.cameras and pose.cfg.type == "pose"
    rng = np.random.default_rng(1)
    obs = {"rgb": {c: rng.integers(0, 255, (64, 64, 3), np.uint8) for c in est.cfg.cameras},
           "proprio": rng.normal(size=9).astype(np.float32), "object": np.zeros(14, np.float32)}
    want = head.actor().act({**obs, "object": est.estimate(obs).astype(np.float32)}, "lift it")
    assert np.allclose(pose.actor().act(obs, "lift it"), want, atol=1e-6)


def test_rollout_frames_go_where_the_policy_goes_and_resume(state_demos, estimator, tmp_path):
    """rollouts.*: episodes of a state policy acting on the estimate, kept with the simulator's labels; a chunk
    already written is kept on the rerun; fine-tuning (init=) starts from the given weights."""
    from embodied.envs import make_env

    out = tmp_path / "dagger"
    args = [f"demos={state_demos}", f"out={out}", f"init={estimator}", "rollouts.episodes=2", "rollouts.chunk=1",
            f"rollouts.estimator={estimator}", "rollouts.horizon=6", "rollouts.every=2", "rollouts.seed=900",
            "steps=2", *ARGS]
    r = run_cli("train-pose", *args, "stop_after=1")
    assert r.returncode == 0, r.stderr[-2000:]
    chunks = sorted((out / "rollout_frames").glob("frames_*.hdf5"))
    assert [c.name for c in chunks] == ["frames_0000.hdf5", "frames_0001.hdf5"]
    with h5py.File(chunks[1]) as h:
        assert list(h["t"][()]) == [0, 2, 4] and set(h["seed"][()]) == {901}
        assert h["rgb/robot0_eye_in_hand"].shape == (3, 64, 64, 3)
        env = make_env({**json.loads(h.attrs["env"])})
        obs, _ = env.reset(seed=901)
        env.close()
        assert np.allclose(h["object"][0], obs["object"], atol=1e-6) and np.array_equal(h["rgb/agentview"][0],
                                                                                        obs["rgb"]["agentview"])
    stamp = chunks[0].stat().st_mtime_ns
    r = run_cli("train-pose", *args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert chunks[0].stat().st_mtime_ns == stamp
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert "rollout_obj0_mm" in history[-1] and history[-1]["step"] == 2

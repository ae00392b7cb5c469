"""`embodied train-policy` (few-demo BC, checkpoint chosen by rollout success, resume) and `embodied
rollout` with learned policies (comparison table, success-against-demos plot, bad input)."""
import json

import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file
from test_model import PLAN, small_cfg

from embodied.modeling import EmbodiedGPT

FAST = ["eval_every=1", "eval_episodes=1", "eval_horizon=15", "batch_size=32"]


@pytest.fixture(scope="module")
def planner_dir(tmp_path_factory):
    from embodied.tokenizer import train_tokenizer

    path = tmp_path_factory.mktemp("planner") / "ckpt"
    EmbodiedGPT(small_cfg(), tokenizer=train_tokenizer([PLAN, "reach the red cube"] * 5, 300)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def cnn_runs(lift_demos, tmp_path_factory):
    root = tmp_path_factory.mktemp("pol")
    for n in (1, 2):
        r = run_cli("train-policy", f"demos={lift_demos}", f"n_demos={n}", "policy.type=cnn", "epochs=2",
                    f"out={root / f'cnn{n}'}", *FAST)
        assert r.returncode == 0, r.stderr[-2000:]
    return root


def test_train_policy_outputs_and_resume(cnn_runs, lift_demos):
    run = cnn_runs / "cnn2"
    for name in ("best/model.safetensors", "best/config.json", "last/trainer_state.pt", "curve.png", "summary.json"):
        assert (run / name).exists(), name
    hist = [json.loads(line) for line in open(run / "history.jsonl")]
    assert [h["epoch"] for h in hist] == [1, 2] and all("success" in h for h in hist)
    cfg = json.loads((run / "best" / "config.json").read_text())
    assert cfg["train_info"]["n_demos"] == 2 and cfg["camera"] == "robot0_eye_in_hand" and cfg["action_dim"] == 7
    r = run_cli("train-policy", f"demos={lift_demos}", "n_demos=2", "policy.type=cnn", "epochs=3", f"out={run}", *FAST)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stdout + r.stderr
    assert [json.loads(line)["epoch"] for line in open(run / "history.jsonl")] == [1, 2, 3]
    # resumed at epoch 2, it ends where a run of 3 epochs from the start ends (same batches, same shifts)
    straight = run.parent / "cnn2_straight"
    r = run_cli(
        "train-policy", f"demos={lift_demos}", "n_demos=2", "policy.type=cnn", "epochs=3", f"out={straight}", *FAST
    )
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = (load_file(d / "last" / "model.safetensors") for d in (run, straight))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a rerun with other demos would continue this run as if nothing changed: refused, nothing written
    before = (run / "config.yaml").read_text()
    r = run_cli("train-policy", f"demos={lift_demos}", "n_demos=1", "policy.type=cnn", "epochs=4", f"out={run}", *FAST)
    assert r.returncode == 2 and "n_demos=1 here, 2 there" in r.stderr and "remove" in r.stderr
    assert (run / "config.yaml").read_text() == before


def test_ties_choose_the_earlier_or_the_later_checkpoint(cnn_runs, lift_demos, tmp_path):
    from safetensors.torch import load_file

    def same(run):
        a, b = (load_file(run / d / "model.safetensors") for d in ("best", "last"))
        return all(torch.equal(a[k], b[k]) for k in a)

    # 15-step Lift rollouts never succeed, so every evaluation ties at 0
    assert not same(cnn_runs / "cnn1")  # ties=earlier (default): epoch 1 stays the best
    r = run_cli("train-policy", f"demos={lift_demos}", "n_demos=1", "policy.type=cnn", "epochs=2", "ties=later",
                f"out={tmp_path}", *FAST)
    assert r.returncode == 0, r.stderr[-2000:]
    assert same(tmp_path)
    r = run_cli("train-policy", f"demos={lift_demos}", "ties=first", f"out={tmp_path / 'x'}")
    assert r.returncode == 2 and "ties='first': expected earlier or later" in r.stderr


@pytest.mark.parametrize("pixels", [None, 4])
def test_egpt_policy_trains_on_cached_features(lift_demos, planner_dir, tmp_path, pixels):
    r = run_cli("train-policy", f"demos={lift_demos}", "n_demos=1", "policy.type=egpt", f"policy.planner={planner_dir}",
                "epochs=1", "aug_views=2", "policy.chunk=2", f"policy.pixel_keypoints={pixels or 'null'}",
                f"policy.pixel_film={'true' if pixels else 'null'}", f"out={tmp_path}", *FAST)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["policy"] == "egpt" and 0 <= s["best_eval_success"] <= 1
    from embodied.policies import load_policy

    p = load_policy(tmp_path / "best")
    assert p.cfg.chunk == 2 and p.cfg.use_subgoal and p.cfg.pixel_keypoints == (pixels or 0)
    assert hasattr(p, "pixel_conv") == bool(pixels)  # and its trained weights were saved and loaded back
    assert p.cfg.pixel_film == bool(pixels) and (p.pixel_film is not None) == bool(pixels)  # the sub-goal's FiLM too


def test_egpt_policy_with_object_state_target(lift_demos, planner_dir, tmp_path):
    r = run_cli("train-policy", f"demos={lift_demos}", "n_demos=1", "policy.type=egpt", f"policy.planner={planner_dir}",
                "policy.aux_object=true", "epochs=1", f"out={tmp_path}", *FAST)
    assert r.returncode == 0, r.stderr[-2000:]
    from embodied.policies import load_policy

    p = load_policy(tmp_path / "best")
    assert p.cfg.object_dim == 7  # Lift: the cube's position and quaternion
    assert p.object_std.min() > 0 and not torch.equal(p.object_mean, torch.zeros(7))  # the demos' statistics, saved
    feats = p.encode(torch.zeros(2, 64, 64, 3, dtype=torch.uint8), ["reach the red cube"] * 2)
    actions, obj = p.heads(feats, torch.zeros(2, p.cfg.proprio_dim))
    assert actions.shape == (2, 1, 7) and obj.shape == (2, 7)
    r = run_cli("train-policy", f"demos={lift_demos}", "n_demos=1", "policy.type=cnn", "policy.aux_object=true",
                "epochs=1", f"out={tmp_path / 'cnn'}", *FAST)
    assert r.returncode == 2 and "policy.aux_object=true: only the egpt and global policies" in r.stderr


def test_rollout_compares_learned_policies(cnn_runs, tmp_path):
    paths = f"policy.path=[{cnn_runs / 'cnn1' / 'best'},{cnn_runs / 'cnn2' / 'last'}]"
    r = run_cli(
        "rollout",
        "env=robosuite/lift",
        "planner=none",
        "env.perturbation=null",
        "env.cameras=[robot0_eye_in_hand]",
        "env.height=64",
        "env.width=64",
        "env.horizon=15",
        "policy.type=learned",
        paths,
        "n=1",
        f"out={tmp_path}",
        "video=false",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [p["n_demos"] for p in s["policies"]] == [1, 2] and [p["episodes"] for p in s["policies"]] == [1, 1]
    assert (tmp_path / "success_vs_demos.png").stat().st_size > 1000
    assert (tmp_path / "results.md").read_text().count("| Lift |") == 2


def test_policy_for_another_env_is_refused(cnn_runs, tmp_path):
    r = run_cli(
        "rollout",
        "env=metaworld/assembly",
        "planner=none",
        "env.perturbation=null",
        "policy.type=learned",
        f"policy.path={cnn_runs / 'cnn1' / 'best'}",
        "n=1",
        f"out={tmp_path}",
    )
    assert r.returncode == 2
    assert "policy made for robosuite Lift; env is metaworld" in r.stderr  # both named, one line
    r = run_cli("train-policy", f"demos={tmp_path / 'none.hdf5'}", f"out={tmp_path / 'x'}")
    assert r.returncode == 2 and "none.hdf5: demo file not found" in r.stderr


def test_object_state_target_on_scene_frames(lift_demos, planner_dir, tmp_path):
    import h5py

    from embodied.datasets.scenes import scene_frames

    with h5py.File(lift_demos) as f:
        env_cfg = json.loads(f["data"].attrs["embodied_env"])
    a, b = scene_frames(env_cfg, "robot0_eye_in_hand", 3, 700), scene_frames(env_cfg, "robot0_eye_in_hand", 3, 700)
    assert a["rgb"].shape == (3, 64, 64, 3) and a["object"].shape == (3, 7) and len(a["subgoal"]) == 3
    assert torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["object"], b["object"])  # seeded: reruns agree
    assert len({tuple(o[:2].tolist()) for o in a["object"]}) == 3  # the cube is elsewhere in every scene
    from embodied.envs import make_env

    env = make_env({**env_cfg, "cameras": []})
    assert set(a["subgoal"]) <= set(env.reset(seed=700)[1]["subgoals"])  # the task's own sub-goals
    env.close()

    r = run_cli("train-policy", f"demos={lift_demos}", "n_demos=1", "policy.type=egpt", f"policy.planner={planner_dir}",
                "policy.aux_object=true", "aux_scenes=3", "aux_scene_seed=700", "epochs=1", f"out={tmp_path}", *FAST)
    assert r.returncode == 0, r.stderr[-2000:]
    from embodied.policies import load_policy

    p = load_policy(tmp_path / "best")
    assert p.cfg.train_info["aux_scenes"] == 3
    # standardised over the demo and the scenes: alone, one demo's cube hardly moves sideways
    with h5py.File(lift_demos) as f:
        demo = torch.from_numpy(f["data/demo_0/obs/object"][()])
    assert torch.allclose(p.object_std, torch.cat([demo, a["object"]]).std(0).clamp(min=1e-3))
    assert p.object_std[:2].min() > 2 * demo[:, :2].std(0).max()
    r = run_cli("train-policy", f"demos={lift_demos}", "n_demos=1", "policy.type=egpt", f"policy.planner={planner_dir}",
                "aux_scenes=3", "epochs=1", f"out={tmp_path / 'x'}", *FAST)
    assert r.returncode == 2 and "aux_scenes=3: scene frames train the object-state target only" in r.stderr
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_restarts_keep_the_run_best_on_held_out_seeds(lift_demos, tmp_path):
    from embodied.jobs.train_policy import choose_restart

    args = ["train-policy", f"demos={lift_demos}", "n_demos=1", "policy.type=cnn", "epochs=1", "restarts=2",
            "select_episodes=1", "select_seed=400000", "final_episodes=1", f"out={tmp_path}", *FAST]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in open(tmp_path / "selection.jsonl")]
    assert [(x["restart"], x["seed"], x["select_episodes"]) for x in rows] == [(0, 0, 1), (1, 1, 1)]
    for i in (0, 1):  # each run is a whole train-policy run with its own seed
        assert json.loads((tmp_path / f"restart{i}" / "best" / "config.json").read_text())["train_info"]["seed"] == i
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["final_episodes"] == 1 and len(s["restarts"]) == 2
    # 15-step rollouts never succeed: a tie everywhere keeps the first run, whose checkpoint is copied whole
    assert s["restart"] == 0 and s["best"] == str(tmp_path / "best")
    a, b = (load_file(d / "model.safetensors") for d in (tmp_path / "best", tmp_path / "restart0" / "best"))
    c = load_file(tmp_path / "restart1" / "best" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)
    # a rerun trains and judges nothing again
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(open(tmp_path / "selection.jsonl").readlines()) == 2
    assert [json.loads(line)["epoch"] for line in open(tmp_path / "restart1" / "history.jsonl")] == [1]
    # resume=false trains the runs afresh, so they are judged again
    r = run_cli(*args, "resume=false")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(open(tmp_path / "selection.jsonl").readlines()) == 4
    # the choice itself: selection success first, then the run's own evaluation, then the earlier run
    def row(i, sel, ev):
        return {"restart": i, "select_success": sel, "best_eval_success": ev}

    assert choose_restart([row(0, 0.5, 1.0), row(1, 0.7, 0.0)])["restart"] == 1
    assert choose_restart([row(0, 0.5, 0.2), row(1, 0.5, 0.6), row(2, 0.5, 0.6)])["restart"] == 1
    r = run_cli(
        *[a.replace("restarts=2", "restarts=0").replace(f"out={tmp_path}", f"out={tmp_path / 'x'}") for a in args]
    )
    assert r.returncode == 2 and "restarts=0, select_episodes=1: expected whole numbers of at least 1" in r.stderr
    assert not (tmp_path / "x").exists()


def test_state_policy_from_state_only_demos(tmp_path):
    """policy.type=state: demos collected with no camera (reactive Stack expert), a policy on the low-dim state
    steered by the sub-goal's skill, run in the agent loop beside a wrist camera it does not read."""
    import numpy as np

    from embodied.envs import make_env
    from embodied.errors import EmbodiedError
    from embodied.policies import load_policy

    demos = tmp_path / "stack_state.hdf5"
    r = run_cli("collect", "env=robosuite/stack", "n=2", "expert=reactive", "noise=0.1", "env.cameras=[]",
                "video=false", f"out={demos}")
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "state"
    r = run_cli("train-policy", f"demos={demos}", "n_demos=2", "policy.type=state", "epochs=2", f"out={run}", *FAST)
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads((run / "best" / "config.json").read_text())
    assert cfg["type"] == "state" and cfg["camera"] == "" and cfg["env"]["cameras"] == []
    assert cfg["object_dim"] == 14 and cfg["pose_blocks"] == 2  # two cubes, (position, quaternion) each
    assert cfg["skills"] == ["grasp", "lift", "place", "reach", "release"]
    policy = load_policy(run / "best")
    env = make_env({"backend": "robosuite", "task": "Stack", "cameras": []})
    obs, _ = env.reset(seed=5)
    env.close()
    acts = {s: policy.actor().act(obs, f"{s} the red cube") for s in ("reach", "lift", "juggle")}
    assert all(a.shape == (7,) and np.all(np.abs(a) <= 1) for a in acts.values())
    assert not np.allclose(acts["reach"], acts["lift"])  # the skill is an input
    with pytest.raises(EmbodiedError, match=r"proprio \(9,\) and object \(14,\)"):
        policy.actor().act({"proprio": obs["proprio"], "object": obs["object"][:7]}, "reach the red cube")
    # the loop: the planner's camera is in the env, the policy reads none
    r = run_cli(
        "rollout",
        "env=robosuite/stack",
        "planner=oracle",
        "policy.type=learned",
        f"policy.path={run / 'best'}",
        "n=1",
        "env.horizon=12",
        "env.height=64",
        "env.width=64",
        "video=false",
        f"out={tmp_path / 'loop'}",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "loop" / "summary.json").read_text())["policy_type"] == "state"


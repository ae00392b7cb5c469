import json

import h5py
import numpy as np
import pytest
import torch
from conftest import run_cli

from embodied.datasets import DemoDataset, read_video
from embodied.envs import make_env
from embodied.errors import EmbodiedError


def test_collect_writes_robomimic_layout(lift_demos):
    with h5py.File(lift_demos) as f:
        data = f["data"]
        assert data.attrs["total"] == sum(data[d].attrs["num_samples"] for d in data)
        env_args = json.loads(data.attrs["env_args"])
        assert (
            env_args["env_name"] == "Lift" and env_args["type"] == 1 and "controller_configs" in env_args["env_kwargs"]
        )
        demo = data["demo_0"]
        n = demo.attrs["num_samples"]
        for key in ("actions", "rewards", "dones", "states", "subgoal_index"):
            assert len(demo[key]) == n
        assert np.abs(demo["actions"][()]).max() <= 1.0 and demo["dones"][-1] == 1
        for key in ("agentview_image", "robot0_eye_in_hand_image", "robot0_eef_pos", "robot0_eef_quat",
                    "robot0_gripper_qpos", "object", "proprio"):
            assert demo["obs"][key].shape[0] == n and demo["next_obs"][key].shape[0] == n
        np.testing.assert_array_equal(demo["obs"]["proprio"][1:], demo["next_obs"]["proprio"][:-1])
        assert demo["obs"]["agentview_image"].dtype == np.uint8
        assert json.loads(demo.attrs["subgoals"]) == ["reach the red cube", "grasp the red cube", "lift the red cube"]
        labels = demo["subgoal_index"][()]
        assert labels[0] == 0 and labels[-1] == 2 and set(labels) == {0, 1, 2}
        assert [m.decode() for m in f["mask/train"]] + [m.decode() for m in f["mask/valid"]] == [
            "demo_0",
            "demo_1",
            "demo_2",
        ]
        assert demo.attrs["model_file"].startswith("<mujoco")
        video = lift_demos.parent / demo.attrs["video"]
    frames = read_video(video)
    assert frames.shape == (n + 1, 64, 64, 3)


def test_states_rerender_stored_frames(lift_demos):
    with h5py.File(lift_demos) as f:
        demo = f["data/demo_1"]
        cfg = json.loads(f["data"].attrs["embodied_env"])
        seed, t = int(demo.attrs["seed"]), 20
        state, stored = demo["states"][t], demo["obs"]["agentview_image"][t]
    env = make_env(cfg)
    env.reset(seed=seed)
    again = env.unwrapped.set_sim_state(state)
    assert np.abs(again["rgb"]["agentview"].astype(int) - stored.astype(int)).mean() < 1.0


def test_loader_yields_clips(lift_demos):
    ds = DemoDataset(lift_demos, clip_len=4, subset="train")
    item = ds[5]
    assert item["rgb"]["robot0_eye_in_hand"].shape == (4, 64, 64, 3)
    assert item["proprio"].shape == (9,) and item["action"].shape == (7,)
    assert (
        item["subgoal"] in ("reach the red cube", "grasp the red cube") and item["instruction"] == "lift the red cube"
    )
    first = ds[0]["rgb"]["agentview"]
    assert torch.equal(first[0], first[-1])  # before the start the first frame repeats
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)))
    assert batch["rgb"]["agentview"].shape == (8, 4, 64, 64, 3) and len(batch["subgoal"]) == 8


def test_foreign_robomimic_file_without_labels(tmp_path):
    """A file written straight from robosuite in robomimic's layout, without our sub-goal fields."""
    import robosuite

    ctrl = robosuite.load_composite_controller_config(controller="BASIC", robot="Panda")
    env = robosuite.make("Lift", robots="Panda", controller_configs=ctrl, has_renderer=False,
                         has_offscreen_renderer=True, use_camera_obs=True, camera_names=["agentview"],
                         camera_heights=32, camera_widths=32, hard_reset=False)
    obs = env.reset()
    path = tmp_path / "foreign.hdf5"
    with h5py.File(path, "w") as f:
        g = f.create_group("data/demo_0")
        acts, frames, low = [], [], {k: [] for k in ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")}
        for _ in range(6):
            frames.append(obs["agentview_image"][::-1])
            for k in low:
                low[k].append(obs[k])
            a = np.zeros(7)
            acts.append(a)
            obs, *_ = env.step(a)
        g.create_dataset("actions", data=np.array(acts))
        g.create_dataset("obs/agentview_image", data=np.array(frames))
        for k, v in low.items():
            g.create_dataset(f"obs/{k}", data=np.array(v))
        g.attrs["num_samples"] = 6
    env.close()
    with pytest.warns(UserWarning, match="no sub-goal labels"):
        ds = DemoDataset(path, clip_len=2)
    item = ds[3]
    assert item["subgoal"] == "" and item["subgoal_index"] == -1 and item["proprio"].shape == (9,)


def test_loader_bad_files(tmp_path):
    with pytest.raises(EmbodiedError, match="demo file not found"):
        DemoDataset(tmp_path / "nope.hdf5")
    bad = tmp_path / "bad.hdf5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("data/demo_0/obs/agentview_image", data=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(EmbodiedError, match=r"data/demo_0 has no 'actions'"):
        DemoDataset(bad)
    text = tmp_path / "text.hdf5"
    text.write_text("not hdf5")
    with pytest.raises(EmbodiedError, match="not a readable HDF5 file"):
        DemoDataset(text)


def test_video_that_does_not_decode(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    with pytest.raises(EmbodiedError, match="broken.mp4: video does not decode"):
        read_video(broken)


def test_rerender_with_recoloured_copies(lift_demos, tmp_path):
    out = tmp_path / "rc.hdf5"
    r = run_cli("rerender", f"demos={lift_demos}", f"out={out}", "n_demos=2", "copies=1", "cameras=[agentview]")
    assert r.returncode == 0, r.stderr[-2000:]
    with h5py.File(lift_demos) as f, h5py.File(out) as g:
        src, data = f["data"], g["data"]
        assert list(data) == ["demo_0", "demo_1", "demo_2", "demo_3"]
        assert json.loads(data.attrs["embodied_env"])["cameras"] == ["agentview"]
        for name, source in (("demo_0", "demo_0"), ("demo_2", "demo_0"), ("demo_3", "demo_1")):
            d, s = data[name], src[source]
            assert d.attrs["source_demo"] == source and d.attrs["seed"] == s.attrs["seed"]
            for key in ("actions", "states", "subgoal_index"):
                np.testing.assert_array_equal(d[key][()], s[key][()])
            np.testing.assert_allclose(d["obs"]["proprio"][()], s["obs"]["proprio"][()], atol=5e-3)
        # The originals render as recorded (up to the last physics substep); the copies are repainted and renamed.
        orig, copy = data["demo_0"]["obs"]["agentview_image"][()], data["demo_2"]["obs"]["agentview_image"][()]
        assert np.abs(orig.astype(int) - src["demo_0"]["obs"]["agentview_image"][()]).mean() < 1.0
        assert data["demo_0"].attrs["instruction"] == "lift the red cube"
        color = json.loads(data["demo_2"].attrs["colors"])[0]
        assert color != "red" and data["demo_2"].attrs["instruction"] == f"lift the {color} cube"
        assert json.loads(data["demo_2"].attrs["subgoals"])[0] == f"reach the {color} cube"
        assert np.abs(orig.astype(int) - copy).max() > 100  # the cube's pixels changed colour
    ds = DemoDataset(out, clip_len=1, cameras=["agentview"])
    assert len(ds.demos) == 4 and ds.demos[2]["labels"][0][2] == f"lift the {color} cube"


def test_rerender_at_another_frame_size(lift_demos, tmp_path):
    """size= re-renders at robomimic's 84 px (or any side): the frames and the file's env record say so."""
    out = tmp_path / "small.hdf5"
    r = run_cli("rerender", f"demos={lift_demos}", f"out={out}", "n_demos=1", "size=40")
    assert r.returncode == 0, r.stderr[-2000:]
    with h5py.File(lift_demos) as f, h5py.File(out) as g:
        env = json.loads(g["data"].attrs["embodied_env"])
        assert (env["height"], env["width"]) == (40, 40)
        for cam in json.loads(f["data"].attrs["embodied_env"])["cameras"]:
            frames = g["data/demo_0/obs"][f"{cam}_image"]
            assert frames.shape[1:] == (40, 40, 3) and len(frames) == len(f["data/demo_0/actions"])
            assert frames[0].std() > 5  # a scene, not a blank frame


def test_rerender_bad_input(lift_demos, tmp_path):
    r = run_cli("rerender", f"demos={lift_demos}", f"out={lift_demos}")
    assert r.returncode != 0 and "is the input file" in r.stderr and not r.stderr.count("Traceback")
    r = run_cli("rerender", f"demos={lift_demos}", f"out={tmp_path / 'x.hdf5'}", "n_demos=9")
    assert r.returncode != 0 and "n_demos=9" in r.stderr and not (tmp_path / "x.hdf5").exists()
    bare = tmp_path / "bare.hdf5"  # a robomimic-style file without stored states
    with h5py.File(lift_demos) as f, h5py.File(bare, "w") as g:
        g.create_group("data").attrs["embodied_env"] = f["data"].attrs["embodied_env"]
        g["data/demo_0/actions"] = f["data/demo_0/actions"][()]
    r = run_cli("rerender", f"demos={bare}", f"out={tmp_path / 'y.hdf5'}")
    assert r.returncode != 0 and "demo_0 has no states" in r.stderr and not (tmp_path / "y.hdf5").exists()
    env = make_env({"backend": "metaworld", "task": "drawer-open"})
    with pytest.raises(EmbodiedError, match="no objects to recolour"):
        env.unwrapped.set_colors(["red"])
    env.close()
    env = make_env({"backend": "robosuite", "task": "Lift"})
    env.reset(seed=0)
    with pytest.raises(EmbodiedError, match="distinct colours"):
        env.unwrapped.set_colors(["magenta"])
    env.close()


def test_rerender_renames_a_loop_demos_log_all_at_once():
    """A recoloured loop demo keeps its agent log (the corpus reads its plans), with the colours swapped at once."""
    from embodied.jobs.rerender import _renamed

    log = json.dumps([{"event": "plan", "plan": ["reach the red cube", "place the red cube on the blue cube"]}])
    got = json.loads(_renamed(log, ["red", "blue"], ["blue", "green"]))
    assert got[0]["plan"] == ["reach the blue cube", "place the blue cube on the green cube"]
    assert _renamed(log, [], []) == log

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from embodied.envs import TASKS, make_env
from embodied.errors import EmbodiedError

ALL = [(b, t) for b, ts in TASKS.items() for t in ts]
CAMS = {"robosuite": ["agentview", "robot0_eye_in_hand"], "metaworld": ["corner", "gripperPOV"]}


def _env(backend, task, **kw):
    cfg = {"backend": backend, "task": task, "cameras": CAMS[backend], "height": 48, "width": 48, "horizon": 50}
    cfg.update(kw)
    return make_env(cfg)


@pytest.mark.parametrize("backend,task", ALL)
def test_check_env_and_layout(backend, task):
    env = _env(backend, task)
    check_env(env)
    obs, info = env.reset(seed=3)
    assert set(obs["rgb"]) == set(CAMS[backend])
    for img in obs["rgb"].values():
        assert img.dtype == np.uint8 and img.shape == (48, 48, 3)
    assert obs["proprio"].dtype == np.float32
    assert isinstance(info["instruction"], str) and info["instruction"]
    assert 2 <= len(info["subgoals"]) and info["subgoal_index"] == 0 and info["success"] is False
    obs2, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs["object"], obs2["object"])  # a seed fixes the scene
    obs3, _ = env.reset(seed=4)
    assert not np.allclose(obs["object"], obs3["object"])
    env.close()


def test_robosuite_frames_are_upright():
    env = _env("robosuite", "Lift")
    obs, _ = env.reset(seed=0)
    raw = env.unwrapped._raw_obs["agentview_image"]
    np.testing.assert_array_equal(obs["rgb"]["agentview"], raw[::-1])
    # Upright agentview: the floor and table (bright, lower half) below the dark background wall.
    img = obs["rgb"]["agentview"].astype(float).mean(axis=2)
    assert img[-12:].mean() != img[:12].mean()


def test_metaworld_cameras_mounted_upside_down_are_turned_upright():
    """A camera whose image 'up' axis points below the horizon gives frames upside down: those are rotated."""
    import mujoco

    from embodied.envs.metaworld_env import _ROTATED, CAMERAS

    env = _env("metaworld", "assembly", cameras=[])
    env.reset(seed=0)
    m, d = env.unwrapped.sim_env.model, env.unwrapped.sim_env.data
    up_z = {c: d.cam_xmat[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, c)].reshape(3, 3)[2, 1] for c in CAMERAS}
    assert {c for c, z in up_z.items() if z < -0.1} == _ROTATED, up_z


def test_stack_variety_names_colors_in_language():
    env = _env("robosuite", "Stack", variety=True, cameras=[])
    seen = set()
    for seed in range(6):
        _, info = env.reset(seed=seed)
        words = info["instruction"].split()
        a, b = words[2], words[6]  # "stack the <a> cube on the <b> cube"
        assert (
            a != b
            and f"grasp the {a} cube" in info["subgoals"]
            and info["subgoals"][3] == f"place the {a} cube on the {b} cube"
        )
        seen.add((a, b))
    assert len(seen) > 2
    _, info = _env("robosuite", "Stack", cameras=[]).reset(seed=0)
    assert info["instruction"] == "stack the red cube on the green cube"


def test_stack_variety_changes_pixels():
    env = _env("robosuite", "Stack", variety=True)
    colors = []
    for seed in range(8):
        obs, info = env.reset(seed=seed)
        colors.append((info["instruction"], obs["rgb"]["agentview"].copy()))
    (i1, f1), (i2, f2) = next(((x, y) for x in colors for y in colors if x[0] != y[0]))
    assert np.abs(f1.astype(int) - f2.astype(int)).sum() > 0


def test_sim_state_rerenders_observation():
    env = _env("metaworld", "drawer-open")
    obs, info = env.reset(seed=1)
    for _ in range(5):
        obs, _, _, _, info = env.step(env.action_space.sample())
    state = info["state"]
    # Scene layout that lives in the model (object placement, colors) comes back from the demo's seed.
    env.reset(seed=1)
    again = env.unwrapped.set_sim_state(state)
    np.testing.assert_allclose(again["proprio"], obs["proprio"], atol=1e-5)
    np.testing.assert_array_equal(again["rgb"]["gripperPOV"], obs["rgb"]["gripperPOV"])


def test_a_perturbation_at_a_subgoal_the_task_lacks_is_an_error():
    env = make_env({"backend": "robosuite", "task": "Door", "cameras": [],
                    "perturbation": {"kind": "drop", "at_subgoal": "lift"}})
    with pytest.raises(
        EmbodiedError, match=r"at_subgoal='lift': the task 'Door' has no such sub-goal; its sub-goals are \['reach"
    ):
        env.reset(seed=0)
    # at_step decides alone when it is set (rollout.yaml's at_subgoal stays merged in under an override)
    make_env({"backend": "robosuite", "task": "Door", "cameras": [],
              "perturbation": {"kind": "displace", "at_step": 2, "at_subgoal": "lift"}}).reset(seed=0)


@pytest.mark.parametrize("cfg,needle", [
    ({"backend": "robosuite", "task": "Stak"}, "unknown robosuite task 'Stak'"),
    ({"backend": "mujoco", "task": "Lift"}, "unknown backend 'mujoco'"),
    ({"backend": "robosuite", "task": "Lift", "cameras": ["wristcam"]}, "unknown camera 'wristcam'"),
    ({"backend": "metaworld", "task": "assembly", "perturbation": {"kind": "shake", "at_step": 1}}, "unknown 'shake'"),
    ({"backend": "metaworld", "task": "assembly", "fovy": {"cornr": 30}}, "env.fovy: unknown camera 'cornr'"),
    ({"backend": "metaworld", "task": "assembly", "fovy": {"corner": 0}}, r"env.fovy.corner=0: expected .* degrees"),
    ({"backend": "metaworld", "task": "assembly", "fovy": 30}, r"env.fovy=30: expected camera -> degrees"),
])
def test_bad_env_config(cfg, needle):
    with pytest.raises(EmbodiedError, match=needle):
        make_env(cfg)


def test_metaworld_fovy_narrows_the_camera():
    wide = _env("metaworld", "assembly", cameras=["corner"])
    near = _env("metaworld", "assembly", cameras=["corner"], fovy={"corner": 30})
    a, b = (e.reset(seed=2)[0]["rgb"]["corner"].astype(int) for e in (wide, near))
    assert np.abs(a - b).mean() > 5  # the same scene, framed closer
    wide.close(), near.close()


def test_wrong_action_shape():
    env = _env("metaworld", "hammer", cameras=[])
    env.reset(seed=0)
    with pytest.raises(EmbodiedError, match=r"expected shape \(4,\)"):
        env.step(np.zeros(7))

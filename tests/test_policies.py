"""Learned policies: the EmbodiedGPT-conditioned policy on a real (small, random) planner checkpoint, the
global-feature and CNN baselines; interface, frozen perception, chunking, saving and loading."""
import numpy as np
import pytest
import torch
from test_model import PLAN, small_cfg

from embodied.errors import EmbodiedError
from embodied.modeling import EmbodiedGPT
from embodied.policies import load_policy, make_policy
from embodied.policies.base import random_shift
from embodied.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def planner_dir(tmp_path_factory):
    tok = train_tokenizer([PLAN, "reach the red cube", "grasp the red cube"] * 5, 300)
    path = tmp_path_factory.mktemp("planner") / "ckpt"
    EmbodiedGPT(small_cfg(), tokenizer=tok).save_pretrained(path)
    return path


def obs(p=9, size=48):
    return {"rgb": {"wrist": np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)},
            "proprio": np.zeros(p, np.float32)}


@pytest.mark.parametrize("kind", ["egpt", "global", "cnn", "egpt+pixels", "egpt+pixels+film"])
def test_policy_interface_and_round_trip(kind, planner_dir, tmp_path):
    cfg = {"type": kind.split("+")[0], "camera": "wrist", "proprio_dim": 9, "action_dim": 7, "chunk": 3,
           "planner": str(planner_dir) if kind != "cnn" else None, "pixel_keypoints": 4 if "pixels" in kind else None,
           "pixel_film": True if "film" in kind else None}
    pol = make_policy(cfg)
    batch = {"rgb": torch.randint(0, 255, (4, 48, 48, 3), dtype=torch.uint8), "proprio": torch.randn(4, 9),
             "action": torch.rand(4, 3, 7) * 2 - 1, "subgoal": ["reach the red cube", "grasp the red cube", "", "x"]}
    pol.train()
    loss = pol(batch)
    loss.backward()
    assert torch.isfinite(loss)
    if kind != "cnn":
        assert all(p.grad is None for p in pol.vision.parameters()) and all(
            p.grad is None for p in pol.eformer.parameters()
        )
        assert not pol.vision.training  # frozen perception stays in eval mode
    if "pixels" in kind:  # the pixel branch trains end to end beside the frozen features
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pol.pixel_conv.parameters())
    if "film" in kind:  # zero at the start, but it learns from the sub-goal
        assert pol.pixel_film.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in pol.head.parameters())
    pol.reset()
    a = [pol.act(obs(), "reach the red cube") for _ in range(4)]
    assert all(x.shape == (7,) and x.dtype == np.float32 and np.abs(x).max() <= 1 for x in a)
    assert len(pol._queue) == 2  # 4 actions = one chunk of 3 + one from the next chunk
    pol.save_pretrained(tmp_path / "p")
    saved = set(
        __import__("safetensors.torch", fromlist=["load_file"]).load_file(str(tmp_path / "p" / "model.safetensors"))
    )
    assert not any(k.startswith(("vision.", "eformer.")) for k in saved)  # frozen perception lives in the planner
    back = load_policy(tmp_path / "p")
    with torch.no_grad():
        pol.eval()
        x = pol.predict(batch["rgb"], batch["proprio"], batch["subgoal"])
        y = back.predict(batch["rgb"], batch["proprio"], batch["subgoal"])
    torch.testing.assert_close(x, y)


def test_temporal_ensembling_averages_the_live_chunks():
    torch.manual_seed(0)
    pol = make_policy({"type": "cnn", "camera": "wrist", "proprio_dim": 9, "action_dim": 7, "chunk": 3}).eval()
    o = obs()
    with torch.no_grad():  # the same frame every step, so every chunk is this one
        c = pol.predict(torch.as_tensor(o["rgb"]["wrist"])[None], torch.zeros(1, 9), [""])[0].numpy()
    for m, weights in ((0.0, [1, 1, 1]), (1.0, [1, np.exp(-1), np.exp(-2)])):
        pol.cfg.ensemble = m
        actor = pol.actor()
        got = [actor.act(o) for _ in range(4)]
        np.testing.assert_allclose(got[0], c[0], atol=1e-6)
        np.testing.assert_allclose(got[1], (weights[0] * c[1] + weights[1] * c[0]) / sum(weights[:2]), atol=1e-6)
        want = (weights[0] * c[2] + weights[1] * c[1] + weights[2] * c[0]) / sum(weights)  # oldest chunk first
        np.testing.assert_allclose(got[2], want, atol=1e-6)
        np.testing.assert_allclose(got[3], want, atol=1e-6)  # the first chunk has expired: still 3 live
        assert len(actor._queue) == 2  # after the step, the oldest live chunk has run its course


def test_subgoal_changes_the_egpt_policy_action(planner_dir):
    torch.manual_seed(0)
    pol = make_policy(
        {"type": "egpt", "camera": "wrist", "proprio_dim": 9, "action_dim": 7, "planner": str(planner_dir)}
    )
    with torch.no_grad():
        rgb, p = torch.randint(0, 255, (1, 48, 48, 3), dtype=torch.uint8), torch.zeros(1, 9)
        a = pol.predict(rgb, p, ["reach the red cube"])
        b = pol.predict(rgb, p, ["grasp the red cube"])
    assert not torch.allclose(a, b)


def test_policy_input_errors(planner_dir, tmp_path):
    pol = make_policy({"type": "cnn", "camera": "wrist", "proprio_dim": 9, "action_dim": 7})
    with pytest.raises(EmbodiedError, match=r"expects proprio of shape \(9,\), the env gives \(4,\)"):
        pol.act(obs(p=4))
    with pytest.raises(EmbodiedError, match="camera 'wrist'"):
        pol.act({"rgb": {"agentview": obs()["rgb"]["wrist"]}, "proprio": np.zeros(9, np.float32)})
    with pytest.raises(
        EmbodiedError, match=r"actions \(7,\) and proprio \(9,\); this env has actions \(4,\) and proprio \(4,\)"
    ):
        pol.check_env(4, 4)
    with pytest.raises(EmbodiedError, match="not a policy checkpoint"):
        load_policy(tmp_path)
    with pytest.raises(EmbodiedError, match="policy.planner is not set"):
        make_policy({"type": "egpt", "camera": "wrist", "proprio_dim": 9, "action_dim": 7})
    with pytest.raises(EmbodiedError, match="policy.type='bogus'"):
        make_policy({"type": "bogus"})
    with pytest.raises(EmbodiedError, match=r"policy.ensemble='often': expected a number or null"):
        make_policy({"type": "cnn", "camera": "wrist", "proprio_dim": 9, "action_dim": 7, "ensemble": "often"})
    with pytest.raises(EmbodiedError, match=r"policy.pixel_keypoints=-3: expected a number of keypoints"):
        make_policy({"type": "egpt", "camera": "wrist", "proprio_dim": 9, "action_dim": 7, "planner": str(planner_dir),
                     "pixel_keypoints": -3})


def _wrist(planner_dir, **kw) -> dict:
    """An egpt policy's config on the wrist camera of a 9-proprio, 7-action env, with `kw` changed."""
    return {"type": "egpt", "camera": "wrist", "proprio_dim": 9, "action_dim": 7, "planner": str(planner_dir), **kw}


def test_film_makes_the_pixel_keypoints_depend_on_the_subgoal(planner_dir):
    pol = make_policy(_wrist(planner_dir, pixel_keypoints=4, pixel_film=True)).eval()
    rgb = torch.randint(0, 255, (1, 48, 48, 3), dtype=torch.uint8).expand(2, -1, -1, -1)  # one frame, twice
    with torch.no_grad():
        torch.nn.init.normal_(pol.pixel_film.weight, std=0.5)
        f = pol.encode(rgb, ["reach the red cube", "reach the green cube"])
        kp = pol.pixel_features(f["pixels"], f["text"])
    assert f["text"].shape == (2, pol.eformer.cfg.hidden_size)
    assert (kp[0] - kp[1]).abs().max() > 1e-4  # same pixels, other words: other keypoints
    with pytest.raises(EmbodiedError, match=r"policy.pixel_film=true needs the pixel branch"):
        make_policy(_wrist(planner_dir, pixel_film=True))
    with pytest.raises(EmbodiedError, match=r"policy.pixel_film=true needs the pixel branch"):
        make_policy(_wrist(planner_dir, type="global", pixel_keypoints=4, pixel_film=True))


def test_random_shift_keeps_shape_and_moves_content():
    x = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    x[:, 10:20, 10:20] = 255
    g = torch.Generator().manual_seed(0)
    y = random_shift(x, 4, g)
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert not torch.equal(x, y) and int(y.sum()) > 0


def test_a_policy_refuses_a_planner_retrained_under_it(tmp_path):
    """A policy reads frozen features from its planner checkpoint by path; if that checkpoint is trained
    further in place, the policy's inputs change, so loading it must say so instead of acting on them."""
    tok = train_tokenizer([PLAN, "reach the red cube"] * 5, 300)
    model = EmbodiedGPT(small_cfg(), tokenizer=tok)
    model.save_pretrained(tmp_path / "planner")
    pol = make_policy({"type": "egpt", "camera": "wrist", "proprio_dim": 9, "action_dim": 7,
                       "planner": str(tmp_path / "planner")})
    pol.save_pretrained(tmp_path / "p")
    load_policy(tmp_path / "p")  # the same planner: fine
    with torch.no_grad():
        next(model.eformer.parameters()).add_(0.01)  # "trained further", saved over the old checkpoint
    model.save_pretrained(tmp_path / "planner")
    with pytest.raises(
        EmbodiedError, match=r"are not the ones this policy was trained on \(weights [0-9a-f]{16}, expected"
    ):
        load_policy(tmp_path / "p")

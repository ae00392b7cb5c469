"""The planner's success-detection head: probes fitted per sub-goal kind, their held-out thresholds, the
train-done job on a real corpus with the shipped planner, and the planner deciding by the probe."""
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import run_cli

from embodied.errors import EmbodiedError
from embodied.planners.done_head import HEAD_FILE, INFO_FILE, DoneHead, kind


def _samples(rng, subgoal, n, shift, demos=31, lm=None):
    """n finished and n unfinished clips' features of one sub-goal, the finished ones shifted by `shift`;
    the LLM's margins: never 'yes' (the place problem), or `lm` (True: always right)."""
    out = []
    for i in range(2 * n):
        done = i % 2 == 0
        out.append((subgoal, torch.tensor(rng.normal(shift * done, 1.0, 16), dtype=torch.float32), done,
                    f"loop/demo_{i % demos}", (5.0 if done else -5.0) if lm else -3.0))
    return out


def test_kind_drops_colours_only():
    assert kind("place the red cube on the blue cube") == kind("place the cyan cube on the purple cube") \
        == "place the cube on the cube"
    assert kind("lift the red cube") != kind("place the red cube on the blue cube")


def test_fit_keeps_false_done_rare_on_heldout_demos_and_skips_thin_kinds():
    rng = np.random.default_rng(0)
    samples = (_samples(rng, "place the red cube on the blue cube", 150, 0.4)   # overlapping classes
               + _samples(rng, "lift the red cube", 100, 6.0)                    # separable
               + _samples(rng, "open the drawer", 5, 6.0)                        # too few to fit
               + _samples(rng, "reach the red cube", 100, 6.0, lm=True))         # the LLM is as good
    head, report = DoneHead.fit(samples, max_fpr=0.02, min_per_class=20)
    assert set(head.probes) == {"place the cube on the cube", "lift the cube"}
    assert not report["open the drawer"]["probe"] and not report["reach the cube"]["probe"]
    place = report["place the cube on the cube"]
    assert place["heldout"]["fpr"] <= 0.02 and place["threshold"] > 0  # raised above the balanced boundary
    assert report["lift the cube"]["heldout"]["f1"] > 0.95 and report["lift the cube"]["threshold"] == 0.0
    loose = DoneHead.fit(samples, max_fpr=0.5, min_per_class=20)[1]["place the cube on the cube"]
    assert loose["threshold"] <= place["threshold"] and loose["heldout"]["tpr"] >= place["heldout"]["tpr"]
    # the probe answers every colour of its kind; an unknown kind gets None (the LLM answers it)
    f = torch.full((16,), 6.0)
    got = head.logits(f, ["lift the green cube", "open the drawer"])
    assert got[0] > 0 and got[1] is None and head.logits(-f, ["lift the green cube"])[0] < 0


def test_head_round_trips_and_a_damaged_file_is_one_error(tmp_path):
    rng = np.random.default_rng(1)
    head, report = DoneHead.fit(_samples(rng, "lift the red cube", 60, 4.0), min_per_class=20)
    head.save(tmp_path, report)
    back = DoneHead.load(tmp_path)
    f = torch.tensor(rng.normal(0, 1, 16), dtype=torch.float32)
    assert back.logits(f, ["lift the red cube"]) == pytest.approx(head.logits(f, ["lift the red cube"]))
    assert json.loads((tmp_path / INFO_FILE).read_text())["kinds"] == ["lift the cube"]
    assert len(DoneHead.load(tmp_path / "nowhere")) == 0  # no head: an empty one
    data = (tmp_path / HEAD_FILE).read_bytes()
    (tmp_path / HEAD_FILE).write_bytes(data[: len(data) // 3])
    with pytest.raises(EmbodiedError, match=HEAD_FILE):
        DoneHead.load(tmp_path)


def test_train_done_job_writes_a_head_the_planner_decides_by(lift_demos, tmp_path):
    from embodied.assets import ASSETS
    from embodied.planners import BlindPlanner, EmbodiedGPTPlanner

    planner = tmp_path / "planner"
    shutil.copytree(ASSETS / "tiny" / "planner", planner, ignore=shutil.ignore_patterns(HEAD_FILE, INFO_FILE))
    r = run_cli("corpus", f"demos=[{lift_demos}]", f"out={tmp_path / 'c'}")
    assert r.returncode == 0, r.stderr[-2000:]
    data = tmp_path / "c" / "egocot.jsonl"
    r = run_cli("train-done", f"data={data}")
    assert r.returncode == 2 and "train-done needs planner.path=" in r.stderr
    r = run_cli("train-done", f"planner.path={planner}", f"data={data}", "max_fpr=2")
    assert r.returncode == 2 and "max_fpr: expected a share in [0, 1)" in r.stderr
    assert not (planner / HEAD_FILE).exists() and not (planner / INFO_FILE).exists()  # nothing on bad input
    r = run_cli("train-done", f"planner.path={planner}", f"data={data}", "min_per_class=4")
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads((planner / INFO_FILE).read_text())
    report = info["report"]["kinds"]
    assert {"reach the cube", "grasp the cube", "lift the cube"} <= set(report)  # every kind the corpus asks about
    assert (
        all(k in info["kinds"] for k, r in report.items() if r["probe"]) and "[train-done] 'lift the cube'" in r.stdout
    )
    p = EmbodiedGPTPlanner.from_pretrained(planner)
    assert set(p.done_head.probes) == set(info["kinds"]) and len(BlindPlanner.from_pretrained(planner).done_head) == 0
    # Where a probe answers, its decision is the planner's whatever the LLM says; other kinds stay the LLM's.
    dim = p.model.cfg.vision.hidden_size * 8
    p.done_head = DoneHead(
        {
            "lift the cube": {
                "mean": torch.zeros(dim),
                "std": torch.ones(dim),
                "weight": torch.zeros(dim),
                "bias": torch.zeros(1),
                "threshold": torch.tensor([0.0]),
            }
        }
    )
    clip = np.zeros((8, 64, 64, 3), np.uint8)
    llm = EmbodiedGPTPlanner(p.model).are_done(clip, ["lift the red cube", "reach the red cube"])
    for t, want in ((-1e9, True), (1e9, False)):
        p.done_head.probes["lift the cube"]["threshold"] = torch.tensor([t])
        assert p.are_done(clip, ["lift the red cube", "reach the red cube"]) == [want, llm[1]]

"""EgoCOT loading (JSON, JSONL, .npy clips, videos) and the planning corpus generated from sim demos."""
import json

import numpy as np
import pytest
import torch

from embodied.datasets.egocot import EgoCOTDataset
from embodied.datasets.video import write_video
from embodied.errors import EmbodiedError
from embodied.planners import parse_plan

from conftest import run_cli


def test_egocot_json_and_jsonl_with_npy_and_video(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", frames[:8])
    write_video(tmp_path / "b.mp4", frames)
    recs = [{"image": "a.npy", "caption": "c", "planning": "Task: x. Plan: Step 1: y. Actions: 1. y(z)", "score": 0.9},
            {"image": str(tmp_path / "b.mp4"), "caption": "d", "planing": "Task: w.", "score": 0.2}]
    (tmp_path / "d.json").write_text(json.dumps(recs))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    for name in ("d.json", "d.jsonl"):
        ds = EgoCOTDataset(tmp_path / name)
        assert len(ds) == 2
        a, b = ds[0], ds[1]
        assert a["video"].dtype == torch.uint8 and a["video"].shape == (8, 32, 32, 3)
        assert torch.equal(a["video"], torch.from_numpy(frames[:8]))
        assert b["video"].shape == (8, 32, 32, 3) and b["planning"] == "Task: w."  # the misspelt field
    assert len(EgoCOTDataset(tmp_path / "d.json", min_score=0.5)) == 1


def test_egocot_bad_input(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"image": "a.npy", "planning": "p"}\n{oops\n')
    with pytest.raises(EmbodiedError, match=r"bad.jsonl:2: invalid JSON"):
        EgoCOTDataset(tmp_path / "bad.jsonl")
    (tmp_path / "nofield.json").write_text('[{"caption": "c"}]')
    with pytest.raises(EmbodiedError, match="no field 'image'"):
        EgoCOTDataset(tmp_path / "nofield.json")
    (tmp_path / "missing.json").write_text('[{"image": "gone.npy", "planning": "p"}]')
    with pytest.raises(EmbodiedError, match="gone.npy: clip file not found"):
        EgoCOTDataset(tmp_path / "missing.json")[0]
    np.save(tmp_path / "float.npy", np.full((8, 4, 4, 3), 0.5, np.float32))  # frames in [0, 1]
    (tmp_path / "float.json").write_text('[{"image": "float.npy", "planning": "p"}]')
    with pytest.raises(EmbodiedError, match="float.npy: expected uint8 frames"):
        EgoCOTDataset(tmp_path / "float.json")[0]
    (tmp_path / "score.json").write_text('[{"image": "a.npy", "planning": "p", "score": "high"}]')
    with pytest.raises(EmbodiedError, match=r"score.json: record 0: score='high', expected a number"):
        EgoCOTDataset(tmp_path / "score.json")


def test_corpus_from_demos(lift_demos, tmp_path):
    r = run_cli("corpus", f"demos=[{lift_demos}]", f"out={tmp_path / 'c'}")
    assert r.returncode == 0, r.stderr[-2000:]
    ds = EgoCOTDataset(tmp_path / "c" / "egocot.jsonl")
    recs = [json.loads(l) for l in open(tmp_path / "c" / "egocot.jsonl")]
    assert len(ds) == len(recs) >= 3 * 3
    lengths = set()
    for rec in recs:
        plan = parse_plan(rec["planning"])
        assert not plan.partial and plan.task == rec["instruction"] == "lift the red cube"
        assert plan.subgoals[0].text == rec["subgoal"]  # the plan that remains starts at the current sub-goal
        lengths.add(len(plan))
    assert lengths == {1, 2, 3}  # clips from every stage of the task
    s = ds[len(ds) - 1]
    assert s["video"].shape == (8, 64, 64, 3) and s["video"].float().std() > 0
    r = run_cli("corpus", f"demos=[{tmp_path / 'none.hdf5'}]", f"out={tmp_path / 'x'}")
    assert r.returncode == 2 and "none.hdf5: demo file not found" in r.stderr

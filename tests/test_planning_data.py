"""EgoCOT loading (JSON, JSONL, .npy clips, videos) and the planning corpus generated from sim demos."""
import json

import numpy as np
import pytest
import torch
from conftest import run_cli

from embodied.datasets.egocot import EgoCOTDataset
from embodied.datasets.video import write_video
from embodied.errors import EmbodiedError
from embodied.planners import parse_plan


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
    recs = [json.loads(line) for line in open(tmp_path / "c" / "egocot.jsonl")]
    assert len(ds) == len(recs) >= 3 * 3
    assert {r["task"] for r in recs} == {"Lift"} and ds.samples[0]["task"] == "Lift"  # what balance_tasks groups by
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


def test_loop_demos_teach_replans_and_done_around_transitions(tmp_path):
    """collect loop=true runs the loop with the simulator's sub-goals around the skill expert, a drop
    included; the corpus then holds the loop's re-plans (experience -> the plan that remains in the simulator)
    and yes/no questions at frames around every transition, the undone steps after the drop among them."""
    from embodied.jobs.train_planner import training_pairs

    demos = tmp_path / "stack.hdf5"
    r = run_cli("collect", "env=robosuite/stack", "expert=skill", "loop=true", "n=1", "seed=3", "env.variety=cycle",
                "env.cameras=[robot0_eye_in_hand]", "env.height=48", "env.width=48", "video=false",
                "env.perturbation={kind: drop, at_subgoal: lift, delay: 3}", f"out={demos}")
    assert r.returncode == 0, r.stderr[-2000:]
    import h5py

    with h5py.File(demos) as f:
        g = f["data/demo_0"]
        log, indices = json.loads(g.attrs["agent_log"]), g["subgoal_index"][()]
        assert json.loads(g.attrs["perturbation"])["applied"] and g.attrs["instruction"] == (
            "stack the red cube on the purple cube")  # variety=cycle: seed 3 -> the fourth ordered pair
    replan = next(e for e in log if e["event"] == "replan")
    assert "is no longer done" in replan["reason"] and indices[replan["t"]] < indices.max()
    r = run_cli("corpus", f"demos=[{demos}]", f"out={tmp_path / 'c'}")
    assert r.returncode == 0, r.stderr[-2000:]
    ds = EgoCOTDataset(tmp_path / "c" / "egocot.jsonl")
    subgoals = json.loads(h5py.File(demos)["data/demo_0"].attrs["subgoals"])
    replans = [s for s in ds.samples if s["experience"]]
    assert any(s["experience"] == replan["reason"] for s in replans)  # what the loop wrote, and the variants
    assert any("not done after" in s["experience"] for s in replans)  # the agent could have written after the drop
    for s in replans:  # whatever the words, the answer is the plan that remains in the simulator: re-grasp
        at = int(s["id"].split("/t")[1].split("/")[0])
        assert parse_plan(s["planning"]).subgoals[0].text == subgoals[indices[at]]
    dense = [s for s in ds.samples if s["qa_only"]]
    undone = [(s, q) for s in dense for q in s["qa"] if q["answer"] == "no"
              and subgoals.index(q["question"][4:-7]) < max(indices[:int(s["id"].split("/t")[1].split("/")[0])])]
    assert undone  # after the drop: steps done before that are no longer done
    items = training_pairs(ds, "plan")
    plans = [it for it in items if it["answer"].startswith("Task:")]
    assert len(plans) == len(ds.samples) - len(dense)  # question-only clips teach no plan
    assert sum("no longer done" in it["prompt"] for it in plans) == sum("no longer" in s["experience"] for s in replans)
    import zlib  # a fifth of the other plans (by id) carry a spent-budget experience, worded as the agent words it

    budget = [it for it in plans if "failed: not done after" in it["prompt"]]
    assert len(budget) == sum(zlib.crc32(s["id"].encode()) % 5 == 0 for s in ds.samples if not s["qa_only"]
                              and not s["experience"]) + sum("not done after" in s["experience"] for s in replans)
    # recolour: each plan again with the palette permuted, the same permutation in instruction and plan
    more = [it for it in training_pairs(ds, "plan", recolour=2) if it["answer"].startswith("Task:")]
    assert len(more) == 3 * len(plans)
    pairs = {(it["etext"], it["answer"].split(". Plan:")[0]) for it in more}
    assert all(a == f"Task: {e}" for e, a in pairs) and len({e for e, _ in pairs}) > 1


def test_late_oracle_demos_show_held_steps(tmp_path):
    """collect loop=true oracle_lag=N: the oracle calls finished steps done up to N checks late, the skill expert
    holds them meanwhile; the corpus asks the budget re-plan the loop would make then, answered from the
    simulator's index (the step after the held one), and labels the held frames' questions from the simulator."""
    import h5py

    demos = tmp_path / "lift.hdf5"
    base = [
        "collect",
        "env=robosuite/lift",
        "expert=skill",
        "loop=true",
        "n=1",
        "seed=0",
        "env.cameras=[robot0_eye_in_hand]",
        "env.height=48",
        "env.width=48",
        "video=false",
        f"out={demos}",
    ]
    r = run_cli(*base, "oracle_lag=-1")
    assert (
        r.returncode == 2 and "oracle_lag: expected a number of checks >= 0, got -1" in r.stderr and not demos.exists()
    )
    r = run_cli(*base, "oracle_lag=5")
    assert r.returncode == 0, r.stderr[-2000:]
    with h5py.File(demos) as f:
        g = f["data/demo_0"]
        log, indices, subgoals = (
            json.loads(g.attrs["agent_log"]),
            g["subgoal_index"][()],
            json.loads(g.attrs["subgoals"]),
        )
    done_at = {e["subgoal"]: e["t"] for e in log if e["event"] == "done"}
    finished_at = {subgoals[j]: int(np.argmax(indices > j)) for j in range(len(subgoals) - 1)}
    late = [s for s in done_at if done_at[s] - finished_at[s] > 6]  # later than the next check would have seen it
    assert late, (done_at, finished_at)
    r = run_cli("corpus", f"demos=[{demos}]", f"out={tmp_path / 'c'}")
    assert r.returncode == 0, r.stderr[-2000:]
    ds = EgoCOTDataset(tmp_path / "c" / "egocot.jsonl")
    held = [s for s in ds.samples if "not done after 84" in (s["experience"] or "")]
    assert held
    for s in held:
        at = int(s["id"].split("/t")[1].split("/")[0])
        step = s["experience"].split("'")[1]
        assert finished_at[step] < at < done_at[step]  # the step was finished and still being done
        assert parse_plan(s["planning"]).subgoals[0].text == subgoals[indices[at]] == subgoals[subgoals.index(step) + 1]


def test_collect_with_a_learned_policy_keeps_its_own_motions_and_the_simulators_labels(tmp_path):
    """collect loop=true policy=DIR: the shipped Lift policy acts on the simulator's sub-goals; the demo holds
    its states, the loop's log and the sub-goal index the simulator gave (the success detector's labels)."""
    import h5py

    demos = tmp_path / "lift.hdf5"
    r = run_cli("collect", "env=robosuite/lift", "env.cameras=[robot0_eye_in_hand]", "env.height=128", "env.width=128",
                "loop=true", "policy=tiny/policies/lift", "n=1", "seed=72000", "video=false", f"out={demos}")
    assert r.returncode == 0, r.stderr[-2000:]
    with h5py.File(demos) as f:
        g = f["data/demo_0"]
        log, indices, states = json.loads(g.attrs["agent_log"]), g["subgoal_index"][()], g["states"][()]
    assert indices[0] == 0 and indices[-1] == 2 and np.all(np.diff(indices) >= 0)
    assert [e["subgoal"] for e in log if e["event"] == "done"][:2] == ["reach the red cube", "grasp the red cube"]
    assert len(states) == len(indices) > 10
    # keep_failures=true: the episodes that fail are demos too (a 10-step horizon ends every one unfinished)
    short = tmp_path / "short.hdf5"
    r = run_cli("collect", "env=robosuite/lift", "env.cameras=[robot0_eye_in_hand]", "env.height=128", "env.width=128",
                "loop=true", "policy=tiny/policies/lift", "n=2", "seed=72000", "video=false", "env.horizon=10",
                "keep_failures=true", f"out={short}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"failed_demos": 2' in r.stdout
    with h5py.File(short) as f:
        assert len(f["data"]) == 2 and all(len(f[f"data/{k}/actions"]) == 10 for k in f["data"])


def test_balanced_repeats_the_smaller_tasks_items():
    from embodied.jobs.train_planner import balanced

    items = [{"i": i} for i in (0, 0) + (1,) * 8 + (2, 3)]  # task a: samples 0, 1 (10 items); b: 2, 3 (2 items)
    out = balanced(items, ["a", "a", "b", "b"])
    assert [it["i"] for it in out].count(2) == 3 and len(out) == 10 + 2 * 3  # mean 6 per task: b's items x 3
    assert balanced(items, [None] * 4) == items  # one group (no task field): unchanged

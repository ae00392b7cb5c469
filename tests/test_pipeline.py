"""`embodied pipeline` end to end at toy sizes (the real run is documented in docs/BENCHMARKS.md), and the
checkpoints shipped in the package: they load, and their configs match the code."""
import json

from conftest import run_cli


def test_pipeline_runs_every_step_and_resumes(tmp_path):
    args = ["pipeline", f"out={tmp_path}", "tasks=[robosuite/lift]", "policy_tasks=[robosuite/lift]", "n_demos=2",
            "n_heldout=1", "steps.lm=3", "steps.align=2", "steps.plan=2", "policy_epochs=1", "policy_eval_every=1",
            "eval_episodes=1", "eval_horizon=10", "policy_aug_views=1"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    p = json.loads((tmp_path / "pipeline.json").read_text())
    names = [s["step"] for s in p["steps"]]
    assert names[:2] == ["collect lift.hdf5", "collect lift_heldout.hdf5"] and "train-planner plan" in names
    assert {"eval_plan_egpt", "eval_plan_blind", "loop_lift"} <= set(p["results"])
    assert (tmp_path / "plan" / "checkpoint" / "llm").is_dir() and (tmp_path / "plan" / "checkpoint" / "vision").is_dir()
    r = run_cli(*args)  # everything is there: every step is skipped
    assert r.returncode == 0 and r.stdout.count("skipped") == len(names)

"""`embodied pipeline` end to end at toy sizes (the real run is documented in docs/BENCHMARKS.md), and the
checkpoints shipped in the package: they load, and their configs match the code."""
import json

from conftest import run_cli


def test_pipeline_runs_every_step_and_resumes(tmp_path):
    args = [
        "pipeline",
        f"out={tmp_path}",
        "tasks=[robosuite/lift]",
        "policy_tasks=[robosuite/lift,robosuite/stack]",
        "state_policy_tasks=[robosuite/stack]",
        "state_policy.n_demos=2",
        "state_policy.epochs=1",
        "state_policy.eval_every=1",
        "state_policy.workers=1",
        "n_demos=2",
        "n_heldout=1",
        "steps.lm=3",
        "steps.align=2",
        "steps.plan=2",
        "policy_epochs=1",
        "policy_eval_every=1",
        "eval_episodes=1",
        "eval_horizon=10",
        "policy_aug_views=1",
        "~loop_demos",
        "+loop_demos={robosuite/lift: {none: 1, drop_lift: 1, late: 1}}",
        "loop_eval.tasks=[robosuite/lift]",
        "loop_eval.conditions=[none]",
        "loop_eval.n=1",
        "recolour=1",
        "done_head.tasks=[robosuite/lift]",
        "~detector",
        "+detector={demos: {robosuite/lift: {none: 2}}, seed: 60000, steps: 2, per_demo: 3, workers: 1}",
    ]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    p = json.loads((tmp_path / "pipeline.json").read_text())
    names = [s["step"] for s in p["steps"]]
    assert names[:2] == ["collect lift.hdf5", "collect lift_heldout.hdf5"] and "train-planner plan" in names
    assert {"collect loop_lift_none.hdf5", "collect loop_lift_drop_lift.hdf5", "collect loop_lift_late.hdf5"} <= set(
        names
    )
    import h5py  # the loop's own demos; `late` is the oracle's lag, not a perturbation of the env

    with h5py.File(tmp_path / "demos" / "loop_lift_late.hdf5") as f:
        assert "perturbation" not in f["data/demo_0"].attrs and "agent_log" in f["data/demo_0"].attrs
    corpus = [json.loads(line) for line in open(tmp_path / "corpus" / "egocot.jsonl")]
    assert any(r.get("qa_only") for r in corpus) and any(r["id"].startswith("loop_lift_none/") for r in corpus)
    assert {"eval_plan_egpt", "eval_plan_blind", "loop_lift", "loop_stack", "eval_loop_lift"} <= set(p["results"])
    assert {"collect stack_state.hdf5", "train-policy stack (state)"} <= set(names)  # its own camera-less demos
    assert json.loads((tmp_path / "policies" / "stack" / "best" / "config.json").read_text())["type"] == "state"
    assert (tmp_path / "plan" / "checkpoint" / "llm").is_dir() and (
        tmp_path / "plan" / "checkpoint" / "vision"
    ).is_dir()
    assert {"rerender done_loop_lift_late.hdf5", "train-done (the planner's success detector)"} <= set(names)
    assert "kinds" in json.loads((tmp_path / "plan" / "checkpoint" / "done_head.json").read_text())
    assert {"collect detector_lift_none.hdf5", "train-detector (the planner's success detector)"} <= set(names)
    assert (tmp_path / "plan" / "checkpoint" / "success_detector" / "config.json").exists()
    assert "perturbation: null" in (tmp_path / "eval_loop" / "lift" / "config.yaml").read_text()  # the unperturbed loop
    timed = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [t["step"] for t in timed] == names and p["seconds_total"] > 0 and not p["steps_without_time"]
    r = run_cli(*args)  # everything is there: every step is skipped, and the recipe's time is still known
    assert r.returncode == 0 and r.stdout.count("skipped") == len(names)
    again = json.loads((tmp_path / "pipeline.json").read_text())
    assert again["seconds_total"] == p["seconds_total"] and all(s["skipped"] for s in again["steps"])


def test_shipped_checkpoints_load_and_match_the_code():
    """The tiny model in the package: loads with no training and no network; configs are the code's."""
    import dataclasses

    from embodied.assets import ASSETS
    from embodied.modeling import EmbodiedGPT, EmbodiedGPTConfig, read_config
    from embodied.policies import load_policy

    planner = ASSETS / "tiny" / "planner"
    assert (planner / "config.json").exists(), "the tiny planner is not in the package"
    raw = json.loads((planner / "config.json").read_text())
    cfg = read_config(planner)
    assert EmbodiedGPTConfig.from_dict(raw).to_dict().keys() == cfg.to_dict().keys()  # no unknown or missing fields
    model = EmbodiedGPT.from_pretrained("tiny/planner")
    assert model.cfg.vision.freeze and model.cfg.llm.freeze
    size = sum(f.stat().st_size for f in (ASSETS / "tiny").rglob("*") if f.is_file())
    assert size <= 50 * 2**20
    for pol in sorted((ASSETS / "tiny" / "policies").iterdir()):
        p = load_policy(f"tiny/policies/{pol.name}")
        fields = {f.name for f in dataclasses.fields(type(p.cfg))}
        assert set(json.loads((pol / "config.json").read_text())) == fields


def test_main_job_runs_with_the_shipped_model(tmp_path):
    """The README's main job, one short episode: plan printed, sub-goal progress, mp4 written; the shipped
    camera policy acts (its frames are the size it was trained on)."""
    r = run_cli("rollout", "n=1", f"out={tmp_path}", "env.horizon=60")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "plan=[" in r.stdout and "rollout Stack stack_pose" in r.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["policy_type"] == "pose"
    rec = json.loads((tmp_path / "episodes.jsonl").read_text().splitlines()[0])
    assert rec["first_plan"] and rec["agent_log"][0]["event"] == "plan"
    assert (tmp_path / "videos" / "seed01000.mp4").exists()

"""Per-verb thresholds for the planner's "is it done?" answers: fitted on a real corpus with the shipped
planner, saved in the checkpoint, read back by the planner, and what they change."""
import json
import shutil

import numpy as np

from embodied.planners.calibration import THRESHOLDS_FILE, fit_thresholds

from conftest import run_cli


def test_fit_thresholds_moves_the_decision_between_offset_classes():
    rng = np.random.default_rng(0)
    yes, no = rng.normal(-1.8, 0.3, 40), rng.normal(-6.0, 0.5, 40)  # "place": P(yes) < 1/2 even when done
    t = fit_thresholds({"place": [(m, True) for m in yes] + [(m, False) for m in no],
                        "hit": [(m, False) for m in no]})  # no "yes" question at all: left at 0
    assert (yes > t["place"]).all() and (no < t["place"]).all() and t["hit"] == 0.0  # between the two classes
    hard = {"place": [(m, True) for m in yes] + [(m, False) for m in rng.normal(-2.4, 0.4, 40)]}  # overlapping
    strict, loose = fit_thresholds(hard, max_fpr=0.02)["place"], fit_thresholds(hard, max_fpr=0.5)["place"]
    assert loose < strict < 0  # fewer false "done" calls allowed: a higher threshold
    m = np.array([p for p, y in hard["place"] if not y])
    assert (m > strict).mean() <= 0.02
    assert fit_thresholds({"lift": [(5.0, True)] * 20 + [(-5.0, False)] * 20})["lift"] == 0.0  # separable at 0: 0


def test_calibrate_done_job_writes_thresholds_the_planner_reads(lift_demos, tmp_path):
    from embodied.assets import ASSETS
    from embodied.planners import EmbodiedGPTPlanner

    planner = tmp_path / "planner"
    shutil.copytree(ASSETS / "tiny" / "planner", planner, ignore=shutil.ignore_patterns(THRESHOLDS_FILE))
    r = run_cli("corpus", f"demos=[{lift_demos}]", f"out={tmp_path / 'c'}")
    assert r.returncode == 0, r.stderr[-2000:]
    data = tmp_path / "c" / "egocot.jsonl"
    r = run_cli("calibrate-done", f"data={data}")
    assert r.returncode == 2 and "calibrate-done needs planner.path=" in r.stderr
    r = run_cli("calibrate-done", f"planner.path={planner}", f"data={data}", "per_class=0")
    assert r.returncode == 2 and "per_class: expected a positive number" in r.stderr
    assert not (planner / THRESHOLDS_FILE).exists()  # nothing written on bad input
    r = run_cli("calibrate-done", f"planner.path={planner}", f"data={data}", "per_class=12")
    assert r.returncode == 0, r.stderr[-2000:]
    saved = json.loads((planner / THRESHOLDS_FILE).read_text())
    assert set(saved["thresholds"]) == {"reach", "grasp", "lift"} and "[calibrate-done] lift: threshold" in r.stdout
    assert all(len(m) <= 24 for m in saved["margins"].values())
    p = EmbodiedGPTPlanner.from_pretrained(planner)
    assert p.thresholds == saved["thresholds"]
    clip = np.zeros((8, 64, 64, 3), np.uint8)
    asked = ["reach the red cube", "lift the red cube"]
    p.thresholds = {"reach": -1e9, "lift": 1e9}  # the threshold decides, per verb
    assert p.are_done(clip, asked) == [True, False]
    p.thresholds = {"reach": 1e9, "lift": -1e9}
    assert p.are_done(clip, asked) == [False, True]

"""Planning-QA evaluation: EgoPlan-Bench and our JSONL loaders (mp4 and frame folders, frames never
after the current observation), the simulated benchmark, metrics against reference implementations,
and `embodied eval-plan` with its bad-input handling."""
import json

import numpy as np
import pytest
from conftest import run_cli

from embodied.datasets.qa import load_egoplan, load_qa_jsonl
from embodied.datasets.video import write_video
from embodied.errors import EmbodiedError
from embodied.planners import parse_plan
from embodied.planners.metrics import (
    bleu,
    cider_d,
    colour_correct,
    executability,
    lcs_similarity,
    plan_exact,
    rouge_l,
    subgoal_accuracy,
    tokens,
)

HYPS = ["Task: stack the red cube. Plan: Step 1: reach the red cube. Step 2: grasp it.", "open the drawer now",
        "pick up the can and put it in the bin please", "lift", "Actions: 1. reach(red cube) 2. grasp(red cube)"]
REFS = ["Task: stack the red cube on the green cube. Plan: Step 1: reach the red cube.", "open the drawer",
        "put the can in the bin", "lift the cube", "Actions: 1. reach(red cube) 2. grasp(red cube) 3. lift(red cube)"]


def test_metrics_match_reference_implementations():
    from pycocoevalcap.cider.cider import Cider
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import BLEU

    joined = lambda s: " ".join(tokens(s))  # noqa: E731 -- the stated tokenisation, fed to each reference
    for n in range(1, 5):
        ref = BLEU(tokenize="none", smooth_method="none", max_ngram_order=n, effective_order=False).corpus_score(
            [joined(h) for h in HYPS], [[joined(r) for r in REFS]]).score / 100
        assert bleu(HYPS, [[r] for r in REFS], n) == pytest.approx(ref, abs=1e-6)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    ref = np.mean([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(HYPS, REFS)])
    assert rouge_l(HYPS, REFS) == pytest.approx(ref, abs=1e-6)
    ref, _ = Cider().compute_score(
        {i: [joined(r)] for i, r in enumerate(REFS)}, {i: [joined(h)] for i, h in enumerate(HYPS)}
    )
    assert cider_d(HYPS, [[r] for r in REFS]) == pytest.approx(ref, abs=1e-6)
    assert bleu(REFS, [[r] for r in REFS], 4) == pytest.approx(1.0)


def test_plan_structure_metrics():
    ref = parse_plan("Task: t. Plan: Step 1: reach the cube. Step 2: grasp the cube. Step 3: lift the cube. "
                     "Actions: 1. reach(cube) 2. grasp(cube) 3. lift(cube)")
    pred = parse_plan("Task: t. Plan: Step 1: reach the cube. Step 2: lift the cube. "
                      "Actions: 1. reach(cube) 2. fly(moon)")
    assert subgoal_accuracy(pred, ref) == pytest.approx(1 / 3)
    assert lcs_similarity(pred, ref) == pytest.approx(2 / 3)
    assert executability(pred, {"reach", "grasp", "lift"}, {"cube"}) == pytest.approx(0.5)
    assert not plan_exact(pred, ref) and plan_exact(ref, ref) and colour_correct(pred, ref, ["red"]) is None
    stack = parse_plan("Task: t. Plan: Step 1: grasp the red cube. Step 2: place the red cube on the blue cube.")
    wrong = parse_plan("Task: t. Plan: Step 1: grasp the red cube. Step 2: place the red cube on the cyan cube.")
    colours = ["red", "blue", "cyan"]
    assert colour_correct(stack, stack, colours) and not colour_correct(wrong, stack, colours)
    assert subgoal_accuracy(wrong, stack) == 0.5  # half right by steps, wrong where it matters


def _egoplan(tmp_path, n=60):
    frames = np.zeros((n, 32, 32, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(n)[:, None, None] * 4  # the frame index, readable from the red channel
    write_video(tmp_path / "vids" / "vid1.mp4", frames)
    folder = tmp_path / "vids" / "P01" / "rgb_frames" / "P01_01"
    folder.mkdir(parents=True)
    import imageio.v3 as iio

    for i in range(1, n + 1):
        iio.imwrite(folder / f"frame_{i:010d}.jpg", frames[i - 1])
    base = {"question": "What next?", "choice_a": "reach", "choice_b": "grasp", "choice_c": "lift", "choice_d": "place",
            "golden_choice_idx": "B", "answer": "grasp", "task_goal": "stack", "video_source": "x",
            "task_progress_metadata": [{"narration_text": "reach", "start_frame": 10, "stop_frame": 30}]}
    recs = [{**base, "sample_id": 1, "video_id": "vid1", "current_observation_frame": 30},
            {**base, "sample_id": 2, "video_id": "P01_01", "current_observation_frame": 40, "task_start_frame": 20,
             "domain": "kitchen", "scenario": "cook"},
            {**base, "sample_id": 3, "video_id": "gone", "current_observation_frame": 5}]
    (tmp_path / "egoplan.json").write_text(json.dumps(recs))
    return tmp_path / "egoplan.json", frames


def test_egoplan_loader_never_samples_after_the_current_frame(tmp_path):
    from embodied.datasets.qa import SkipSample

    path, _ = _egoplan(tmp_path)
    s = load_egoplan(path, tmp_path / "vids", n_frames=8)
    assert [x["label"] for x in s] == [1, 1, 1] and s[0]["choices"][1] == "grasp"
    v = s[0]["frames"]()
    assert v.shape == (8, 32, 32, 3)
    red = v[..., 0].mean(axis=(1, 2)) / 4
    assert red.max() <= 30 + 1.5 and red.min() >= 10 - 1.5  # within the task progress, up to frame 30
    f = s[1]["frames"]()  # Epic-Kitchens frame folder, 1-based file numbers, found under the root
    red = f[..., 0].mean(axis=(1, 2)) / 4
    assert f.shape == (8, 32, 32, 3) and red.max() <= 40 and red.min() >= 18
    with pytest.raises(SkipSample, match="'gone' not found"):
        s[2]["frames"]()
    recs = json.loads(path.read_text())
    recs[1]["current_observation_frame"] = "end"
    path.write_text(json.dumps(recs))
    with pytest.raises(
        EmbodiedError, match=r"egoplan.json: sample 2: current_observation_frame='end': expected a frame number"
    ):
        load_egoplan(path, tmp_path / "vids")


def test_egoplan2_builds_its_question_and_finds_the_video_from_the_sample_id(tmp_path):
    """EgoPlan-Bench2 files have no question or video_id: its eval.py builds both (from task_goal, sample_id)."""
    from embodied.datasets.qa import load_planning_qa

    _egoplan(tmp_path)
    rec = {"sample_id": "vid1_7", "task_goal": "stack the cups", "choice_a": "a", "choice_b": "b", "choice_c": "c",
           "choice_d": "d", "golden_choice_idx": "C", "task_start_frame": 10, "current_observation_frame": 30}
    (tmp_path / "bench2.json").write_text(json.dumps([rec]))
    (s,) = load_planning_qa("egoplan2", tmp_path / "bench2.json", tmp_path / "vids")
    assert s["label"] == 2 and s["question"].endswith("what action should I take next in order to stack the cups?")
    red = s["frames"]()[..., 0].mean(axis=(1, 2)) / 4
    assert red.min() >= 10 - 1.5 and red.max() <= 30 + 1.5  # vid1.mp4, frames 10-30 only
    with pytest.raises(EmbodiedError, match=r"bench2.json: sample 1: missing field\(s\) \['question', 'video_id'\]; "
                                            r"expected an EgoPlan-Bench sample \(dataset=egoplan\)"):
        load_planning_qa("egoplan", tmp_path / "bench2.json", tmp_path / "vids")


def test_qa_bad_input(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "a.npy", "question": "q", "answer": "x"}\n{broken\n'
                   '{"video": "a.npy", "question": "q", "choices": ["a","b","c","d"], "label": "B"}\n')
    with pytest.raises(EmbodiedError, match=r"bad.jsonl:2: malformed JSON line"):
        load_qa_jsonl(bad)
    problems = []
    s = load_qa_jsonl(bad, strict=False, problems=problems)
    assert len(s) == 2 and len(problems) == 1 and s[1]["label"] == 1
    (tmp_path / "label.jsonl").write_text(
        '{"video": "a.npy", "question": "q", "choices": ["a","b","c","d"], "label": "E"}\n'
    )
    with pytest.raises(EmbodiedError, match=r"label.jsonl:1: choice label 'E' is not one of A, B, C, D"):
        load_qa_jsonl(tmp_path / "label.jsonl")


def test_simqa_and_eval_plan(lift_demos, tmp_path):
    r = run_cli("simqa", f"demos=[{lift_demos}]", f"out={tmp_path / 'q'}", "explain_episodes=1")
    assert r.returncode == 0, r.stderr[-2000:]
    run_cli("simqa", f"demos=[{lift_demos}]", f"out={tmp_path / 'q2'}", "explain_episodes=1")
    assert (tmp_path / "q" / "simqa.jsonl").read_text() == (
        tmp_path / "q2" / "simqa.jsonl"
    ).read_text()  # deterministic
    recs = [json.loads(line) for line in open(tmp_path / "q" / "simqa.jsonl")]
    kinds = {r["kind"] for r in recs}
    assert kinds == {"plan", "next", "done", "explain"}
    for r in recs:
        if r["kind"] == "next":
            assert len(set(r["choices"])) == 4 and r["label"] in "ABCD"
    # the oracle answers with the references: every metric at its maximum
    r = run_cli(
        "eval-plan", f"dataset.path={tmp_path / 'q' / 'simqa.jsonl'}", "planner.type=oracle", f"out={tmp_path / 'o'}"
    )
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "o" / "summary.json").read_text())["metrics"]
    assert m["next"]["accuracy_likelihood"] == 1.0 and m["done"]["accuracy_likelihood"] == 1.0
    assert m["plan"]["bleu4"] == pytest.approx(1.0) and m["plan"]["subgoal_accuracy"] == 1.0
    assert (tmp_path / "o" / "results.md").exists()
    # three shards (embodied/launch.py): the same predictions, merged into one file, the same scores
    r = run_cli("eval-plan", f"dataset.path={tmp_path / 'q' / 'simqa.jsonl'}", "planner.type=oracle", "shards=3",
                f"out={tmp_path / 'o3'}")
    assert r.returncode == 0, r.stderr[-2000:]
    preds = [
        {json.dumps(json.loads(line), sort_keys=True) for line in open(tmp_path / d / "predictions.jsonl")}
        for d in ("o", "o3")
    ]
    assert preds[0] == preds[1] and not list((tmp_path / "o3").glob("predictions.shard*"))
    assert json.loads((tmp_path / "o3" / "summary.json").read_text())["metrics"] == m
    n = len(open(tmp_path / "o" / "predictions.jsonl").readlines())
    r = run_cli(
        "eval-plan", f"dataset.path={tmp_path / 'q' / 'simqa.jsonl'}", "planner.type=oracle", f"out={tmp_path / 'o'}"
    )
    assert len(open(tmp_path / "o" / "predictions.jsonl").readlines()) == n  # a rerun skips finished samples
    # ... but only a rerun of the same evaluation: another planner into that folder would be scored on these
    r = run_cli("eval-plan", f"dataset.path={tmp_path / 'q' / 'simqa.jsonl'}", "planner.type=blind",
                f"planner.path={tmp_path / 'ckpt'}", f"out={tmp_path / 'o'}")
    assert r.returncode == 2 and "holds a run made with other settings (planner.path=" in r.stderr
    assert "planner.type='blind' here, 'oracle' there" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert len(open(tmp_path / "o" / "predictions.jsonl").readlines()) == n
    assert "type: oracle" in (tmp_path / "o" / "config.yaml").read_text()


def test_parse_letter():
    from embodied.jobs.eval_plan import parse_letter

    cases = {"B": 1, "(b)": 1, "c.": 2, "answer: B": 1, "The answer is C": 2, "take a knife, answer: B": 1,
             "I pick D.": 3, "A. open the drawer": 0, "a knife": None, "no idea": None}
    assert {t: parse_letter(t) for t in cases} == cases


def test_eval_plan_with_a_model_and_missing_videos(tmp_path):
    from test_model import PLAN, small_cfg

    from embodied.modeling import EmbodiedGPT
    from embodied.tokenizer import train_tokenizer

    EmbodiedGPT(small_cfg(), tokenizer=train_tokenizer([PLAN] * 5, 300)).save_pretrained(tmp_path / "ckpt")
    path, _ = _egoplan(tmp_path)
    for kind in ("egpt", "blind"):
        r = run_cli(
            "eval-plan",
            "dataset=egoplan",
            f"dataset.path={path}",
            f"dataset.video_root={tmp_path / 'vids'}",
            f"planner.type={kind}",
            f"planner.path={tmp_path / 'ckpt'}",
            "max_new_tokens=4",
            f"out={tmp_path / kind}",
        )
        assert r.returncode == 0, r.stderr[-2000:]
        s = json.loads((tmp_path / kind / "summary.json").read_text())
        assert s["evaluated"] == 2 and s["skipped_missing_video"] == 1 and "gone" in r.stdout
        assert 0 <= s["metrics"]["choice"]["accuracy_likelihood"] <= 1


def test_simqa_names_a_missing_camera(lift_demos, tmp_path):
    from embodied.datasets.simqa import build_simqa

    with pytest.raises(EmbodiedError, match=r"lift.hdf5: data/demo_0/obs has no camera 'wristcam' \(has: \["):
        build_simqa([lift_demos], tmp_path, camera="wristcam")

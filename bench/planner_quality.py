"""Planner quality on held-out demos: the planning corpus of demos the planner never saw (other seeds),
scored for the EmbodiedGPT planner and, in the same run, its blind text-only baseline.

    python bench/planner_quality.py --planner runs/plan/checkpoint --demos heldout_stack.hdf5 heldout_lift.hdf5

next-subgoal accuracy: the first step of the generated plan is the sub-goal in progress in the clip;
plan exact match: the whole remaining plan is right; done-detection accuracy: yes/no to "Is '<sub-goal>'
done?" (likelihood of "yes" against "no") against the simulator's labels.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
from tqdm import tqdm


def evaluate(planner, samples, dataset, batch: int = 8) -> dict:
    from embodied.datasets.egocot import plan_start
    from embodied.modeling import plan_prompt
    from embodied.planners import parse_plan

    model = planner.model
    nxt, exact, seq, done_ok, done_n = [], [], [], 0, 0
    t0 = time.perf_counter()
    for b in tqdm(range(0, len(samples), batch), desc=planner.name, leave=False):
        items = [dataset[i] for i in range(b, min(b + batch, len(samples)))]
        video = torch.stack([it["video"] for it in items])
        # as the planner plans in the loop (EmbodiedGPT.plan): the answer opens with the task line, forced
        outs = model.generate(video, [plan_prompt(it["instruction"]) for it in items], planner.max_new_tokens,
                              eformer_text=[it["instruction"] for it in items], blind=planner.blind,
                              answer_start=[plan_start(it["instruction"]) for it in items])
        for it, out, s in zip(items, outs, samples[b: b + batch]):
            got, want = parse_plan(out), parse_plan(it["planning"])
            nxt.append(bool(got.subgoals) and got.subgoals[0].text == s["subgoal"])
            seq.append([g.text for g in got.subgoals] == [w.text for w in want.subgoals])
            exact.append(out.strip() == it["planning"].strip())
            for qa in s["qa"]:
                if qa["answer"] not in ("yes", "no"):
                    continue
                done_n += 1
                sub = qa["question"][4:-7]
                done_ok += planner.is_done(it["video"], sub) == (qa["answer"] == "yes")
    return {
        "samples": len(samples),
        "next_subgoal_acc": float(np.mean(nxt)),
        "subgoal_sequence_acc": float(np.mean(seq)),
        "plan_exact_match": float(np.mean(exact)),
        "done_detection_acc": done_ok / max(done_n, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--planner", required=True)
    ap.add_argument("--demos", nargs="+", required=True)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    from embodied.datasets.corpus import build_corpus
    from embodied.datasets.egocot import EgoCOTDataset, read_records
    from embodied.modeling import EmbodiedGPT
    from embodied.planners import BlindPlanner, EmbodiedGPTPlanner

    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_corpus(args.demos, tmp)
        samples = read_records(path)[: args.limit]
        dataset = EgoCOTDataset(path)
        model = EmbodiedGPT.from_pretrained(args.planner)
        res = {"egpt": evaluate(EmbodiedGPTPlanner(model), samples, dataset),
               "blind": evaluate(BlindPlanner(model), samples, dataset)}
    res["ratio_next_subgoal_egpt_over_blind"] = round(
        res["egpt"]["next_subgoal_acc"] / max(res["blind"]["next_subgoal_acc"], 1e-9), 3
    )
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

"""Does the planner's LLM copy an instruction's colours into the plan, or fall back on a prior?

A one-off study (bench/studies/): its result is in docs/BENCHMARKS.md, "Before: the planner shipped until
2026-12-03" (why the frozen LLM does not copy colours).

Text only, every ordered pair of palette colours: the LLM is given the planning prompt for "stack the A cube on
the B cube" and the plan up to "Step 4: place the A cube on the", and greedily completes it; the pair counts when
the completion is B. The tiny planner's LLM is frozen after its `lm` stage, so a prior it learned there cannot
be trained away by the adapter later: this measures it directly, for several checkpoints in one run.

    python bench/studies/colour_copy.py runs/tiny/lm/checkpoint embodied/assets/tiny/planner/llm
"""
from __future__ import annotations

import argparse
import itertools
import json

import torch


def copy_rate(path: str) -> dict:
    from transformers import AutoTokenizer, LlamaForCausalLM

    from embodied.envs.base import PALETTE
    from embodied.modeling import TEMPLATE, VIDEO_TOKEN, plan_prompt

    tok = AutoTokenizer.from_pretrained(path)
    llm = LlamaForCausalLM.from_pretrained(path).eval()
    right, wrong = 0, {}
    for a, b in itertools.permutations(PALETTE, 2):
        task = f"stack the {a} cube on the {b} cube"
        text = (TEMPLATE.replace(VIDEO_TOKEN, "").format(prompt=plan_prompt(task)) + f"Task: {task}. Plan: "
                f"Step 1: reach the {a} cube. Step 2: grasp the {a} cube. Step 3: lift the {a} cube. "
                f"Step 4: place the {a} cube on the")
        ids = tok(tok.bos_token + text, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            out = llm.generate(ids, max_new_tokens=3, do_sample=False)
        said = tok.decode(out[0, ids.shape[1]:]).strip()
        if said.startswith(b):
            right += 1
        else:
            wrong[f"{a} on {b}"] = said
    n = len(PALETTE) * (len(PALETTE) - 1)
    return {
        "checkpoint": path,
        "pairs": n,
        "copied": right,
        "rate": right / n,
        "examples_wrong": dict(list(wrong.items())[:5]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "checkpoints", nargs="+", help="LLM directories (a planner's llm/ or a train-planner lm checkpoint)"
    )
    args = ap.parse_args()
    for path in args.checkpoints:
        print(json.dumps(copy_rate(path)))


if __name__ == "__main__":
    main()

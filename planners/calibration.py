"""Decision thresholds for the planner's "is it done?" answers, fitted per sub-goal verb.

The planner compares log P(yes) with log P(no). Some steps are hard to see finished: a cube held 1 cm above
the other looks like one lowered onto it, and the clips of a step still in progress outnumber those of it
finished four to one, so for "place" the tiny planner's P(yes) stays under one half even on clips that show
it done (its margins: about -1.8 there, about -6 on clips of it in progress). A threshold per verb, lowered
on the corpus's own labelled questions as far as false "done" calls stay rare, moves the decision to where
the classes separate (threshold moving, the standard remedy for a classifier trained on unbalanced classes).
Saved beside the weights (THRESHOLDS_FILE). Measured worse in the loop than none (docs/BENCHMARKS.md).
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

THRESHOLDS_FILE = "done_thresholds.json"


def verb(subgoal: str) -> str:
    return subgoal.split()[0].lower() if subgoal.strip() else ""


def _asked(question: str) -> str | None:
    """The sub-goal a corpus done question asks about (corpus.done_question's inverse), else None."""
    from embodied.datasets.corpus import done_question

    sub = question[4:-7]
    return sub if done_question(sub) == question else None


def done_margins(model, dataset, per_class: int = 60, seed: int = 0) -> dict[str, list[tuple[float, bool]]]:
    """{verb: [(log P(yes) - log P(no), label yes)]} on up to `per_class` questions of each answer per verb,
    drawn from the dataset's yes/no "Is '...' done?" questions; the questions of one clip share its pass."""
    picks: dict[tuple[str, bool], list[tuple[int, str]]] = defaultdict(list)
    for i, s in enumerate(dataset.samples):
        for q in s["qa"]:
            sub = _asked(q["question"])
            if sub is not None and q["answer"] in ("yes", "no"):
                picks[(verb(sub), q["answer"] == "yes")].append((i, q["question"]))
    rng = np.random.default_rng(seed)
    chosen: dict[int, list[tuple[str, bool]]] = defaultdict(list)
    for (v, yes), qs in sorted(picks.items()):
        for j in rng.permutation(len(qs))[:per_class]:
            chosen[qs[j][0]].append((qs[j][1], yes))
    out: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    with torch.no_grad():
        for i in sorted(chosen):
            qs = [q for q, _ in chosen[i]]
            lp = model.choice_logprobs(dataset[i]["video"][None], qs, ["yes", "no"], eformer_text=qs)
            for (q, yes), (a, b) in zip(chosen[i], lp.tolist()):
                out[verb(_asked(q))].append((a - b, yes))
    return dict(out)


def fit_thresholds(margins: dict[str, list[tuple[float, bool]]], max_fpr: float = 0.02,
                   min_per_class: int = 10) -> dict[str, float]:
    """Per verb, the threshold at or below 0 that finds the most finished steps while calling at most
    `max_fpr` of the unfinished ones done (or no more than 0 does). In the loop a false "done" cannot be taken
    back (the cube let go too high falls), while a miss costs one check: every check sees the step again. 0,
    the plain likelihood comparison, where either answer has fewer than `min_per_class` questions. On ties,
    the one nearest 0."""
    out = {}
    for v, pairs in sorted(margins.items()):
        m = np.array([p for p, _ in pairs])
        y = np.array([l for _, l in pairs])
        out[v] = 0.0
        if y.sum() < min_per_class or (~y).sum() < min_per_class:
            continue
        s = np.sort(m[m < 0])
        candidates = np.concatenate([[0.0], (s[1:] + s[:-1]) / 2, s[:1] - 1e-3])
        tpr = np.array([((m > t) & y).sum() / y.sum() for t in candidates])
        fpr = np.array([((m > t) & ~y).sum() / (~y).sum() for t in candidates])
        ok = fpr <= max(max_fpr, fpr[0])
        best = max(np.flatnonzero(ok), key=lambda i: (tpr[i], -abs(candidates[i])))
        out[v] = round(float(candidates[best]), 4)
    return out


def load_thresholds(path: str | Path) -> dict[str, float]:
    f = Path(path) / THRESHOLDS_FILE
    return {str(k): float(v) for k, v in json.loads(f.read_text())["thresholds"].items()} if f.exists() else {}

"""The planner's success detector: per sub-goal kind, a logistic probe on the frozen ViT's clip features.

The planner judges "is '<sub-goal>' done?" by comparing the LLM's likelihoods of 'yes' and 'no'. For some
steps the LLM path loses what the pixels hold: on held-out Stack clips its answer for "place" ranks finished
above unfinished clips little better than chance and is never "yes", while a linear probe on the ViT's own
clip features (VisionEncoder.clip_feature) ranks them well (figures in docs/BENCHMARKS.md). So a probe
per sub-goal kind, fitted on the corpus's labelled questions, answers where it beats the LLM on held-out
demos by `min_gain`; the LLM answers the rest. A kind is the sub-goal with its colour names taken out ("place
the cube on the cube"), and the probe reads the clip in grey: colours are the E-former's and the LLM's
business, the probe only says whether that kind of step is finished, whatever the colours.

Each probe's decision threshold is set on demos it was not fitted on (a third of them, by name): the lowest
that calls at most `max_fpr` of their unfinished steps done, because in the loop a false "done" cannot be
taken back (a cube let go too high falls) while a miss costs one check. Saved beside the weights.
"""
from __future__ import annotations

import re
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from embodied.envs.base import PALETTE
from embodied.planners.metrics import colour_pattern

HEAD_FILE = "done_head.safetensors"
INFO_FILE = "done_head.json"
_COLOURS = colour_pattern(PALETTE)


def kind(subgoal: str) -> str:
    """The sub-goal without its colour names: what one probe answers for."""
    return " ".join(re.findall(r"[a-z]+", _COLOURS.sub(" ", subgoal.lower())))


def clip_feature(model, video: torch.Tensor) -> torch.Tensor:
    """(B, F): the features a probe reads, of clips (B, T, H, W, 3) uint8 seen in grey. Whether a step is
    finished is geometry (a cube on the other, a hand closed), not colour; in colour, the features of a pair
    of cubes the probes were fitted on seldom are far from those of the other pairs (docs/BENCHMARKS.md)."""
    v = torch.as_tensor(video)
    grey = (v.float() * _LUMA.to(v.device)).sum(-1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    with torch.no_grad():
        return model.vision.clip_feature(model.vision(grey.expand(v.shape).contiguous()))


_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601


def _logistic(x: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-balanced, L2-regularised logistic regression (L-BFGS, full batch): (weight, bias)."""
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    pos = y.mean().clamp(1e-3, 1 - 1e-3)
    weight = torch.where(y > 0, 0.5 / pos, 0.5 / (1 - pos))
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, y, weight=weight) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def _threshold(logits: np.ndarray, labels: np.ndarray, max_fpr: float) -> float:
    """The lowest threshold at or above 0 (the class-balanced fit's own boundary) with at most max_fpr of
    the unfinished steps scoring above it."""
    neg = np.sort(logits[~labels])[::-1]
    k = int(np.floor(max_fpr * len(neg)))  # this many negatives may score above the threshold
    return float(max(neg[k], 0.0)) if k < len(neg) else 0.0


def detection_scores(pred: np.ndarray, labels: np.ndarray) -> dict:
    """TPR, FPR and F1 of yes/no calls against labels (both bool arrays), with the counts of each answer."""
    tp, fp, fn = int((pred & labels).sum()), int((pred & ~labels).sum()), int((~pred & labels).sum())
    return {"tpr": round(tp / max(1, labels.sum()), 4), "fpr": round(fp / max(1, (~labels).sum()), 4),
            "f1": round(2 * tp / max(1, 2 * tp + fp + fn), 4), "yes": int(labels.sum()), "no": int((~labels).sum())}


class DoneHead:
    """{kind: probe}; a probe holds the feature mean and spread it was fitted on, weight, bias, threshold."""

    def __init__(self, probes: dict[str, dict[str, torch.Tensor]] | None = None):
        self.probes = dict(probes or {})

    def __len__(self) -> int:
        return len(self.probes)

    def answers(self, subgoals: Sequence[str]) -> bool:
        """Whether a probe answers any of them (else no features need computing)."""
        return any(kind(s) in self.probes for s in subgoals)

    def logits(self, feature: torch.Tensor, subgoals: Sequence[str]) -> list[float | None]:
        """The probe's logit minus its threshold per sub-goal (> 0: done), None where no probe answers."""
        out = []
        for s in subgoals:
            p = self.probes.get(kind(s))
            if p is None:
                out.append(None)
                continue
            x = (feature.float().flatten() - p["mean"]) / p["std"]
            out.append(float(x @ p["weight"] + p["bias"] - p["threshold"]))
        return out

    @classmethod
    def fit(cls, samples: Sequence[tuple[str, torch.Tensor, bool, str, float]], max_fpr: float = 0.02,
            min_per_class: int = 10, l2: float = 1e-2, min_gain: float = 0.05) -> tuple["DoneHead", dict]:
        """samples: (sub-goal, clip feature, finished?, demo name, the LLM's log P(yes) - log P(no)). A probe
        per kind with at least `min_per_class` of each answer, kept where it beats the LLM's answers on the
        held-out third by `min_gain` F1 or more (a kind shared by tasks, "reach the cube" in Lift and Stack, is
        fitted on all of them: a small gain on the held-out demos bought false "undone" calls in the loop);
        report: per kind, both scores there."""
        by: dict[str, list] = defaultdict(list)
        for subgoal, feat, done, group, lm in samples:
            by[kind(subgoal)].append((feat.float().flatten(), bool(done), zlib.crc32(group.encode()) % 3 == 0, lm))
        probes, report = {}, {}
        for k, rows in sorted(by.items()):
            x = torch.stack([r[0] for r in rows])
            y = np.array([r[1] for r in rows])
            held = np.array([r[2] for r in rows])
            lm = detection_scores(np.array([r[3] for r in rows])[held] > 0, y[held])
            fit, cal = ~held, held
            if min(y[fit].sum(), (~y[fit]).sum(), y[cal].sum(), (~y[cal]).sum()) < max(1, min_per_class // 2) \
                    or min(y.sum(), (~y).sum()) < min_per_class:
                report[k] = {"probe": False, "why": "too few", "yes": int(y.sum()), "no": int((~y).sum()), "llm": lm}
                continue
            mean, std = x[fit].mean(0), x[fit].std(0) + 1e-5
            w, b = _logistic((x[fit] - mean) / std, torch.tensor(y[fit], dtype=torch.float32), l2)
            logit = (((x - mean) / std) @ w + b).numpy()
            t = _threshold(logit[cal], y[cal], max_fpr)
            held_out = detection_scores(logit[cal] > t, y[cal])
            better = held_out["f1"] >= lm["f1"] + min_gain
            if better:
                probes[k] = {"mean": mean, "std": std, "weight": w, "bias": b, "threshold": torch.tensor([t])}
            report[k] = {"probe": better, "why": "beats the LLM" if better else "the LLM is about as good",
                         "threshold": round(t, 4), "heldout": held_out, "llm": lm,
                         "fitted": detection_scores(logit[fit] > t, y[fit])}
        return cls(probes), report

    def save(self, path: str | Path, report: dict | None = None) -> None:
        """Into planner checkpoint dir `path`, beside the model it reads (two files, not a checkpoint of its own)."""
        from embodied.io import atomic_path, write_json
        from embodied.pretrained import write_weights

        path = Path(path)
        tensors = {f"{k}|{name}": v for k, p in self.probes.items() for name, v in p.items()}
        with atomic_path(path / HEAD_FILE) as tmp:
            write_weights(tmp, tensors)
        write_json(path / INFO_FILE, {"kinds": sorted(self.probes), "report": report or {}})

    @classmethod
    def load(cls, path: str | Path) -> "DoneHead":
        """The head saved in checkpoint dir `path`; an empty one where it has none."""
        from embodied.errors import EmbodiedError
        from embodied.io import read_safetensors

        f = Path(path) / HEAD_FILE
        if not f.exists():
            return cls()
        tensors = read_safetensors(f)
        probes: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
        for name, v in tensors.items():
            k, _, part = name.rpartition("|")
            probes[k][part] = v
        need = {"mean", "std", "weight", "bias", "threshold"}
        for k, p in probes.items():
            if set(p) != need:
                raise EmbodiedError(f"{f}: probe '{k}' has {sorted(p)}, expected {sorted(need)}")
        return cls(dict(probes))


def done_samples(model, dataset) -> list[tuple[str, torch.Tensor, bool, str, float]]:
    """(sub-goal, clip feature, finished?, demo, the LLM's log P(yes) - log P(no)) for every yes/no
    "Is '...' done?" question of an EgoCOT-format dataset (corpus records), the ViT run once per clip."""
    from tqdm import tqdm

    from embodied.datasets.corpus import done_question

    out = []
    with torch.no_grad():
        for i, s in enumerate(tqdm(dataset.samples, desc="done features", leave=False)):
            asked = []
            for q in s["qa"]:
                sub = q["question"][4:-7]
                if done_question(sub) == q["question"] and q["answer"] in ("yes", "no"):
                    asked.append((sub, q["answer"] == "yes"))
            if not asked:
                continue
            video = dataset[i]["video"][None]
            feat = clip_feature(model, video)[0]
            qs = [done_question(sub) for sub, _ in asked]
            lp = model.choice_logprobs(video, qs, ["yes", "no"], eformer_text=qs).tolist()
            demo = s.get("source_demo") or s["id"].rsplit("/t", 1)[0]  # recoloured copies go with their original
            out += [(sub, feat, yes, demo, a - b) for (sub, yes), (a, b) in zip(asked, lp)]
    return out

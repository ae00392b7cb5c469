"""`embodied eval-plan dataset=egoplan dataset.path=FILE dataset.video_root=DIR planner.type=egpt planner.path=CKPT`

Scores a planner on planning questions: multiple choice two ways (by answer likelihood, EgoPlan's
reference method: the choice with the lowest mean token loss given video and question; and by generation
with letter parsing), yes/no by likelihood, free-form answers with BLEU-1..4, ROUGE-L, CIDEr-D and, for
plans, sub-goal accuracy, LCS similarity and action executability. Per-sample predictions JSONL (a rerun
skips finished samples), summary.json, results.md.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from embodied import launch
from embodied.datasets.egocot import plan_start
from embodied.errors import EmbodiedError
from embodied.io import append_jsonl, atomic_path, read_jsonl, write_json


def choice_prompt(question: str, choices: list[str]) -> str:
    opts = " ".join(f"{letter}. {c}" for letter, c in zip("ABCD", choices))
    return f"{question} Options: {opts} Answer with the letter."


def parse_letter(text: str) -> int | None:
    """The option letter a generated answer names: "B", "(b)", "answer: B", "I pick C." Only a capital counts
    inside a sentence, so the article in "take a knife" is not option A."""
    m = (re.match(r"\s*\(?([ABCDabcd])\s*(?:[).:]|$)", text)
         or re.search(r"(?i:answer(?:\s+is)?)\s*[:\-]?\s*\(?([ABCD])\b", text)
         or re.search(r"\b([ABCD])\b", text))
    return "ABCD".index(m.group(1).upper()) if m else None


class _Answerer:
    """The planner's model answering questions (oracle: the reference answers, an upper bound)."""

    def __init__(self, kind: str, path: str | None, max_new_tokens: int):
        self.kind, self.max_new_tokens = kind, max_new_tokens
        self.model = None
        if kind in ("egpt", "blind"):
            from embodied.modeling import EmbodiedGPT

            if not path:
                raise EmbodiedError(f"planner.type={kind} needs planner.path=CHECKPOINT")
            self.model = EmbodiedGPT.from_pretrained(path).eval()
        elif kind != "oracle":
            raise EmbodiedError(f"planner.type={kind!r}: expected egpt, blind or oracle")

    def _video(self, frames: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(frames)[None]

    def likelihood_choice(self, frames, question: str, choices: list[str], label) -> tuple[int, list[float]]:
        if self.model is None:
            return label, []
        tok = self.model.tokenizer
        lp = self.model.choice_logprobs(self._video(frames), [question], choices, eformer_text=[question],
                                        blind=self.kind == "blind")[0]
        lengths = torch.tensor([len(tok(c, add_special_tokens=False)["input_ids"]) + 1 for c in choices])
        mean = (lp.cpu() / lengths).tolist()  # mean token log-likelihood: the lowest LM loss wins
        return int(np.argmax(mean)), [round(x, 4) for x in mean]

    def generate(self, frames, prompt: str, reference: str, task: str = "", start: str = "") -> str:
        if self.model is None:
            return reference
        return self.model.generate(self._video(frames), [prompt], self.max_new_tokens, eformer_text=[task or prompt],
                                   blind=self.kind == "blind", answer_start=[start] if start else None)[0]


def evaluate_sample(ans: _Answerer, s: dict, frames: np.ndarray) -> dict:
    rec = {"id": s["id"], "kind": s["kind"]}
    if s["choices"] is not None:
        pick, scores = ans.likelihood_choice(frames, s["question"], s["choices"], s["label"])
        text = ans.generate(frames, choice_prompt(s["question"], s["choices"]), "ABCD"[s["label"]], s["task_goal"])
        gen = parse_letter(text)
        rec.update(
            label=s["label"],
            likelihood_pick=pick,
            likelihood_scores=scores,
            generated=text,
            generation_pick=gen,
            likelihood_correct=pick == s["label"],
            generation_correct=gen == s["label"],
        )
    elif s["answer"].lower() in ("yes", "no"):
        pick, _ = ans.likelihood_choice(frames, s["question"], ["yes", "no"], 0 if s["answer"].lower() == "yes" else 1)
        rec.update(
            answer=s["answer"],
            prediction=["yes", "no"][pick],
            likelihood_correct=["yes", "no"][pick] == s["answer"].lower(),
        )
    else:
        # A plan opens by restating its task, as the planners in the loop force it to (plan_start).
        start = plan_start(s["task_goal"]) if s["kind"] == "plan" and s["task_goal"] else ""
        pred = ans.generate(frames, s["question"], s["answer"], s["task_goal"], start)
        rec.update(answer=s["answer"], prediction=pred)
    return rec


def score(records: list[dict]) -> dict:
    from embodied.envs.base import PALETTE
    from embodied.planners import parse_plan
    from embodied.planners.metrics import (
        colour_correct,
        executability,
        lcs_similarity,
        plan_exact,
        subgoal_accuracy,
        text_metrics,
    )

    by_kind = defaultdict(list)
    for r in records:
        by_kind[r["kind"]].append(r)
    out = {}
    for kind, rs in sorted(by_kind.items()):
        m: dict = {"samples": len(rs)}
        if "likelihood_correct" in rs[0]:
            m["accuracy_likelihood"] = float(np.mean([r["likelihood_correct"] for r in rs]))
        if "generation_correct" in rs[0]:
            m["accuracy_generation"] = float(np.mean([r["generation_correct"] for r in rs]))
        if "prediction" in rs[0] and "likelihood_correct" not in rs[0]:
            m.update(text_metrics([r["prediction"] for r in rs], [r["answer"] for r in rs]))
            plans = [(parse_plan(r["prediction"]), parse_plan(r["answer"])) for r in rs]
            if all(not ref.partial for _, ref in plans):  # the references are plans: structure metrics too
                skills = {s.verb.lower() for _, ref in plans for s in ref.subgoals}
                objects = {a.lower() for _, ref in plans for s in ref.subgoals for a in s.args}
                ex = [executability(p, skills, objects) for p, _ in plans]
                colour = [c for c in (colour_correct(p, r, list(PALETTE)) for p, r in plans) if c is not None]
                m.update(plan_exact_match=float(np.mean([plan_exact(p, r) for p, r in plans])),
                         colour_correct=float(np.mean(colour)) if colour else None, colour_plans=len(colour))
                m.update(
                    subgoal_accuracy=float(np.mean([subgoal_accuracy(p, r) for p, r in plans])),
                    lcs_similarity=float(np.mean([lcs_similarity(p, r) for p, r in plans])),
                    executability=float(np.mean([e for e in ex if e is not None]))
                    if any(e is not None for e in ex)
                    else 0.0,
                    parse_failures=sum(p.partial for p, _ in plans),
                )
                head = ("samples", "plan_exact_match", "colour_correct", "colour_plans")  # results.md's first rows
                m = {**{k: m[k] for k in head}, **{k: v for k, v in m.items() if k not in head}}
        out[kind] = m
    return out


def run(cfg: DictConfig, default_dir: Path, shard: launch.Shard | None = None, report: bool = False) -> dict | None:
    """The whole job; with `shard`, only that shard's samples (embodied/launch.py), no summary; with `report`,
    nothing answered: the summary of what the run folder holds (`embodied report`)."""
    from embodied.datasets.qa import SkipSample, load_planning_qa

    d = cfg.dataset
    if not d.path:
        raise EmbodiedError("dataset.path is not set: the questions file to evaluate")
    out = Path(cfg.out) if cfg.out else default_dir
    problems: list[str] = []
    samples = load_planning_qa(d.type, d.path, d.video_root, int(d.n_frames), bool(d.strict), problems)
    if cfg.limit:
        samples = samples[: int(cfg.limit)]
    pred_file = out / "predictions.jsonl"
    if shard is None and not report:  # a rerun continues it
        launch.begin(__name__, cfg, out, [pred_file], _id, ("limit", "out", "shards", "launcher"), "predictions*.jsonl")
    mine = samples
    if shard is not None:
        ids = set(launch.todo([s["id"] for s in samples], shard, pred_file, _id))
        mine, pred_file = [s for s in samples if s["id"] in ids], shard.path(pred_file)
    done = {r["id"]: r for r in (launch.records(pred_file, _id) if report else read_jsonl(pred_file, repair=True))}
    pending = [] if report else [s for s in mine if s["id"] not in done]
    ans = None  # loaded at the first sample to answer: not by a parent whose shards answered them all
    skipped = []
    torch.set_grad_enabled(False)
    for s in tqdm(pending, desc=f"eval-plan {cfg.planner.type}"):
        try:
            frames = s["frames"]()
        except SkipSample as e:
            print(f"warning: sample {s['id']}: {e}; skipped", flush=True)
            skipped.append({"id": s["id"], "reason": str(e)})
            continue
        ans = ans or _Answerer(cfg.planner.type, cfg.planner.path, int(cfg.max_new_tokens))
        rec = evaluate_sample(ans, s, frames)
        append_jsonl(pred_file, rec)
        done[rec["id"]] = rec
    if shard is not None:
        return None
    ids = {s["id"] for s in samples}
    records = [r for i, r in done.items() if i in ids]
    summary = {"dataset": str(d.path), "type": d.type, "planner": cfg.planner.type, "planner_path": cfg.planner.path,
               "samples": len(samples), "evaluated": len(records), "skipped_missing_video": len(skipped),
               "skipped_malformed_lines": len(problems), "metrics": score(records) if records else {}}
    write_json(out / "summary.json", summary)
    _table(summary, out / "results.md")
    print(json.dumps(summary))
    return summary


def _id(record: dict) -> str:
    return record["id"]  # a sample's key


HEADLINE = ("plan_exact_match", "colour_correct")  # what the closed loop needs of a plan, in bold


def _table(summary: dict, path: Path) -> None:
    lines = [f"planner: {summary['planner']} ({summary['planner_path'] or '-'}); dataset: {summary['dataset']}; "
             f"evaluated {summary['evaluated']}/{summary['samples']}, skipped {summary['skipped_missing_video']} "
             f"(missing video), {summary['skipped_malformed_lines']} malformed lines", "",
             "| kind | samples | metric | value |", "|---|---|---|---|"]
    for kind, m in summary["metrics"].items():
        for k, v in m.items():
            if k != "samples":
                lines.append(
                    f"| {kind} | {m['samples']} | **{k}** | **{v:.4f}** |"
                    if k in HEADLINE and v is not None
                    else f"| {kind} | {m['samples']} | {k} | {v:.4f} |"
                    if isinstance(v, float)
                    else f"| {kind} | {m['samples']} | {k} | {v} |"
                )
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")

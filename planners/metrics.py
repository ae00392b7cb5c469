"""Plan-evaluation metrics.

Tokenisation (all text metrics): lower-case, keep runs of [a-z0-9], drop everything else. This is
rouge-score's default tokeniser; BLEU and CIDEr-D then see the same tokens joined by spaces, which is what
sacrebleu (tokenize="none") and pycocoevalcap's Cider read. The tests check every metric against those
reference implementations on fixed pairs, to 1e-6.

BLEU-n: corpus-level, cumulative (geometric mean of the 1..n-gram precisions), brevity penalty, no
smoothing, in [0, 1]. ROUGE-L: mean over samples of the LCS F1. CIDEr-D: coco-caption's definition
(n = 1..4, tf-idf with document frequencies from the references, clipped counts, Gaussian length
penalty sigma = 6, x 10), mean over samples.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

from embodied.planners.plan import Plan


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4) -> float:
    """Corpus BLEU-n; `refs[i]` lists the references of `hyps[i]`."""
    match, total = [0] * n, [0] * n
    hyp_len = ref_len = 0
    for h, rs in zip(hyps, refs):
        hw, rws = tokens(h), [tokens(r) for r in rs]
        hyp_len += len(hw)
        # the reference length closest to the hypothesis (shorter wins ties), as sacrebleu does
        ref_len += min((abs(len(r) - len(hw)), len(r)) for r in rws)[1]
        for k in range(1, n + 1):
            hc = _ngrams(hw, k)
            best: Counter = Counter()
            for r in rws:
                best |= _ngrams(r, k)
            match[k - 1] += sum(min(c, best[g]) for g, c in hc.items())
            total[k - 1] += max(len(hw) - k + 1, 0)
    if hyp_len == 0 or min(match) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(match, total)) / n
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(log_p)


def _lcs(a: Sequence, b: Sequence) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hyps: Sequence[str], refs: Sequence[str]) -> float:
    scores = []
    for h, r in zip(hyps, refs):
        hw, rw = tokens(h), tokens(r)
        lcs = _lcs(hw, rw)
        if lcs == 0:
            scores.append(0.0)
            continue
        p, rec = lcs / len(hw), lcs / len(rw)
        scores.append(2 * p * rec / (p + rec))
    return sum(scores) / max(len(scores), 1)


def cider_d(hyps: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0) -> float:
    hyp_counts = [[_ngrams(tokens(h), k) for k in range(1, n + 1)] for h in hyps]
    ref_counts = [[[_ngrams(tokens(r), k) for k in range(1, n + 1)] for r in rs] for rs in refs]
    df: Counter = Counter()
    for rc in ref_counts:
        for gram in {g for r in rc for counts in r for g in counts}:
            df[gram] += 1
    log_n = math.log(float(len(refs)))

    def vec(counts: list[Counter]) -> tuple[list[dict], list[float], int]:
        v, norms = [], []
        for k, c in enumerate(counts):
            d = {g: tf * (log_n - math.log(max(1.0, df[g]))) for g, tf in c.items()}
            v.append(d)
            norms.append(math.sqrt(sum(x * x for x in d.values())))
        return v, norms, sum(counts[0].values())

    def sim(vh, vr, nh, nr, lh, lr) -> list[float]:
        out = []
        for k in range(n):
            val = sum(min(x, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, x in vh[k].items())
            if nh[k] != 0 and nr[k] != 0:
                val /= nh[k] * nr[k]
            out.append(val * math.exp(-((lh - lr) ** 2) / (2 * sigma ** 2)))
        return out

    scores = []
    for hc, rcs in zip(hyp_counts, ref_counts):
        vh, nh, lh = vec(hc)
        acc = [0.0] * n
        for rc in rcs:
            vr, nr, lr = vec(rc)
            acc = [a + s for a, s in zip(acc, sim(vh, vr, nh, nr, lh, lr))]
        scores.append(sum(acc) / n / len(rcs) * 10.0)
    return sum(scores) / max(len(scores), 1)


# -- plan structure ---------------------------------------------------------------------------------
def subgoal_accuracy(pred: Plan, ref: Plan) -> float:
    """Share of positions whose sub-goal is exactly the reference's (over the longer plan)."""
    p, r = [s.text.lower() for s in pred.subgoals], [s.text.lower() for s in ref.subgoals]
    if not p and not r:
        return 1.0
    return sum(a == b for a, b in zip(p, r)) / max(len(p), len(r))


def plan_exact(pred: Plan, ref: Plan) -> bool:
    """The whole step list, object names and colours included, is the reference's: what the loop needs."""
    return [s.text.lower() for s in pred.subgoals] == [s.text.lower() for s in ref.subgoals]


def colour_pattern(colours: Sequence[str]) -> re.Pattern:
    """Any of `colours` as a whole word; group 1 is the colour."""
    return re.compile(r"\b(" + "|".join(map(re.escape, colours)) + r")\b")


def colour_correct(pred: Plan, ref: Plan, colours: Sequence[str]) -> bool | None:
    """The colour words of the plan's steps, in order, are the reference's (None when the reference names
    none): a plan that stacks onto a cube that is not there fails here whatever its other words."""
    pattern = colour_pattern(colours)

    def mentions(plan: Plan) -> list[str]:
        return [c for s in plan.subgoals for c in pattern.findall(s.text.lower())]

    want = mentions(ref)
    return None if not want else mentions(pred) == want


def lcs_similarity(pred: Plan, ref: Plan) -> float:
    """Longest common subsequence of the sub-goal sequences over the longer length: order-aware partial credit."""
    p, r = [s.text.lower() for s in pred.subgoals], [s.text.lower() for s in ref.subgoals]
    if not p and not r:
        return 1.0
    return _lcs(p, r) / max(len(p), len(r))


def executability(pred: Plan, skills: set[str], objects: set[str]) -> float | None:
    """Share of the plan's verb(noun) actions that name a skill and only objects the env has
    (None when the plan has no actions)."""
    acts = [s for s in pred.subgoals if s.verb]
    if not acts:
        return None
    ok = sum(s.verb.lower() in skills and all(a.lower() in objects for a in s.args) for s in acts)
    return ok / len(acts)


def text_metrics(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    multi = [[r] for r in refs]
    out = {f"bleu{n}": bleu(hyps, multi, n) for n in range(1, 5)}
    out["rouge_l"] = rouge_l(hyps, refs)
    out["cider_d"] = cider_d(hyps, multi)
    return out

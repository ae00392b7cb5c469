"""Closed-loop metrics: a success rate's Wilson interval, and a planner scored in the closed loop against the
simulator, which knows the true sub-goal at every step.

Inputs are the runner's episode records: `subgoals` (the simulator's), `subgoal_trace` ([t, index, success]
whenever they changed), and the agent's `agent_log` (plans, "done" decisions, failures, re-plans) and
`checks` ([t of the clip, sub-goals asked, answers]). A plan step counts as done in the simulator when its
text is one of the simulator's sub-goals and the simulator's index has passed it (or the task succeeded);
a step naming something the scene does not have is never done.

    first plan      exact match of the whole step list with the simulator's remaining sub-goals, and the
                    share of positions that agree
    done detection  every check of the current step is a yes/no decision: precision, recall and F1 against
                    the simulator at the clip's last frame; delay = steps from the simulator completing a step
                    to the agent moving on (only steps the agent did move on from)
    spurious        failures while nothing regressed and no budget was spent: an earlier step judged undone
                    that the simulator still counts as done, or a plan without steps
    re-plans        the new plan's first step equals the simulator's sub-goal at that moment; and the whole
                    new plan equals the simulator's remaining sub-goals
"""
from __future__ import annotations

import bisect
import math
from pathlib import Path


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def sim_at(trace: list[list], t: int) -> tuple[int, bool]:
    """The simulator's (sub-goal index, success) at step t."""
    i = bisect.bisect_right([row[0] for row in trace], t) - 1
    row = trace[max(i, 0)]
    return int(row[1]), bool(row[2])


def sim_done(step: str, subgoals: list[str], index: int, success: bool) -> bool:
    return success or (step in subgoals and index > subgoals.index(step))


def _plans(log: list[dict]) -> list[tuple[int, list[str], list[int]]]:
    """Each plan the agent followed: (t it was made, its steps, the t of each step's "done")."""
    plans = []
    for e in log:
        if e["event"] in ("plan", "replan") and (e["plan"] or not plans):
            plans.append((e["t"], e["plan"], []))
        elif e["event"] == "done" and plans:
            plans[-1][2].append(e["t"])
    return plans


def score_episode(res: dict) -> dict:
    """Per-episode counts; `aggregate` sums them over episodes."""
    sub, trace, log = (
        list(res.get("subgoals", [])),
        res.get("subgoal_trace") or [[0, 0, False]],
        res.get("agent_log", []),
    )

    def done_at(step: str, t: int) -> bool:
        return sim_done(step, sub, *sim_at(trace, t))

    out = {"success": bool(res.get("success")), "error": bool(res.get("error")), "replans": int(res.get("replans", 0)),
           "perturbed": bool((res.get("perturbation") or {}).get("applied")), "tp": 0, "fp": 0, "fn": 0, "tn": 0,
           "regress_checks": 0, "regress_right": 0, "delays": [], "spurious": 0, "failures": 0,
           "replan_first_ok": 0, "replan_exact": 0, "replans_scored": 0}
    first = log[0]["plan"] if log and log[0]["event"] == "plan" else []
    index0, _ = sim_at(trace, log[0]["t"] if log else 0)
    truth = sub[index0:]
    out["first_plan_exact"] = first == truth
    out["first_plan_step_acc"] = sum(a == b for a, b in zip(first, truth)) / max(len(first), len(truth), 1)
    out["by_step"] = {}  # the same counts per the step's verb ("place"): where a detector is late or early
    for t, asked, answers in res.get("checks", []):
        pred, real = bool(answers[0]), done_at(asked[0], t)
        cell = ("tp" if real else "fp") if pred else ("fn" if real else "tn")
        out[cell] += 1
        verb = out["by_step"].setdefault(asked[0].split()[0] if asked[0] else "", {"tp": 0, "fp": 0, "fn": 0, "tn": 0})
        verb[cell] += 1
        if len(asked) > 1:
            out["regress_checks"] += 1
            out["regress_right"] += bool(answers[1]) == done_at(asked[1], t)
    for _, steps, done_ts in _plans(log):
        for step, t in zip(steps, done_ts):
            if not done_at(step, t):
                continue
            start = t  # back to where the simulator's "done" began, in this unbroken stretch of it
            while start > 0 and done_at(step, start - 1):
                start -= 1
            out["delays"].append(t - start)
    for e in log:
        if e["event"] == "failure":
            out["failures"] += 1
            if (
                e.get("cause") == "no_steps"
                or e.get("cause") == "regressed"
                and done_at(e["undone"], e.get("clip_t", e["t"]))
            ):
                out["spurious"] += 1
        elif e["event"] == "replan" and e["plan"]:
            index, success = sim_at(trace, e["t"])
            if success:
                continue
            out["replans_scored"] += 1
            out["replan_first_ok"] += e["plan"][0] == sub[index]
            out["replan_exact"] += e["plan"] == sub[index:]
    return out


def aggregate(scores: list[dict]) -> dict:
    """Totals and rates of a cell (one planner, one condition); intervals are the caller's."""
    n = len(scores)
    tot = {k: sum(s[k] for s in scores) for k in ("tp", "fp", "fn", "tn", "regress_checks", "regress_right",
                                                  "spurious", "failures", "replans", "replan_first_ok",
                                                  "replan_exact", "replans_scored", "success", "error")}
    delays = sorted(d for s in scores for d in s["delays"])
    precision = tot["tp"] / max(tot["tp"] + tot["fp"], 1)
    recall = tot["tp"] / max(tot["tp"] + tot["fn"], 1)
    return {
        "episodes": n, "successes": tot["success"], "errors": tot["error"],
        "perturbed_episodes": sum(s["perturbed"] for s in scores),
        "first_plan_exact": sum(s["first_plan_exact"] for s in scores),
        "first_plan_step_accuracy": sum(s["first_plan_step_acc"] for s in scores) / max(n, 1),
        "done": {"tp": tot["tp"], "fp": tot["fp"], "fn": tot["fn"], "tn": tot["tn"], "precision": precision,
                 "recall": recall, "f1": 2 * precision * recall / max(precision + recall, 1e-9),
                 "delay_mean": sum(delays) / len(delays) if delays else None,
                 "delay_median": delays[len(delays) // 2] if delays else None,
                 "delay_max": delays[-1] if delays else None, "steps_moved_on": len(delays)},
        "done_by_step": _by_step(scores),
        "regression_check_accuracy": tot["regress_right"] / max(tot["regress_checks"], 1),
        "episodes_with_spurious_failure": sum(s["spurious"] > 0 for s in scores),
        "spurious_failures": tot["spurious"], "failures": tot["failures"], "replans": tot["replans"],
        "replans_scored": tot["replans_scored"], "replan_first_step_correct": tot["replan_first_ok"],
        "replan_exact": tot["replan_exact"],
    }


def _by_step(scores: list[dict]) -> dict:
    """Done detection per the step's verb: the counts and F1."""
    out: dict = {}
    for s in scores:
        for verb, c in s.get("by_step", {}).items():
            tot = out.setdefault(verb, {"tp": 0, "fp": 0, "fn": 0, "tn": 0})
            for k in tot:
                tot[k] += c[k]
    for c in out.values():
        c["f1"] = round(2 * c["tp"] / max(1, 2 * c["tp"] + c["fp"] + c["fn"]), 4)
    return out


def plot_episode(res: dict, path: Path, title: str = "") -> None:
    """The planner's current step (as an index into the simulator's sub-goals) over time against the
    simulator's own index; failures, re-plans and the perturbation marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embodied.io import atomic_path

    sub = list(res.get("subgoals", []))
    trace = res.get("subgoal_trace") or [[0, 0, False]]
    end = max(int(res.get("steps", 0)), trace[-1][0] + 1)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    xs = [row[0] for row in trace] + [end]
    ys = [len(sub) if row[2] else row[1] for row in trace]
    ax.step(xs, ys + ys[-1:], where="post", color="black", lw=2, label="simulator")
    px, py = [], []
    for made, steps, done_ts in _plans(res.get("agent_log", [])):
        times = [made] + done_ts[: max(len(steps) - 1, 0)]
        for k, t in enumerate(times):
            px.append(t)
            py.append(sub.index(steps[k]) if k < len(steps) and steps[k] in sub else -1)
    if px:
        ax.step(px + [end], py + py[-1:], where="post", color="tab:blue", lw=1.5, label="planner's step")
    for e in res.get("agent_log", []):
        if e["event"] == "failure":
            ax.axvline(e["t"], color="tab:red", ls="--", lw=1)
        elif e["event"] == "replan":
            ax.axvline(e["t"], color="tab:orange", ls=":", lw=2)
    pert = res.get("perturbation") or {}
    if pert.get("applied"):
        ax.axvspan(pert["step"], pert["step"] + 1, color="grey", alpha=0.4, label=pert.get("kind"))
    ax.plot([], [], color="tab:red", ls="--", label="failure")
    ax.plot([], [], color="tab:orange", ls=":", label="re-plan")
    ax.set_yticks(range(-1, len(sub) + 1))
    ax.set_yticklabels(["(not in scene)"] + [s[:28] for s in sub] + ["success"], fontsize=7)
    ax.set_ylim(-1.5, len(sub) + 0.5)
    ax.set_xlim(0, end)
    ax.set_xlabel("step")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)

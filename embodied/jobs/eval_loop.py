"""`embodied eval-loop`: planners scored in the closed loop against the simulator's own sub-goals.

Every planner (egpt, and blind and oracle as bounds) runs every condition (no perturbation, drop, ...) on the
same held-out seeds, driving a controller that executes perfectly what it is told (the scripted skill expert
following the planner's current sub-goal) or a learned policy. Scores (embodied/metrics.py): first-plan
exact match, done-detection precision/recall/F1 and delay, spurious failures, re-plan correctness, success and
re-plans, with Wilson intervals. Writes per cell `episodes.jsonl` (a rerun skips finished seeds), a PNG per
episode and mp4s of the first seeds; then `summary.json` and `results.md`.
"""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embodied import launch
from embodied.errors import EmbodiedError

KINDS = ("egpt", "blind", "oracle")
RESUMABLE = ("n", "workers", "video_episodes", "plots", "out", "planner.batch", "shards", "launcher")


def planner_specs(cfg: DictConfig) -> list[tuple[str, str, str | None]]:
    """(cell name, kind, checkpoint) per entry of `planners`: KIND or KIND:PATH."""
    entries = [cfg.planners] if isinstance(cfg.planners, str) else list(cfg.planners or [])
    if not entries:
        raise EmbodiedError("planners is empty: give some of egpt, blind, oracle (or KIND:PATH)")
    specs, names = [], set()
    for e in entries:
        kind, _, path = str(e).partition(":")
        if kind not in KINDS:
            raise EmbodiedError(f"planners: '{e}' is not one of {list(KINDS)} (or KIND:PATH)")
        path = path or (cfg.planner.path if kind != "oracle" else None)
        if kind != "oracle" and not path:
            raise EmbodiedError(f"planners: '{kind}' needs a checkpoint: planner.path=DIR or {kind}:DIR")
        name = kind if not str(e).partition(":")[2] else f"{kind}_{Path(path).parent.name or Path(path).name}"
        while name in names:
            name += "_"
        names.add(name)
        specs.append((name, kind, path))
    return specs


def conditions(cfg: DictConfig) -> list[tuple[str, dict | None]]:
    names = [cfg.conditions] if isinstance(cfg.conditions, str) else list(cfg.conditions or [])
    if not names:
        raise EmbodiedError("conditions is empty: give none and/or names in perturbations")
    lib = OmegaConf.to_container(cfg.perturbations, resolve=True) or {}
    bad = [c for c in names if c != "none" and c not in lib]
    if bad:
        raise EmbodiedError(f"conditions: '{bad[0]}' is neither none nor one of perturbations {sorted(lib)}")
    return [(c, None if c == "none" else lib[c]) for c in names]


def run(cfg: DictConfig, default_dir: Path, shard: launch.Shard | None = None, report: bool = False) -> dict | None:
    """The whole job; with `shard`, only that shard's episodes of every cell (embodied/launch.py), no summary;
    with `report`, no episodes: the summary of what the run folder holds (`embodied report`)."""
    from embodied.io import read_jsonl, write_json
    from embodied.metrics import aggregate, score_episode, wilson

    n, seed, workers = int(cfg.n), int(cfg.seed), int(cfg.workers)
    if n < 1 or workers < 1:
        raise EmbodiedError(f"n={n}, workers={workers}: expected positive numbers")
    specs, conds = planner_specs(cfg), conditions(cfg)
    if cfg.policy.type not in ("expert", "learned"):
        raise EmbodiedError(f"policy.type: unknown '{cfg.policy.type}'; expected expert or learned")
    if cfg.policy.type == "learned" and not isinstance(cfg.policy.path, str):
        raise EmbodiedError("policy.type=learned needs one policy directory: policy.path=DIR")
    out = Path(cfg.out) if cfg.out else default_dir
    seeds = range(seed, seed + n)
    cell_dirs = [out / cond / name for cond, _ in conds for name, _, _ in specs]
    if shard is None and not report:
        launch.begin(__name__, cfg, out, [sub / "episodes.jsonl" for sub in cell_dirs], _seed, RESUMABLE,
                     "episodes*.jsonl")
    cells = []
    for cond, perturbation in conds:
        env_cfg = {**OmegaConf.to_container(cfg.env, resolve=True), "perturbation": perturbation}
        for name, kind, path in specs:
            sub = out / cond / name
            jsonl, mine = sub / "episodes.jsonl", list(seeds)
            if shard is not None:
                mine, jsonl = launch.todo(mine, shard, jsonl, _seed), shard.path(jsonl)
            results = launch.records(jsonl, _seed) if report else read_jsonl(jsonl, repair=True)
            if not report and not set(mine) <= {r["seed"] for r in results}:
                results = _run_cell(cfg, env_cfg, sub, name, kind, path, cond, mine, jsonl, seeds)
            if shard is not None:
                continue
            results = [r for r in results if r["seed"] in seeds]
            cell = {"condition": cond, "planner": name, "checkpoint": path, **_with_intervals(
                aggregate([score_episode(r) for r in results]), wilson)}
            write_json(sub / "summary.json", cell)
            print(json.dumps({k: cell[k] for k in ("condition", "planner", "success_rate", "first_plan_exact_rate",
                                                    "done", "spurious_rate", "replan_first_step_rate")}), flush=True)
            cells.append(cell)
    if shard is not None:
        return None
    summary = {"task": cfg.env.task, "seeds": [seed, seed + n - 1], "controller": _controller(cfg, env_cfg),
               "cells": cells, "out": str(out)}
    write_json(out / "summary.json", summary)
    _table(summary, out / "results.md")
    return summary


def _seed(record: dict) -> int:
    return record["seed"]  # an episode's key within its cell


def _run_cell(cfg: DictConfig, env_cfg: dict, sub: Path, name: str, kind: str, path: str | None, cond: str,
              seeds: list[int], jsonl: Path, all_seeds: range) -> list[dict]:
    """One planner under one condition on `seeds`, each finished episode appended to `jsonl`."""
    from embodied.envs.runner import run_episodes
    from embodied.jobs.rollout import make_agent_factory, video_cameras
    from embodied.metrics import plot_episode

    policy_path = cfg.policy.path if cfg.policy.type == "learned" else None
    cell_cfg = OmegaConf.create({"policy": OmegaConf.to_container(cfg.policy, resolve=True),
                                 "planner": {"type": kind, "path": path, "batch": cfg.planner.get("batch")},
                                 "agent": OmegaConf.to_container(cfg.agent, resolve=True),
                                 "video": True, "video_camera": None})
    make, _, together = make_agent_factory(cell_cfg, env_cfg, policy_path)
    cams = video_cameras(cell_cfg, env_cfg)

    def on_episode(res: dict, _traj) -> None:
        if cfg.plots:
            verdict = "success" if res["success"] else "failure"
            plot_episode(res, sub / "plots" / f"seed{res['seed']:06d}.png",
                         f"{env_cfg['task']} seed {res['seed']}, {cond}, planner {name}: {verdict}, "
                         f"{res.get('replans', 0)} re-plans")

    return run_episodes(env_cfg, make, seeds=seeds, workers=int(cfg.workers), jsonl=jsonl,
                        video_dir=sub / "videos" if cams else None, video_camera=cams,
                        video_seeds=set(all_seeds[: int(cfg.video_episodes)]), on_episode=on_episode,
                        total=len(seeds), desc=f"eval-loop {env_cfg['task']} {cond} {name}", together=together)


def _controller(cfg: DictConfig, env_cfg: dict) -> str:
    from embodied.policies.experts import follows_subgoal

    if cfg.policy.type == "learned":
        return f"learned policy {cfg.policy.path}"
    kind = str(cfg.policy.expert)
    follows = follows_subgoal(env_cfg["backend"], env_cfg["task"], kind)
    return f"scripted {kind if follows else 'waypoint'} expert" + (
        "" if follows else " (runs the whole task; it does not follow the sub-goal)"
    )


def _with_intervals(m: dict, wilson) -> dict:
    """Rates with 95% Wilson intervals beside the counts they come from."""
    def rate(k: int, n: int) -> tuple[float | None, list[float] | None]:
        return (k / n, [round(x, 4) for x in wilson(k, n)]) if n else (None, None)

    n = m["episodes"]
    for key, k, total in (("success", m["successes"], n), ("first_plan_exact", m["first_plan_exact"], n),
                          ("spurious", m["episodes_with_spurious_failure"], n),
                          ("replan_first_step", m["replan_first_step_correct"], m["replans_scored"]),
                          ("replan_exact", m["replan_exact"], m["replans_scored"])):
        m[f"{key}_rate"], m[f"{key}_wilson95"] = rate(k, total)
    m["replans_per_episode"] = m["replans"] / max(n, 1)
    return m


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _table(summary: dict, path: Path) -> None:
    from embodied.io import atomic_path

    lines = [
        f"# eval-loop: {summary['task']}, seeds {summary['seeds'][0]}-{summary['seeds'][1]}, "
        f"controller: {summary['controller']}",
        "",
        "| condition | planner | success (95% CI) | first plan exact | step acc. | done P / R / F1 | delay mean / max "
        "| spurious (episodes) | re-plan first step | re-plans / ep. | episodes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in summary["cells"]:
        d = c["done"]
        ci = c["success_wilson95"]
        delay = "-" if d["delay_mean"] is None else f"{d['delay_mean']:.1f} / {d['delay_max']}"
        lines.append(
            f"| {c['condition']} | {c['planner']} | {_pct(c['success_rate'])} ({_pct(ci[0])}-{_pct(ci[1])}) | "
            f"{_pct(c['first_plan_exact_rate'])} | {_pct(c['first_plan_step_accuracy'])} | "
            f"{d['precision']:.2f} / {d['recall']:.2f} / {d['f1']:.2f} | {delay} | {_pct(c['spurious_rate'])} | "
            f"{_pct(c['replan_first_step_rate'])} ({c['replans_scored']}) | "
            f"{c['replans_per_episode']:.2f} | {c['episodes']} |"
        )
    lines += [
        "",
        "Done detection per step (checks of the current step: F1, misses, false calls):",
        "",
        "| condition | planner | " + " | ".join(_verbs(summary)) + " |",
        "|---|---|" + "---|" * len(_verbs(summary)),
    ]
    for c in summary["cells"]:
        by = c.get("done_by_step", {})
        lines.append(f"| {c['condition']} | {c['planner']} | " + " | ".join(
            f"{by[v]['f1']:.2f} ({by[v]['fn']} / {by[v]['fp']})" if v in by else "-" for v in _verbs(summary)) + " |")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _verbs(summary: dict) -> list[str]:
    verbs: list[str] = []
    for c in summary["cells"]:
        verbs += [v for v in c.get("done_by_step", {}) if v not in verbs]
    return verbs

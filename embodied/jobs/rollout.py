"""`embodied rollout`: run a policy (scripted expert or learned, optionally driven by a planner through
the EmbodiedAgent loop) for N episodes over parallel envs; JSONL per episode (a rerun skips finished
seeds), mp4s with the sub-goal drawn on them, summary.json, results.md, and a success-against-demos plot
when several learned policies are compared."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embodied import launch
from embodied.envs.runner import run_episodes
from embodied.errors import EmbodiedError
from embodied.io import atomic_path, read_jsonl, write_json
from embodied.metrics import wilson
from embodied.policies import load_policy, make_expert

RESUMABLE = ("n", "workers", "video", "video_camera", "out", "planner.batch", "shards", "launcher")


def _policy_paths(cfg) -> list[str | None]:
    if cfg.policy.type == "auto":  # the shipped learned policy for the task where there is one, else the expert
        path = (cfg.policy.get("shipped") or {}).get(cfg.env.get("task"))
        return [path] if path else [None]
    if cfg.policy.type == "expert":
        return [None]
    if cfg.policy.type != "learned":
        raise EmbodiedError(f"policy.type: unknown '{cfg.policy.type}'; expected auto, expert or learned")
    if not cfg.policy.path:
        raise EmbodiedError("policy.type=learned needs policy.path=DIR (or a list of policy directories)")
    return [cfg.policy.path] if isinstance(cfg.policy.path, str) else list(cfg.policy.path)


def check_policy_fits(policy, env_cfg: dict) -> None:
    """A policy made for another env fails here, naming both, before any worker starts: its task, the cameras
    it reads and their frame size, its action and proprio shapes."""
    from embodied.envs import make_env

    made = policy.cfg.env or {}
    if made.get("task") and made["task"] != env_cfg.get("task"):
        def name(c: dict) -> str:
            return " ".join(str(x) for x in (c.get("backend"), c.get("task")) if x)

        raise EmbodiedError(f"policy made for {name(made)}; env is {name(env_cfg)}")
    missing = [c for c in policy.cameras if c not in (env_cfg.get("cameras") or [])]
    if missing:
        raise EmbodiedError(f"policy reads camera{'s' if len(policy.cameras) > 1 else ''} {policy.cameras}; "
                            f"env.cameras is {env_cfg.get('cameras')}")
    env = make_env(env_cfg)
    try:
        # the env's own size: a config that leaves height/width out gets the env's default
        size, want = (env.unwrapped.height, env.unwrapped.width), (made.get("height"), made.get("width"))
        if policy.cameras and None not in want and size != want:
            raise EmbodiedError(f"policy trained on {want[0]}x{want[1]} frames; env.height x env.width is "
                                f"{size[0]}x{size[1]}")
        policy.check_env(int(env.action_space.shape[0]), int(env.observation_space["proprio"].shape[0]))
    finally:
        env.close()


def video_cameras(cfg, env_cfg: dict) -> list[str] | None:
    """The cameras an mp4 shows side by side: `video_camera` (one or a list), by default the first camera and,
    when a planner watches another one, that camera beside it (what the planner saw)."""
    cams = env_cfg.get("cameras") or []
    chosen = cfg.get("video_camera")
    if chosen:
        chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    elif cams:
        ego = cfg.agent.get("camera") or cams[-1]
        ego = [ego] if isinstance(ego, str) else list(ego)
        chosen = [cams[0]] + ([c for c in ego if c != cams[0]] if cfg.planner.type != "none" else [])
    else:
        return None
    bad = [c for c in chosen if c not in cams]
    if cfg.video and bad:
        raise EmbodiedError(f"video_camera: '{bad[0]}' is not one of env.cameras {cams}")
    return chosen


def planner_camera(camera, planner, env_cfg: dict) -> str | list[str]:
    """What the planner watches: agent.camera when set, else the cameras its checkpoint was trained on, else
    the last of env.cameras (the wrist). A list means one clip per camera."""
    cams = env_cfg.get("cameras") or []
    if camera:
        chosen = [camera] if isinstance(camera, str) else list(camera)
    elif planner is not None and planner.cameras:
        chosen = planner.cameras
        if any(c not in cams for c in chosen):
            raise EmbodiedError(f"the planner was trained on cameras {chosen}; env.cameras is {cams} "
                                f"(add them, or set agent.camera)")
    else:
        chosen = cams[-1:]
    if planner is not None and (not chosen or any(c not in cams for c in chosen)):
        raise EmbodiedError(f"agent.camera={chosen}: expected some of env.cameras {cams}")
    return (chosen[0] if len(chosen) == 1 else chosen) if chosen else ""


def _detector_fits(planner, env_cfg: dict) -> None:
    """A success detector whose cameras the env does not render is switched off, with a note: the clip's head
    and the LLM judge every step then (as for a checkpoint without a detector)."""
    cams = env_cfg.get("cameras") or []
    missing = [c for c in planner.detector_cameras if c not in cams]
    if missing:
        print(f"note: the planner's success detector reads cameras {planner.detector_cameras}; env.cameras is {cams}: "
              "it is off (add the cameras to use it)", file=sys.stderr, flush=True)
        planner.detector = None


def make_agent_factory(cfg, env_cfg: dict, policy_path: str | None):
    """(make, policy, together): make() builds what the runner drives (the expert or learned policy, wrapped in
    the agent loop when a planner is configured); `together` is run_episodes' way of stepping the agents when
    they share one planner in batches (planner.batch=true: planners/batching.py), else None."""
    from embodied.agent import AgentConfig, EmbodiedAgent
    from embodied.planners import make_planner
    from embodied.planners.batching import PlanBatcher
    from embodied.policies import load_policy
    from embodied.policies.base import ensemble_weight

    policy = None
    if policy_path is not None:
        policy = load_policy(policy_path)
        check_policy_fits(policy, env_cfg)
        if cfg.policy.get("ensemble") is not None:
            policy.cfg.ensemble = ensemble_weight(cfg.policy.ensemble)
    planner, together = None, None
    if cfg.planner.type != "none":
        planner = make_planner(cfg.planner.type, cfg.planner.path, compile=bool(cfg.planner.get("compile")))
        _detector_fits(planner, env_cfg)
        if cfg.planner.get("batch") and planner.batched:
            planner = PlanBatcher(planner)
            together = planner.run
    agent_cfg = AgentConfig(**OmegaConf.to_container(cfg.agent, resolve=True))
    agent_cfg.camera = planner_camera(agent_cfg.camera, planner, env_cfg)

    kind = str(cfg.policy.get("expert") or "waypoint")
    make_expert(env_cfg["backend"], env_cfg["task"], kind=kind)  # a bad expert kind fails here, not in a worker

    def make():
        inner = policy.actor() if policy is not None else make_expert(env_cfg["backend"], env_cfg["task"],
                                                                        noise=float(cfg.policy.noise), kind=kind)
        return EmbodiedAgent(planner, inner, agent_cfg) if planner is not None else inner

    return make, policy, together


def run(cfg: DictConfig, default_dir: Path, shard: launch.Shard | None = None, report: bool = False) -> dict | None:
    """The whole job; with `shard`, only that shard's episodes of every policy (embodied/launch.py), no summary;
    with `report`, no episodes: the summary of what the run folder holds (`embodied report`)."""
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    out = Path(cfg.out) if cfg.out else default_dir
    paths = _policy_paths(cfg)
    camera = video_cameras(cfg, env_cfg)
    names = []
    for j, path in enumerate(paths):
        name = _name(path) if path else "expert"
        names.append(f"{name}_{j}" if any(_name(p) == name for p in paths[:j]) else name)
    subs = [out / name if len(paths) > 1 else out for name in names]
    n, seed = int(cfg.n), int(cfg.seed)
    if shard is None and not report:
        # A rerun into the same out= continues it (finished seeds are skipped): more episodes, other workers.
        launch.begin(__name__, cfg, out, [sub / "episodes.jsonl" for sub in subs], _seed, RESUMABLE, "episodes*.jsonl")
    rows = []
    for path, name, sub in zip(paths, names, subs):
        sub.mkdir(parents=True, exist_ok=True)
        jsonl, mine = sub / "episodes.jsonl", list(range(seed, seed + n))
        if shard is not None:
            mine, jsonl = launch.todo(mine, shard, jsonl, _seed), shard.path(jsonl)
        if report or set(mine) <= {r["seed"] for r in read_jsonl(jsonl, repair=True)}:  # nothing to run here
            if shard is None:
                rows.append(_row(cfg, env_cfg, path, name, sub, load_policy(path) if path else None,
                                 launch.records(jsonl, _seed)))
            continue
        make, policy, together = make_agent_factory(cfg, env_cfg, path)

        def print_episode(res: dict, _traj) -> None:
            line = (f"episode seed={res['seed']} success={res['success']} steps={res['steps']} "
                    f"instruction='{res['instruction']}'" + (f" error={res['error']}" if res.get("error") else ""))
            if "first_plan" in res:
                line += f" plan={res['first_plan']} replans={res['replans']}"
                for e in res["agent_log"][1:]:  # sub-goal progress, failures and re-plans, in order
                    what = e.get("subgoal", "") if e["event"] == "done" else e.get("reason", "")
                    if e["event"] == "replan":
                        what += f" -> new plan {e['plan']}"
                    line += f"\n    t={e['t']:3d} {e['event']}: {what}"
            if "video" in res:
                line += f" video={res['video']}"
            print(line, flush=True)

        results = run_episodes(env_cfg, make, seeds=mine, workers=int(cfg.workers),
                               jsonl=jsonl, video_dir=(sub / "videos") if cfg.video else None,
                               video_camera=camera, on_episode=print_episode, total=len(mine),
                               desc=f"rollout {env_cfg['task']} {name}", together=together)
        if shard is not None:
            continue
        rows.append(_row(cfg, env_cfg, path, name, sub, policy, results))
    if shard is not None:
        return None
    summary = rows[0] if len(rows) == 1 else {"policies": rows, "out": str(out)}
    if len(rows) > 1:
        write_json(out / "summary.json", summary)
        _plot_vs_demos(rows, out / "success_vs_demos.png")
    _table(rows, out / "results.md")
    print(json.dumps(summary))
    return summary


def _row(cfg: DictConfig, env_cfg: dict, path: str | None, name: str, sub: Path, policy, results: list[dict]) -> dict:
    """One policy's summary (written to its folder's summary.json)."""
    n, seed = int(cfg.n), int(cfg.seed)
    results = [r for r in results if seed <= r["seed"] < seed + n]
    k = sum(r["success"] for r in results)
    lo, hi = wilson(k, len(results))
    row = {"task": env_cfg["task"], "policy": name if path else "expert", "planner": cfg.planner.type,
           "policy_type": policy.cfg.type if policy else "expert",
           "n_demos": (policy.cfg.train_info or {}).get("n_demos") if policy else None,
           "episodes": len(results), "successes": k, "success_rate": k / max(len(results), 1),
           "wilson95": [round(lo, 4), round(hi, 4)],
           "errors": sum(1 for r in results if r.get("error")),
           "flagged_nonfinite": sum(1 for r in results if r.get("nonfinite_actions")),
           "replans": sum(r.get("replans", 0) for r in results), "out": str(sub)}
    write_json(sub / "summary.json", row)
    return row


def _seed(record: dict) -> int:
    return record["seed"]  # an episode's key within its policy's folder


def _name(path: str) -> str:
    """runs/cnn10/best -> cnn10_best: train-policy's best/ and last/ are named by their run."""
    p = Path(path)
    return f"{p.parent.name}_{p.name}" if p.name in ("best", "last") else p.name


def _table(rows: list[dict], path: Path) -> None:
    lines = ["| task | policy | planner | demos | success | 95% CI | episodes |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['policy']} | {r['planner']} | {r['n_demos'] or ''} | "
            f"{100 * r['success_rate']:.0f}% | {100 * r['wilson95'][0]:.0f}-{100 * r['wilson95'][1]:.0f}% | "
            f"{r['episodes']} |"
        )
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _plot_vs_demos(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for kind in sorted({r["policy_type"] for r in rows}):
        pts = sorted((r["n_demos"] or 0, r["success_rate"], r["wilson95"]) for r in rows if r["policy_type"] == kind)
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        err = [[p[1] - p[2][0] for p in pts], [p[2][1] - p[1] for p in pts]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=kind)
    ax.set_xlabel("demos")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.05, 1.05)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)

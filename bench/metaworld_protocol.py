"""EmbodiedGPT's control protocol on Meta-World: tasks x {10, 25} demos x 2 cameras, the EmbodiedGPT
policy and both baselines trained on the same demos in the same run, success over N rollouts on fresh seeds.

    python bench/metaworld_protocol.py --planner tiny/planner --out runs/mw \
        [--tasks assembly bin-picking button-press-topdown drawer-open hammer] [--demos 10 25] \
        [--cameras corner gripperPOV] [--episodes 50] [--epochs 400] [--cnn-epochs 150]
        [--aux-object [--aux-scenes 300]] [--pixel-keypoints 32]
        [--fovy corner=30] [--train-seeds 0 1 2] [--ties later] [--restarts 3 [--select-episodes 20]]

A cell from one training run of a 10-demo policy can move by 20+ points between training seeds (measured:
assembly from the corner, 32-62%), so `--train-seeds` trains each cell once per seed and reports the mean,
with the range beside it. Seed 0's run keeps the plain name (egpt10), so earlier studies extend in place.
`--restarts K` makes each cell K runs (seeds S..S+K-1) of which train-policy keeps the one that does best on
held-out selection seeds (train-policy restarts=K; the cell is then egpt10_rK).
Every step is an `embodied` job (collect, train-policy), so an interrupted study resumes where it stopped.
Prints the table and writes out/results.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

POLICIES = ("egpt", "global", "cnn")


def job(*args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "embodied.cli", *args])
    if r.returncode != 0:
        raise SystemExit(f"failed: embodied {' '.join(args)}")


def reusable(made: Path, folder: Path, name: str, *args: str, may_differ: tuple[str, ...] = ("out",)) -> None:
    """A rerun reuses finished demos and cells; only if they were made by this very command (other flags,
    such as --noise, --fovy or --epochs, would otherwise be reported under numbers made without them)."""
    from embodied.runconfig import compose, config_changes

    diff = config_changes(compose(name.replace("-", "_"), list(args)), folder, resumable=may_differ)
    if diff:
        raise SystemExit(f"{made} was made with other settings ({'; '.join(diff[:3])}); "
                         f"use another --out, or delete {made} to make it again (and what was made from it)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--planner", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument(
        "--tasks", nargs="+", default=["assembly", "bin-picking", "button-press-topdown", "drawer-open", "hammer"]
    )
    ap.add_argument("--demos", nargs="+", type=int, default=[10, 25])
    ap.add_argument("--cameras", nargs="+", default=["corner", "gripperPOV"])
    ap.add_argument("--policies", nargs="+", default=list(POLICIES))
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=400, help="egpt and global (cached frozen features: cheap epochs)")
    ap.add_argument("--cnn-epochs", type=int, default=150, help="cnn (pixels end to end: ~2 s an epoch here)")
    ap.add_argument("--evals", type=int, default=2, help="rollout evaluations during training (checkpoint selection)")
    ap.add_argument("--eval-episodes", type=int, default=5)
    ap.add_argument("--ties", choices=["earlier", "later"], default="earlier",
                    help="checkpoint kept when a rollout evaluation ties the best so far (train-policy ties=...)")
    ap.add_argument("--eval-horizon", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--aug-views", type=int, default=2)
    ap.add_argument("--aux-object", action="store_true",
                    help="egpt and global: also predict the demos' object state (policy.aux_object=true)")
    ap.add_argument("--aux-scenes", type=int, default=0,
                    help="with --aux-object: also fit the object-state target on this many fresh scenes (frames "
                         "with object state, no actions; train-policy aux_scenes=N)")
    ap.add_argument("--pixel-keypoints", type=int, default=0,
                    help="egpt and global: add a CNN trained end to end on the frame with this many keypoints "
                         "(policy.pixel_keypoints); they then train --cnn-epochs, as each epoch runs the CNN")
    ap.add_argument("--fovy", nargs="+", default=[], metavar="CAMERA=DEGREES",
                    help="narrow a camera's field of view in the demos and rollouts (env.fovy), e.g. corner=30")
    ap.add_argument("--train-seeds", nargs="+", type=int, default=[0],
                    help="train every cell once per seed (train-policy seed=S) and report the mean over them")
    ap.add_argument(
        "--restarts",
        type=int,
        default=1,
        help="train each cell this many times and keep the run best on held-out rollouts (train-policy restarts=K)",
    )
    ap.add_argument(
        "--select-episodes", type=int, default=20, help="with --restarts: rollouts that choose among the runs"
    )
    ap.add_argument("--noise", type=float, default=0.1, help="expert action noise in the demos (wider state coverage)")
    args = ap.parse_args()
    from embodied.assets import resolve

    planner_path = str(resolve(args.planner))
    try:
        fovy = {c: float(d) for c, d in (f.split("=") for f in args.fovy)}
    except ValueError:
        raise SystemExit(f"--fovy {' '.join(args.fovy)}: expected CAMERA=DEGREES, e.g. corner=30")
    out = Path(args.out)
    rows = []
    for task in args.tasks:
        demos = out / "demos" / f"{task}.hdf5"
        collect = [f"env=metaworld/{task.replace('-', '_')}", f"n={max(args.demos)}", f"out={demos}", "video=false",
                   f"env.cameras=[{','.join(args.cameras)}]", "seed=0", f"noise={args.noise}",
                   *([f"env.fovy={{{','.join(f'{c}:{d}' for c, d in fovy.items())}}}"] if fovy else [])]
        if demos.exists():  # more demos or cameras than this run needs serve it too (train-policy checks both)
            reusable(demos, demos.with_name(demos.stem + "_config"), "collect", *collect,
                     may_differ=("out", "n", "env.cameras"))
        else:
            if (out / task).exists():
                raise SystemExit(f"{out / task} holds policies trained on demos that are gone; delete it too, "
                                 "or use another --out")
            job("collect", *collect)
        for cam in args.cameras:
            for n in args.demos:
                for kind in args.policies:
                    per_seed = [train_cell(args, out, demos, task, cam, n, kind, seed, planner_path)
                                for seed in args.train_seeds]
                    rows.append({"task": task, "camera": cam, "demos": n, "policy": kind,
                                 "success": sum(r["success"] for r in per_seed) / len(per_seed),
                                 "train_seeds": args.train_seeds, "per_seed": per_seed})
                    print(json.dumps(rows[-1]), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print("| policy | demos | " + " | ".join(f"{t} ({c})" for t in args.tasks for c in args.cameras) + " | mean |")
    print("|---|---|" + "---|" * (len(args.tasks) * len(args.cameras) + 1))
    for kind in args.policies:
        for n in args.demos:
            cells = [r["success"] for t in args.tasks for c in args.cameras for r in rows
                     if (r["task"], r["camera"], r["demos"], r["policy"]) == (t, c, n, kind)]
            print(
                f"| {kind} | {n} | "
                + " | ".join(f"{100 * x:.0f}%" for x in cells)
                + f" | {100 * sum(cells) / len(cells):.0f}% |"
            )
    if len(args.train_seeds) > 1:
        print(f"\nrange over training seeds {args.train_seeds} (min-max per cell, then the mean of each seed's run):")
        for kind in args.policies:
            for n in args.demos:
                cells = [r["per_seed"] for t in args.tasks for c in args.cameras for r in rows
                         if (r["task"], r["camera"], r["demos"], r["policy"]) == (t, c, n, kind)]
                spans = [
                    f"{100 * min(x['success'] for x in c):.0f}-{100 * max(x['success'] for x in c):.0f}%" for c in cells
                ]
                means = [sum(c[i]["success"] for c in cells) / len(cells) for i in range(len(args.train_seeds))]
                print(
                    f"| {kind} | {n} | "
                    + " | ".join(spans)
                    + " | "
                    + " / ".join(f"{100 * m:.0f}%" for m in means)
                    + " |"
                )


def train_cell(args, out: Path, demos: Path, task: str, cam: str, n: int, kind: str, seed: int,
               planner_path: str) -> dict:
    """One policy trained (or resumed) and evaluated on the protocol's fresh seeds; its summary row."""
    run = (
        out
        / task
        / cam
        / (f"{kind}{n}" + (f"_seed{seed}" if seed else "") + (f"_r{args.restarts}" if args.restarts > 1 else ""))
    )
    extra = [f"policy.planner={planner_path}"] if kind != "cnn" else []
    if args.aux_object and kind != "cnn":
        extra.append("policy.aux_object=true")
        if args.aux_scenes:
            extra.append(f"aux_scenes={args.aux_scenes}")
    if args.pixel_keypoints and kind != "cnn":
        extra.append(f"policy.pixel_keypoints={args.pixel_keypoints}")
    if args.restarts > 1:
        extra += [f"restarts={args.restarts}", f"select_episodes={args.select_episodes}"]
    epochs = args.cnn_epochs if kind == "cnn" or args.pixel_keypoints else args.epochs
    train = [f"demos={demos}", f"n_demos={n}", f"policy.type={kind}", f"policy.camera={cam}",
             f"epochs={epochs}", f"eval_every={max(1, epochs // args.evals)}",
             f"eval_episodes={args.eval_episodes}", f"ties={args.ties}", f"eval_horizon={args.eval_horizon}",
             f"policy.chunk={args.chunk}", f"aug_views={args.aug_views}", f"final_episodes={args.episodes}",
             f"seed={seed}", f"out={run}", *extra]
    if (run / "summary.json").exists() and "final_success" in json.loads((run / "summary.json").read_text()):
        reusable(run, run, "train-policy", *train)  # finished: its numbers stand only for this command
    else:
        job("train-policy", *train)  # new, or resumed (train-policy checks what may change)
    s = json.loads((run / "summary.json").read_text())
    row = {
        "seed": seed,
        "success": s["final_success"],
        "episodes": s["final_episodes"],
        "wilson95": s["final_wilson95"],
    }
    if "restarts" in s:  # which run was kept, and what each scored on the selection seeds
        row.update(kept=s["restart"], select=[r["select_success"] for r in s["restarts"]])
    return row


if __name__ == "__main__":
    main()

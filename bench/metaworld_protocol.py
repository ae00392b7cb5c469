"""EmbodiedGPT's control protocol on Meta-World: tasks x {10, 25} demos x 2 cameras, the EmbodiedGPT
policy and both baselines trained on the same demos in the same run, success over N rollouts on fresh seeds.

    python bench/metaworld_protocol.py --planner runs/plan/checkpoint --out runs/mw \
        [--tasks assembly bin-picking button-press-topdown drawer-open hammer] [--demos 10 25] \
        [--cameras corner gripperPOV] [--episodes 50] [--epochs 60]

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--planner", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tasks", nargs="+", default=["assembly", "bin-picking", "button-press-topdown", "drawer-open", "hammer"])
    ap.add_argument("--demos", nargs="+", type=int, default=[10, 25])
    ap.add_argument("--cameras", nargs="+", default=["corner", "gripperPOV"])
    ap.add_argument("--policies", nargs="+", default=list(POLICIES))
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--eval-episodes", type=int, default=10)
    args = ap.parse_args()
    out = Path(args.out)
    rows = []
    for task in args.tasks:
        demos = out / "demos" / f"{task}.hdf5"
        if not demos.exists():
            job("collect", f"env=metaworld/{task}", f"n={max(args.demos)}", f"out={demos}", "video=false",
                f"env.cameras=[{','.join(args.cameras)}]", "seed=0")
        for cam in args.cameras:
            for n in args.demos:
                for kind in args.policies:
                    run = out / task / cam / f"{kind}{n}"
                    if not (run / "summary.json").exists() or "final_success" not in json.loads((run / "summary.json").read_text()):
                        planner = [f"policy.planner={args.planner}"] if kind != "cnn" else []
                        job("train-policy", f"demos={demos}", f"n_demos={n}", f"policy.type={kind}", f"policy.camera={cam}",
                            f"epochs={args.epochs}", f"eval_every={args.eval_every}", f"eval_episodes={args.eval_episodes}",
                            f"final_episodes={args.episodes}", f"out={run}", *planner)
                    s = json.loads((run / "summary.json").read_text())
                    rows.append({"task": task, "camera": cam, "demos": n, "policy": kind, "success": s["final_success"],
                                 "episodes": s["final_episodes"], "wilson95": s["final_wilson95"]})
                    print(json.dumps(rows[-1]), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print("| policy | demos | " + " | ".join(f"{t} ({c})" for t in args.tasks for c in args.cameras) + " | mean |")
    print("|---|---|" + "---|" * (len(args.tasks) * len(args.cameras) + 1))
    for kind in args.policies:
        for n in args.demos:
            cells = [r["success"] for t in args.tasks for c in args.cameras for r in rows
                     if (r["task"], r["camera"], r["demos"], r["policy"]) == (t, c, n, kind)]
            print(f"| {kind} | {n} | " + " | ".join(f"{100 * x:.0f}%" for x in cells) + f" | {100 * sum(cells) / len(cells):.0f}% |")


if __name__ == "__main__":
    main()

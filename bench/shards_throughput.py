"""Episodes per minute of `embodied rollout` with its episodes in shards run as separate local processes
(launcher=local shards=N workers=1) against the same episodes on N env workers in one process (workers=N, the
inline default), in one run, on the same seeds. Both render the env's cameras, as evaluations do.

    python bench/shards_throughput.py --episodes 16 --shards 2
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="robosuite/lift")
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--horizon", type=int, default=150)
    args = ap.parse_args()
    common = ["rollout", f"env={args.task}", "planner=none", "policy.type=expert", "video=false",
              f"env.horizon={args.horizon}", f"n={args.episodes}", "seed=0"]
    modes = {"inline workers": [f"workers={args.shards}"],
             "local shards": ["launcher=local", f"shards={args.shards}", "workers=1"]}
    res, per_seed = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in modes.items():
            out = Path(tmp) / name.replace(" ", "_")
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "embodied.cli", *common, *extra, f"out={out}"],
                               capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode:
                sys.exit(f"{name}: {r.stderr.strip().splitlines()[-1]}")
            recs = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
            per_seed[name] = {x["seed"]: (x["success"], x["steps"]) for x in recs}
            res[name] = {"wall_s": round(wall, 1), "episodes_per_min": round(60 * len(recs) / wall, 2),
                         "successes": sum(x["success"] for x in recs)}
            print(json.dumps({"mode": name, **res[name]}), flush=True)
    a, b = (res[m]["episodes_per_min"] for m in modes)
    print(json.dumps({"task": args.task, "episodes": args.episodes, "shards": args.shards,
                      "local_over_inline": round(b / a, 3),
                      "same_per_seed": per_seed["inline workers"] == per_seed["local shards"]}))


if __name__ == "__main__":
    main()

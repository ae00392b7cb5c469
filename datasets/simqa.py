"""A simulated planning-QA benchmark, written in our QA JSONL, from demos of held-out seeds:

(i)   plan     the full plan from the first clip (free-form, EgoCOT schema)
(ii)  next     the sub-goal in progress as a 4-way multiple choice (distractors: other sub-goals of the
               same task first, then of other tasks)
(iii) done     success detection, yes/no, for a sub-goal from an execution clip
(iv)  explain  failure explanation: episodes run here with the drop perturbation; the clip ends a few
               steps after the object fell

Deterministic for a seed: the same demos and seed give the same file, byte for byte.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from embodied.datasets.corpus import NEXT_QUESTION, done_question, labelled_frames, sample_points
from embodied.datasets.demos import demo_names, open_demo_file
from embodied.datasets.egocot import format_plan, subgoal_action
from embodied.io import atomic_path

EXPLAIN_QUESTION = "The robot was working on '{subgoal}'. What went wrong?"


def explain_answer(subgoals: Sequence[str], index: int) -> str:
    """The reference explanation of a drop: which step was undone."""
    grasp = next((s for s in subgoals if s.startswith("grasp")), subgoals[max(index - 1, 0)])
    obj = ", ".join(subgoal_action(grasp)[1]) or "object"
    return f"The {obj} fell out of the gripper: '{grasp}' is no longer done."


def _clip(frames, t: int, n: int, stride: int) -> np.ndarray:
    steps = np.clip(t - stride * np.arange(n - 1, -1, -1), 0, None)
    u = np.unique(steps)
    return np.asarray(frames[u])[np.searchsorted(u, steps)]


def build_simqa(demo_paths: Sequence[str | Path], out_dir: str | Path, seed: int = 0, n_frames: int = 8,
                frame_stride: int = 3, dropped: Sequence[dict] = (), camera: str | None = None) -> Path:
    """`dropped`: episodes run with the drop perturbation, {"frames", "subgoals", "instruction", "key"},
    cut a few steps after the drop (the simqa job runs them), for the failure-explanation questions."""
    from embodied.envs.metaworld_env import TASKS as MW_TASKS

    out_dir = Path(out_dir)
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    demos = []
    for path in demo_paths:
        path = Path(path)
        with open_demo_file(path) as f:
            env_cfg = json.loads(f["data"].attrs.get("embodied_env", "{}"))
            for name in demo_names(f):
                g = f["data"][name]
                cam, frames = labelled_frames(path, name, g, camera)
                demos.append({"path": path, "name": name, "env": env_cfg, "camera": cam,
                              "frames": frames[()], "instruction": str(g.attrs["instruction"]),
                              "subgoals": json.loads(g.attrs["subgoals"]), "index": g["subgoal_index"][()]})
    pool = sorted({s for d in demos for s in d["subgoals"]} | {s for _, subs in MW_TASKS.values() for s in subs})
    records = []

    def save(clip: np.ndarray, key: str) -> str:
        rel = f"clips/{key}.npy"
        with atomic_path(out_dir / rel) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, clip)
        return rel

    for d in tqdm(demos, desc="simqa", leave=False):
        key = f"{d['path'].stem}_{d['name']}"
        subs, idx, task = d["subgoals"], d["index"], d["instruction"]
        first = save(_clip(d["frames"], 0, n_frames, frame_stride), f"{key}_t0000")
        records.append(
            {
                "id": f"{key}/plan",
                "kind": "plan",
                "video": first,
                "task_goal": task,
                "question": f"The task is: {task}. What is the plan from here?",
                "answer": format_plan(task, subs),
            }
        )
        for t in sample_points(idx, 1):
            k = int(idx[t])
            video = first if t == 0 else save(_clip(d["frames"], t, n_frames, frame_stride), f"{key}_t{t:04d}")
            same = [s for s in subs if s != subs[k]]
            other = [s for s in pool if s not in subs]
            distract = list(rng.permutation(same))[:2] if len(same) >= 2 else list(same)
            distract += list(rng.permutation(other))[: 3 - len(distract)]
            choices = [subs[k]] + [str(x) for x in distract]
            order = rng.permutation(4)
            choices = [choices[i] for i in order]
            records.append({"id": f"{key}/next/t{t}", "kind": "next", "video": video, "task_goal": task,
                            "question": NEXT_QUESTION.format(task=task), "choices": choices,
                            "label": "ABCD"[int(np.flatnonzero(order == 0)[0])]})
            asked = [(subs[k], "no")] + ([(subs[k - 1], "yes")] if k > 0 else [])
            for j, (s, ans) in enumerate(asked):
                records.append({"id": f"{key}/done/t{t}/{j}", "kind": "done", "video": video, "task_goal": task,
                                "question": done_question(s), "answer": ans})
    records += [explain_record(e["frames"], e["subgoals"], e["instruction"], e["key"], n_frames, frame_stride, save)
                for e in dropped]
    out = out_dir / "simqa.jsonl"
    with atomic_path(out) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    return out


def explain_record(frames: np.ndarray, subgoals: Sequence[str], instruction: str, key: str, n_frames: int,
                   stride: int, save) -> dict:
    """(iv) from the frames of an episode that ends a few steps after the object was dropped."""
    at = next((x for x in subgoals if x.startswith("lift")), subgoals[0])
    video = save(_clip(frames, len(frames) - 1, n_frames, stride), f"explain_{key}")
    return {
        "id": f"explain/{key}",
        "kind": "explain",
        "video": video,
        "task_goal": instruction,
        "question": EXPLAIN_QUESTION.format(subgoal=at),
        "answer": explain_answer(subgoals, list(subgoals).index(at)),
    }

"""Turn simulation demos into EgoCOT-format planning samples.

From several points of each demo, an egocentric clip of 8 frames ending at that point is paired with
the instruction, a description of the scene and the plan that REMAINS from that point. Which steps
remain can only be told from the video (is the cube already in the hand?), and for the visual-variety
tasks so can the objects' names: the planner has to look.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from embodied.datasets.demos import demo_names, open_demo_file
from embodied.datasets.egocot import format_plan
from embodied.errors import EmbodiedError
from embodied.io import atomic_path


def describe(subgoals: Sequence[str], index: int) -> str:
    """Stage-1 caption: what the arm is doing and what is already done, in words the video supports."""
    done = ", ".join(subgoals[:index]) if index > 0 else "nothing yet"
    return f"The robot arm is about to {subgoals[index]}. Done so far: {done}."


def done_question(subgoal: str) -> str:
    """The success-detection question the agent asks about its own execution video."""
    return f"Is '{subgoal}' done?"


NEXT_QUESTION = "The task is: {task}. Which step is the robot working on now?"


def done_questions(subgoals: Sequence[str], index: int) -> list[dict]:
    """Yes/no labels from the simulator: the sub-goal in progress (and the one after it) is not done, the
    one before it (and the one before that) is; as many yes as no where the episode allows."""
    qa = [{"question": done_question(subgoals[index]), "answer": "no"}]
    if index > 0:
        qa.append({"question": done_question(subgoals[index - 1]), "answer": "yes"})
    if index > 1:
        qa.append({"question": done_question(subgoals[index - 2]), "answer": "yes"})
    if index + 1 < len(subgoals) and index > 1:
        qa.append({"question": done_question(subgoals[index + 1]), "answer": "no"})
    return qa


def next_question(task: str, subgoals: Sequence[str], index: int) -> dict:
    """The step in progress, asked as the planning-QA benchmark asks it."""
    return {"question": NEXT_QUESTION.format(task=task), "answer": subgoals[index]}


def sample_points(indices: np.ndarray, per_segment: int) -> list[int]:
    """Steps to cut clips at: the start of the episode and `per_segment` points spread over every
    sub-goal segment (its start included), so each remaining-plan length is represented."""
    points = {0}
    starts = [0] + [t for t in range(1, len(indices)) if indices[t] != indices[t - 1]]
    ends = starts[1:] + [len(indices)]
    for s, e in zip(starts, ends):
        points.update(int(t) for t in np.linspace(s, e - 1, per_segment + 1)[:-1].round())
    return sorted(points)


def build_corpus(demo_paths: Sequence[str | Path], out_dir: str | Path, camera: str | None = None,
                 n_frames: int = 8, frame_stride: int = 3, per_segment: int = 2, subset: str | None = None) -> Path:
    """Write out_dir/clips/*.npy and out_dir/egocot.jsonl; return the jsonl path."""
    out_dir = Path(out_dir)
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    records = []
    for path in demo_paths:
        path = Path(path)
        with open_demo_file(path) as f:
            for name in tqdm(demo_names(f, subset), desc=f"corpus {path.name}", leave=False):
                g = f["data"][name]
                _, frames = labelled_frames(path, name, g, camera)
                subgoals, indices = json.loads(g.attrs["subgoals"]), g["subgoal_index"][()]
                instruction = str(g.attrs["instruction"])
                for t in sample_points(indices, per_segment):
                    steps = np.clip(t - frame_stride * np.arange(n_frames - 1, -1, -1), 0, None)
                    clip_name = f"clips/{path.stem}_{name}_t{t:04d}.npy"
                    with atomic_path(out_dir / clip_name) as tmp:
                        with open(tmp, "wb") as fh:
                            np.save(fh, frames[np.unique(steps)][np.searchsorted(np.unique(steps), steps)])
                    k = int(indices[t])
                    records.append({"id": f"{path.stem}/{name}/t{t}", "image": clip_name,
                                    "instruction": instruction, "caption": describe(subgoals, k),
                                    "planning": format_plan(instruction, subgoals[k:]), "score": 1.0,
                                    "subgoal": subgoals[k], "subgoal_index": k,
                                    "qa": done_questions(subgoals, k) + [next_question(instruction, subgoals, k)]})
    if not records:
        raise EmbodiedError(f"no demos found in {[str(p) for p in demo_paths]}")
    out = out_dir / "egocot.jsonl"
    with atomic_path(out) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    return out


def labelled_frames(path: Path, name: str, g, camera: str | None):
    """(camera, its frames) of demo group `g`, after checking that it has sub-goal labels and that camera."""
    if "subgoals" not in g.attrs or "subgoal_index" not in g:
        raise EmbodiedError(f"{path}: data/{name} has no sub-goal labels; "
                            "collect demos with `embodied collect` to build planning data")
    cams = [k[: -len("_image")] for k in g["obs"] if k.endswith("_image")]
    if not cams:
        raise EmbodiedError(f"{path}: data/{name}/obs has no camera images")
    cam = camera or _ego_camera(cams)
    if f"{cam}_image" not in g["obs"]:
        raise EmbodiedError(f"{path}: data/{name}/obs has no camera '{cam}' (has: {cams})")
    return cam, g["obs"][f"{cam}_image"]


def _ego_camera(cams: Sequence[str]) -> str:
    for c in cams:
        if "eye_in_hand" in c or "gripperPOV" in c:
            return c
    return cams[-1]

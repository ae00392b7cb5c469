"""Turn simulation demos into EgoCOT-format planning samples.

From several points of each demo, an egocentric clip of 8 frames ending at that point is paired with
the instruction, a description of the scene and the plan that REMAINS from that point. Which steps
remain can only be told from the video (is the cube already in the hand?), and for the visual-variety
tasks so can the objects' names: the planner has to look.
"""
from __future__ import annotations

import json
import zlib
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


def experience_regressed(step: int, current: str, undone: str) -> str:
    """What the agent writes when an earlier step is judged undone (`step` counts from 1 in its plan)."""
    return f"Step {step} '{current}' failed: '{undone}' is no longer done."


# The step count of the spent-budget experiences the corpus writes (regression_points, held_points): the agent
# writes its own count at the first check past AgentConfig.subgoal_budget (80, checks every 6 steps: 81-86).
BUDGET_STEPS = 84


def experience_budget(step: int, current: str, steps: int) -> str:
    """What the agent writes when a step's budget is spent."""
    return f"Step {step} '{current}' failed: not done after {steps} steps."


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


def transition_questions(subgoals: Sequence[str], indices: np.ndarray,
                         offsets: Sequence[int] = (-5, -2, 1, 3, 6, 10, 16)) -> dict[int, list[dict]]:
    """Yes/no questions at frames around every change of the simulator's sub-goal index, labelled by the index
    at that frame: a few steps before a step completes it is not done yet (the hard negative); after it
    completes it is done, and the next one not, up to 16 steps on (a late detector sees the step held); after
    a regression (a drop) the steps undone are no longer done. Whichever step the agent would be asking about
    then (in progress, just finished, just undone)."""
    best = np.maximum.accumulate(indices)  # the furthest the episode had got by each step
    changes = [t for t in range(1, len(indices)) if indices[t] != indices[t - 1]]
    out: dict[int, list[dict]] = {}
    for t in sorted({tau + dt for tau in changes for dt in offsets if 0 <= tau + dt < len(indices)}):
        k = int(indices[t])
        asked = set(range(k, int(best[t]))) | {j for j in (k - 1, k, k + 1) if 0 <= j < len(subgoals)}
        out[t] = [{"question": done_question(subgoals[j]), "answer": "yes" if j < k else "no"} for j in sorted(asked)]
    return out


def replan_points(agent_log: Sequence[dict], n_steps: int, later: Sequence[int] = (0, 4, 8)) -> list[tuple[int, str]]:
    """(step, experience) of each re-plan the loop made (and a few steps later, as a slower detector would):
    the clip there and the experience it wrote, whose answer is the plan that remains in the simulator."""
    return [(e["t"] + dt, e["reason"]) for e in agent_log if e["event"] == "replan" and e.get("reason")
            for dt in later if e["t"] + dt < n_steps]


def regression_points(subgoals: Sequence[str], indices: np.ndarray, offsets: Sequence[int] = (2, 5, 9, 14),
                      min_run: int = 4) -> list[tuple[int, str]]:
    """(step, experience) after each regression of the simulator's sub-goal index (a drop undid steps), with
    every experience the agent could have written by then: that a step before the one it was on is no
    longer done (the step just before, or the earliest its detector found undone), or that its step's budget
    ran out. The answer is the plan that remains from the simulator's index, whatever the words say.
    Regressions shorter than `min_run` steps (the index flickers as the gripper lets go of a placed cube) are
    not drops."""
    best = np.maximum.accumulate(indices)
    low = indices < best
    out = []
    t = 0
    while t < len(indices):
        if not low[t]:
            t += 1
            continue
        end = t
        while end < len(indices) and low[end]:
            end += 1
        if end - t >= min_run:
            for dt in offsets:
                if t + dt < end:
                    k, top = int(indices[t + dt]), int(best[t + dt])
                    # the agent on step c names the earliest step its detector finds undone: c - 1 or one before
                    out += [(t + dt, experience_regressed(c + 1, subgoals[c], subgoals[u]))
                            for c in range(k + 1, min(top, len(subgoals) - 1) + 1) for u in range(k, c)]
                    out.append(
                        (t + dt, experience_budget(top + 1, subgoals[min(top, len(subgoals) - 1)], BUDGET_STEPS))
                    )
        t = end
    return out


def held_points(subgoals: Sequence[str], indices: np.ndarray, agent_log: Sequence[dict],
                after: Sequence[int] = (12, 24)) -> list[tuple[int, str]]:
    """(step, experience) where the loop was still doing a step the simulator says is finished (its detector
    late), `after` steps into each such stretch: the spent-budget line the agent writes when the lateness
    lasts. The answer is the plan that remains from the simulator's index (after a placed cube: release)."""
    current, steps, k = [], [], 0
    events = {}
    for e in agent_log:
        events.setdefault(e["t"], []).append(e)
    for t in range(len(indices)):
        for e in events.get(t, []):
            if e["event"] in ("plan", "replan") and e.get("plan"):
                steps, k = e["plan"], 0
            elif e["event"] == "done" and steps:
                k = min(k + 1, len(steps) - 1)
        current.append((k, steps[k]) if steps else None)
    out, start = [], None
    for t, cur in enumerate(current + [None]):
        held = cur is not None and cur[1] in subgoals and indices[t] > subgoals.index(cur[1])
        if held and start is None:
            start = t
        elif not held and start is not None:
            k, step = current[start]
            out += [(start + dt, experience_budget(k + 1, step, BUDGET_STEPS)) for dt in after
                    if start + dt < t and current[start + dt] == (k, step)]
            start = None
    return out


def sample_points(indices: np.ndarray, per_segment: int) -> list[int]:
    """Steps to cut clips at: the start of the episode and `per_segment` points spread over every
    sub-goal segment (its start included), so each remaining-plan length is represented."""
    points = {0}
    starts = [0] + [t for t in range(1, len(indices)) if indices[t] != indices[t - 1]]
    ends = starts[1:] + [len(indices)]
    for s, e in zip(starts, ends):
        points.update(int(t) for t in np.linspace(s, e - 1, per_segment + 1)[:-1].round())
    return sorted(points)


def build_corpus(demo_paths: Sequence[str | Path], out_dir: str | Path, camera: str | Sequence[str] | None = None,
                 n_frames: int = 8, frame_stride: int = 3, per_segment: int = 2, subset: str | None = None) -> Path:
    """Write out_dir/clips/*.npy and out_dir/egocot.jsonl; return the jsonl path. `camera`: the one the clips
    show (default: the wrist), or a list: one clip per camera in each .npy, (V, T, H, W, 3)."""
    out_dir = Path(out_dir)
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    records = []
    for path in demo_paths:
        path = Path(path)
        with open_demo_file(path) as f:
            task = _task_name(f, path)
            for name in tqdm(demo_names(f, subset), desc=f"corpus {path.name}", leave=False):
                g = f["data"][name]
                if camera is None or isinstance(camera, str):
                    cam, frames = labelled_frames(path, name, g, camera)
                    views = [frames]
                else:
                    cam = list(camera)
                    views = [labelled_frames(path, name, g, c)[1] for c in cam]
                subgoals, indices = json.loads(g.attrs["subgoals"]), g["subgoal_index"][()]
                instruction = str(g.attrs["instruction"])
                log = json.loads(g.attrs.get("agent_log", "[]"))  # demos collected with loop=true
                # (t, experience, questions): a plan and questions at the sample points; after each regression
                # of the simulator's index, the plan that remains given each experience the agent could have
                # written; with a loop log: after each re-plan of the loop, the plan that remains given the
                # experience it wrote, the same where the loop still held a finished step (held_points), and
                # around every sub-goal transition (dense), questions only (experience None).
                entries = [
                    (
                        t,
                        "",
                        done_questions(subgoals, int(indices[t]))
                        + [next_question(instruction, subgoals, int(indices[t]))],
                    )
                    for t in sample_points(indices, per_segment)
                ]
                entries += [(t, experience, []) for t, experience in regression_points(subgoals, indices)]
                if log:
                    entries += [(t, experience, []) for t, experience in replan_points(log, len(indices))]
                    entries += [(t, experience, []) for t, experience in held_points(subgoals, indices, log)]
                    entries += [(t, None, qa) for t, qa in sorted(transition_questions(subgoals, indices).items())]
                clips: dict[int, str] = {}
                for t, experience, qa in entries:
                    if t not in clips:
                        clips[t] = f"clips/{path.stem}_{name}_t{t:04d}.npy"
                        steps = np.clip(t - frame_stride * np.arange(n_frames - 1, -1, -1), 0, None)
                        u = np.unique(steps)
                        clip = [v[u][np.searchsorted(u, steps)] for v in views]
                        with atomic_path(out_dir / clips[t]) as tmp:
                            with open(tmp, "wb") as fh:
                                np.save(fh, clip[0] if isinstance(cam, str) else np.stack(clip))
                    k = int(indices[t])
                    tag = (
                        "/qa"
                        if experience is None
                        else f"/replan{zlib.crc32(experience.encode())}"
                        if experience
                        else ""
                    )
                    rec = {
                        "id": f"{path.stem}/{name}/t{t}{tag}",
                        "image": clips[t],
                        "instruction": instruction,
                        "caption": describe(subgoals, k),
                        "planning": format_plan(instruction, subgoals[k:]),
                        "score": 1.0,
                        "subgoal": subgoals[k],
                        "subgoal_index": k,
                        "qa": qa,
                        "camera": cam,
                        "task": task,
                        # a recoloured copy's original (embodied rerender): one episode, whatever its colours
                        "source_demo": f"{path.stem}/{g.attrs.get('source_demo', name)}",
                    }
                    if experience is None:
                        rec["qa_only"] = True
                    elif experience:
                        rec["experience"] = experience
                    records.append(rec)
    if not records:
        raise EmbodiedError(f"no demos found in {[str(p) for p in demo_paths]}")
    out = out_dir / "egocot.jsonl"
    with atomic_path(out) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    return out


def _task_name(f, path: Path) -> str:
    """The env task a demo file holds (its loop and held-out variants share it), for per-task balancing."""
    try:
        return str(json.loads(f["data"].attrs["embodied_env"])["task"])
    except (KeyError, ValueError, TypeError):
        return path.stem


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

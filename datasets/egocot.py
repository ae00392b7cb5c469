"""EgoCOT planning data: the text schema of a plan, and a loader for EgoCOT-format files.

A sample is {"image": clip (.npy of frames, or a video path), "caption": scene description,
"planning": "Task: ... Plan: Step 1: ... Actions: 1. verb(noun) ...", "score": float}. EgoCOT's own
release spells the plan field "planing"; both are accepted. Our generated samples also carry
"instruction" (the task as given to the robot) and "id"; EgoCOT's do not, and the planner is then
asked to infer the task from the video.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from embodied.datasets.video import read_video, video_length
from embodied.errors import EmbodiedError

# Words that separate a sub-goal's object from its target: "place the red cube on the green cube".
_PREPOSITIONS = ("onto", "into", "on", "in", "over", "to", "from", "with", "under", "of")
_ARTICLES = ("the", "a", "an")


def subgoal_action(sentence: str) -> tuple[str, list[str]]:
    """'place the red cube on the green cube' -> ('place', ['red cube', 'green cube'])."""
    words = sentence.strip().rstrip(".").split()
    if not words:
        return "", []
    verb, args, cur = words[0].lower(), [], []
    for w in words[1:]:
        if w.lower() in _PREPOSITIONS and cur:
            args.append(" ".join(cur))
            cur = []
        elif w.lower() in _ARTICLES or w.lower() in _PREPOSITIONS:
            continue
        else:
            cur.append(w)
    if cur:
        args.append(" ".join(cur))
    return verb, args


def format_action(verb: str, args: Sequence[str]) -> str:
    return f"{verb}({', '.join(args)})"


def format_plan(task: str, subgoals: Sequence[str]) -> str:
    """The EgoCOT answer schema: `Task: t. Plan: Step 1: s1. Step 2: s2. Actions: 1. v(n) 2. v(n, m)`."""
    steps = " ".join(f"Step {i}: {s}." for i, s in enumerate(subgoals, 1))
    acts = " ".join(f"{i}. {format_action(*subgoal_action(s))}" for i, s in enumerate(subgoals, 1))
    return f"{plan_start(task)} {steps} Actions: {acts}"


def plan_start(task: str) -> str:
    """The opening of every plan answer. It only restates the instruction the prompt already holds, so a
    planner starts its answer with it (forced) instead of re-deriving the task's object names."""
    return f"Task: {task}. Plan:"


def load_clip(image: str | Path, root: Path | None = None, n_frames: int = 8) -> np.ndarray:
    """(n_frames, H, W, 3) uint8 from an .npy of frames or a video (sampled evenly with decord); an .npy of
    several cameras' clips (V, T, H, W, 3) gives (V, n_frames, H, W, 3)."""
    path = Path(image)
    if root is not None and not path.is_absolute():
        path = root / path
    if path.suffix == ".npy":
        if not path.exists():
            raise EmbodiedError(f"{path}: clip file not found")
        frames = np.load(path, allow_pickle=False)
        if frames.ndim == 3:  # one image
            frames = frames[None]
        if frames.ndim not in (4, 5) or frames.shape[-1] != 3:
            raise EmbodiedError(f"{path}: expected frames of shape (T, H, W, 3) or (V, T, H, W, 3), got {frames.shape}")
        if frames.dtype != np.uint8:  # a cast would turn floats in [0, 1] into a black clip without a word
            raise EmbodiedError(f"{path}: expected uint8 frames (0-255), got {frames.dtype}")
    else:
        n = video_length(path) if path.exists() else 0
        if n == 0:
            raise EmbodiedError(f"{path}: video file not found or empty")
        frames = read_video(path, np.linspace(0, n - 1, n_frames).round().astype(int))
    t = frames.shape[-4]
    if t != n_frames:  # resample in time to the clip length the model expects
        frames = np.take(frames, np.linspace(0, t - 1, n_frames).round().astype(int), axis=-4)
    return np.ascontiguousarray(frames.astype(np.uint8))


def read_records(path: str | Path) -> list[dict]:
    """A JSON list or JSONL file of dicts; a bad line names the file and the line."""
    path = Path(path)
    if not path.exists():
        raise EmbodiedError(f"{path}: file not found")
    text = path.read_text()
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise EmbodiedError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    else:
        records = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise EmbodiedError(f"{path}:{i}: invalid JSON line ({e.msg})") from None
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise EmbodiedError(f"{path}: record {i} is {type(r).__name__}, expected an object")
    return records


class EgoCOTDataset(torch.utils.data.Dataset):
    """EgoCOT-format samples: {"video": uint8 (T, H, W, 3) tensor, "caption", "planning", "instruction", "score", "qa"}.

    "qa" (our generated corpus only) lists {"question", "answer"} pairs about the clip, such as the
    success-detection questions the agent asks about its execution video; "experience" is the failure the
    agent wrote before re-planning from this clip (its plan then answers the re-plan prompt); "qa_only"
    marks clips that carry questions but no plan to learn; "task" names the env task the clip comes from.

    `min_score` drops low-quality samples (EgoCOT scores its machine-written plans with CLIP).
    """

    def __init__(self, paths: str | Path | Sequence[str | Path], n_frames: int = 8, min_score: float | None = None,
                 root: str | Path | None = None):
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        self.n_frames, self.samples = n_frames, []
        for p in paths:
            p = Path(p)
            base = Path(root) if root is not None else p.parent
            for i, r in enumerate(read_records(p)):
                if "planing" in r and "planning" not in r:
                    r["planning"] = r.pop("planing")
                for key in ("image", "planning"):
                    if key not in r:
                        raise EmbodiedError(f"{p}: record {i} has no field '{key}' "
                                            "(expected image, caption, planning, score)")
                try:
                    score = float(r.get("score", 1.0))
                except (TypeError, ValueError):
                    raise EmbodiedError(f"{p}: record {i}: score={r['score']!r}, expected a number") from None
                if min_score is not None and score < min_score:
                    continue
                self.samples.append({"image": r["image"], "root": base, "caption": str(r.get("caption", "")),
                                     "planning": str(r["planning"]), "instruction": str(r.get("instruction", "")),
                                     "score": score, "id": str(r.get("id", f"{p.stem}:{i}")),
                                     "qa": list(r.get("qa", [])), "experience": str(r.get("experience", "")),
                                     "qa_only": bool(r.get("qa_only", False)), "camera": r.get("camera"),
                                     "task": r.get("task"), "source_demo": r.get("source_demo")})

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        clip = load_clip(s["image"], s["root"], self.n_frames)
        return {
            "video": torch.from_numpy(clip),
            **{k: s[k] for k in ("caption", "planning", "instruction", "score", "id", "qa")},
        }


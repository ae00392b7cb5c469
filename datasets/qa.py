"""Planning-QA samples for `embodied eval-plan`: EgoPlan-Bench (v1, v2) and our own JSONL.

A sample is {"id", "question", "choices" (list of 4 or None), "label" (0-3 or None), "answer" (text),
"task_goal", "kind", "frames" (a callable returning (T, H, W, 3) uint8)}. Frames are loaded on demand
so that a missing video is reported per sample, not as a crash of the whole evaluation.

EgoPlan video: an mp4 (decord) or a folder of frame images (Epic-Kitchens style frame_0000000123.jpg);
frames are sampled evenly over the task's progress up to `current_observation_frame` and never after it.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from embodied.errors import EmbodiedError

LETTERS = "ABCD"


class SkipSample(Exception):
    """A sample that cannot be evaluated (missing video): reported, skipped, counted."""


def read_lines(path: Path, strict: bool, problems: list[str]) -> list[tuple[int, dict]]:
    """Records of a JSON list or JSONL file with their line numbers; a malformed line is fatal when
    `strict`, else reported (file:line) and skipped."""
    text = path.read_text()
    if text.lstrip().startswith("["):
        try:
            return [(i + 1, r) for i, r in enumerate(json.loads(text))]
        except json.JSONDecodeError as e:
            raise EmbodiedError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise json.JSONDecodeError("not an object", line, 0)
            out.append((i, rec))
        except json.JSONDecodeError as e:
            msg = f"{path}:{i}: malformed JSON line ({e.msg})"
            if strict:
                raise EmbodiedError(msg + "; run with dataset.strict=false to skip such lines") from None
            print(f"warning: {msg}; skipped", file=sys.stderr)
            problems.append(msg)
    return out


def _label(value, where: str) -> int:
    v = str(value).strip().upper()
    if v not in LETTERS or len(v) != 1:
        raise EmbodiedError(f"{where}: choice label {value!r} is not one of A, B, C, D")
    return LETTERS.index(v)


# -- frames ---------------------------------------------------------------------------------------
def _frame_files(folder: Path) -> dict[int, Path]:
    files = {}
    for p in folder.iterdir():
        m = re.search(r"(\d+)\.(jpg|jpeg|png)$", p.name)
        if m:
            files[int(m.group(1))] = p
    return files


def sample_frames(source: Path, start: int, end: int, n: int) -> np.ndarray:
    """n frames evenly from [start, end] (inclusive) of an mp4 or a frame folder; never after `end`."""
    from embodied.datasets.video import read_video

    idx = np.linspace(start, max(start, end), n).round().astype(int)
    if source.is_dir():
        import imageio.v3 as iio

        files = _frame_files(source)
        if not files:
            raise SkipSample(f"{source}: no frame images")
        have = np.array(sorted(files))
        if have[0] > max(start, end):
            raise SkipSample(f"{source}: no frame at or before frame {end}")
        picked = [
            int(have[min(np.searchsorted(have, i, side="right") - 1, len(have) - 1)]) if i >= have[0] else int(have[0])
            for i in idx
        ]
        return np.stack([np.asarray(iio.imread(files[i]))[..., :3] for i in picked]).astype(np.uint8)
    return read_video(source, idx)


class VideoIndex:
    """Maps an EgoPlan `video_id` to its mp4 or frame folder under the video root."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root else None
        self._all: dict[str, Path] | None = None

    def find(self, video_id: str) -> Path:
        if self.root is None:
            raise SkipSample(f"video '{video_id}': no dataset.video_root given")
        for cand in (self.root / f"{video_id}.mp4", self.root / video_id, self.root / "rgb_frames" / video_id):
            if cand.exists():
                return cand
        if self._all is None:  # Epic-Kitchens nests P01/rgb_frames/P01_01: search once
            self._all = {p.stem if p.suffix == ".mp4" else p.name: p for p in self.root.rglob("*")
                         if p.suffix == ".mp4" or p.is_dir()}
        if video_id in self._all:
            return self._all[video_id]
        raise SkipSample(f"video '{video_id}' not found under {self.root}")


def _frame(value, field: str, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EmbodiedError(f"{where}: {field}={value!r}: expected a frame number") from None


# -- loaders --------------------------------------------------------------------------------------
# EgoPlan-Bench2's question, which its files do not store: built from the task goal as its eval.py does.
EGOPLAN2_QUESTION = ("Considering the progress shown in the video and my current observation in the last frame, "
                     "what action should I take next in order to {}?")


def load_egoplan(path: str | Path, video_root: str | Path | None = None, n_frames: int = 8, strict: bool = True,
                 problems: list[str] | None = None, version: int = 1) -> list[dict]:
    """EgoPlan-Bench (v1) JSON, or EgoPlan-Bench2 (`version=2`: no question or video_id fields; the question
    comes from `task_goal`, the video is `<sample_id up to its first '_'>.mp4`, frames from `task_start_frame`)."""
    path = Path(path)
    if not path.exists():
        raise EmbodiedError(f"{path}: file not found")
    problems = problems if problems is not None else []
    index = VideoIndex(video_root)
    out = []
    is_array = path.read_text().lstrip().startswith("[")  # a JSON array has samples, not lines
    for line, r in read_lines(path, strict, problems):
        where = f"{path}: sample {line}" if is_array else f"{path}:{line}"
        need = ["choice_a", "choice_b", "choice_c", "choice_d", "golden_choice_idx", "current_observation_frame"] + (
            ["question", "video_id"] if version == 1 else ["task_goal", "task_start_frame", "sample_id"])
        missing = [k for k in need if k not in r]
        if missing:
            raise EmbodiedError(f"{where}: missing field(s) {missing}; expected an EgoPlan-Bench"
                                f"{'2' if version == 2 else ''} sample (dataset=egoplan{'2' if version == 2 else ''})")
        if version == 2:
            r = {
                **r,
                "question": EGOPLAN2_QUESTION.format(r["task_goal"]),
                "video_id": str(r["sample_id"]).split("_")[0],
            }
        label = _label(r["golden_choice_idx"], where)
        end = _frame(r["current_observation_frame"], "current_observation_frame", where)
        progress = r.get("task_progress_metadata") or []
        start = _frame(r["task_start_frame"], "task_start_frame", where) if "task_start_frame" in r else (
            min(_frame(p.get("start_frame"), "task_progress_metadata[].start_frame", where) for p in progress)
            if progress else max(0, end - 8 * 30))
        start = min(start, end)
        vid = str(r["video_id"])

        def frames(vid=vid, start=start, end=end) -> np.ndarray:
            return sample_frames(index.find(vid), start, end, n_frames)

        choices = [str(r[f"choice_{c}"]) for c in "abcd"]
        out.append({"id": str(r.get("sample_id", f"{path.stem}:{line}")), "question": str(r["question"]),
                    "choices": choices, "label": label, "answer": str(r.get("answer", choices[label])),
                    "task_goal": str(r.get("task_goal", "")), "kind": "choice", "frames": frames,
                    "meta": {k: r[k] for k in ("domain", "scenario", "video_source") if k in r}})
    return out


def load_qa_jsonl(
    path: str | Path, n_frames: int = 8, strict: bool = True, problems: list[str] | None = None
) -> list[dict]:
    """Our JSONL: {"id", "video" (path, or a list of frame paths), "question", "answer"} or with
    "choices" and "label" (A-D or 0-3); optional "task_goal", "kind"."""
    from embodied.datasets.egocot import load_clip

    path = Path(path)
    if not path.exists():
        raise EmbodiedError(f"{path}: file not found")
    problems = problems if problems is not None else []
    out = []
    for line, r in read_lines(path, strict, problems):
        where = f"{path}:{line}"
        for k in ("video", "question"):
            if k not in r:
                raise EmbodiedError(f"{where}: missing field '{k}'")
        choices, label = r.get("choices"), None
        if choices is not None:
            if not isinstance(choices, list) or len(choices) != 4:
                raise EmbodiedError(f"{where}: 'choices' must be a list of 4 strings")
            lab = r.get("label")
            label = int(lab) if isinstance(lab, int) and 0 <= lab < 4 else _label(lab, where)
        elif "answer" not in r:
            raise EmbodiedError(f"{where}: needs 'answer', or 'choices' and 'label'")
        video = r["video"]

        def frames(video=video) -> np.ndarray:
            try:
                if isinstance(video, list):
                    import imageio.v3 as iio

                    files = [path.parent / v for v in video]
                    gone = [str(f) for f in files if not f.exists()]
                    if gone:
                        raise SkipSample(f"{gone[0]}: frame not found")
                    idx = np.linspace(0, len(files) - 1, n_frames).round().astype(int)
                    return np.stack([np.asarray(iio.imread(files[i]))[..., :3] for i in idx]).astype(np.uint8)
                return load_clip(video, path.parent, n_frames)
            except EmbodiedError as e:
                raise SkipSample(str(e)) from None

        answer = str(r.get("answer", choices[label] if choices else ""))
        out.append({"id": str(r.get("id", f"{path.stem}:{line}")), "question": str(r["question"]), "choices": choices,
                    "label": label, "answer": answer, "task_goal": str(r.get("task_goal", "")),
                    "kind": str(r.get("kind", "choice" if choices else "free")), "frames": frames, "meta": {}})
    return out


def load_planning_qa(kind: str, path: str | Path, video_root: str | Path | None = None, n_frames: int = 8,
                     strict: bool = True, problems: list[str] | None = None) -> list[dict]:
    loaders: dict[str, Callable] = {
        "egoplan": lambda: load_egoplan(path, video_root, n_frames, strict, problems),
        "egoplan2": lambda: load_egoplan(path, video_root, n_frames, strict, problems, version=2),
        "jsonl": lambda: load_qa_jsonl(path, n_frames, strict, problems),
        "simqa": lambda: load_qa_jsonl(path, n_frames, strict, problems),
    }
    if kind not in loaders:
        raise EmbodiedError(f"dataset.type={kind!r}: expected one of {sorted(loaders)}")
    return loaders[kind]()

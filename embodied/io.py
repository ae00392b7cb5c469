"""Atomic file output: write to a temporary name beside the target, then rename."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it into place, on error delete it.

    The temporary name keeps the suffix so that libraries that look at it (imageio, h5py) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside `path`; on success it replaces `path` whole (the old
    one is moved aside first and then deleted), on error it is deleted and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    old = path.with_name(f".{path.name}.old{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    if not path.exists():  # a process killed mid-swap left the only copy aside: put it back first
        aside = sorted(path.parent.glob(f".{path.name}.old*"), key=lambda p: p.stat().st_mtime)
        if aside:
            os.replace(aside[-1], path)
    shutil.rmtree(old, ignore_errors=True)  # a finished swap whose cleanup was cut short, by a pid now reused
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one line and flush it to disk, so a killed run keeps every finished record."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # as write_json/write_jsonl do (atomic_path)
    with open(path, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in records))


def read_jsonl(path: str | os.PathLike, repair: bool = False) -> list[dict]:
    """Read the records of a JSONL file.

    A torn last line (a writer killed mid-line) is dropped; with `repair` the file is rewritten
    without it so that later appends start on a clean line. A bad line elsewhere is an error.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i < len(lines) - 1:
                from embodied.errors import EmbodiedError

                raise EmbodiedError(f"{path}:{i + 1}: not a JSON line ({e.msg})") from None
            if repair:
                write_jsonl(path, records)
    return records


def read_safetensors(path: str | os.PathLike) -> dict:
    """The tensors of a safetensors file; a missing, truncated or foreign file is one error naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from embodied.errors import EmbodiedError

    path = Path(path)
    if not path.exists():
        raise EmbodiedError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise EmbodiedError(f"{path}: not a readable safetensors file ({e})") from None


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete what killed processes left of their atomic writes of `path` (`.name.tmp<pid>...`, from
    atomic_path and atomic_dir): only those whose process is gone, so a live writer is never touched."""
    path = Path(path)
    removed = []
    for p in path.parent.glob(f".{path.stem}.tmp*") if path.parent.is_dir() else []:
        m = re.match(r"\d+", p.name[len(f".{path.stem}.tmp"):])
        pid = int(m.group()) if m else 0
        if pid and not _alive(pid):
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True

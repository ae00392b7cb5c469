"""mp4 in and out: imageio-ffmpeg writes, decord reads."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from embodied.errors import EmbodiedError
from embodied.io import atomic_path


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: int = 20) -> Path:
    """Write uint8 HxWx3 frames as an H.264 mp4 (atomically)."""
    import imageio.v2 as imageio

    path = Path(path)
    with atomic_path(path) as tmp:
        # macro_block_size=1: keep 128x128 etc. as is instead of resizing to multiples of 16.
        with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=1,
                                ffmpeg_log_level="error") as w:
            for f in frames:
                w.append_data(np.asarray(f, np.uint8))
    return path


def read_video(path: str | Path, indices: Sequence[int] | None = None) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of an mp4; `indices` picks frames (clipped to the video length)."""
    path = Path(path)
    if not path.exists():
        raise EmbodiedError(f"{path}: video file not found")
    try:
        import decord

        vr = decord.VideoReader(str(path), num_threads=1)
        n = len(vr)
        if n == 0:
            raise RuntimeError("no frames")
        idx = list(range(n)) if indices is None else [min(max(int(i), 0), n - 1) for i in indices]
        return vr.get_batch(idx).asnumpy()
    except EmbodiedError:
        raise
    except Exception as e:  # decord raises its own DECORDError and RuntimeError types
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EmbodiedError(f"{path}: video does not decode ({msg[:200]})") from None


def video_length(path: str | Path) -> int:
    import decord

    try:
        return len(decord.VideoReader(str(path), num_threads=1))
    except Exception as e:
        raise EmbodiedError(f"{path}: video does not decode ({type(e).__name__})") from None

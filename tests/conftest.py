import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
ROOT = Path(__file__).resolve().parent.parent
EMBODIED = [sys.executable, "-m", "embodied.cli"]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*EMBODIED, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="session")
def lift_demos(tmp_path_factory) -> Path:
    """Three Lift demos at 64x64 from the real collect job (shared by the dataset tests)."""
    out = tmp_path_factory.mktemp("demos") / "lift.hdf5"
    r = run_cli("collect", "env=robosuite/lift", "n=3", f"out={out}", "env.height=64", "env.width=64")
    assert r.returncode == 0, r.stderr[-2000:]
    return out

"""EmbodiedGPT-style embodied planning and control.

Stage packages: embodied.envs, embodied.datasets, embodied.planners, embodied.policies.
"""
import os

# Headless rendering must be chosen before mujoco is imported anywhere.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

from embodied.errors import EmbodiedError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["EmbodiedError", "__version__"]

"""Each scripted expert solves its task on a few seeds (the 50-seed table is bench/experts.py)."""
import pytest

from embodied.envs import TASKS, make_env
from embodied.envs.rollout import run_episode
from embodied.policies import make_expert


CASES = [(b, t) for b, ts in TASKS.items() for t in ts]


@pytest.mark.parametrize("backend,task", CASES)
def test_expert_succeeds(backend, task):
    env = make_env({"backend": backend, "task": task, "cameras": [], "horizon": 300})
    wins = 0
    for seed in range(2):
        info = run_episode(env, make_expert(backend, task, noise=0.02, seed=seed), seed)
        wins += info["success"]
    assert wins == 2

"""Each scripted expert solves its task on a few seeds (the 50-seed table is bench/experts.py)."""
import pytest

from embodied.envs import TASKS, make_env
from embodied.envs.runner import run_episode
from embodied.errors import EmbodiedError
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


def test_reactive_stack_expert_recovers_a_drop():
    """The reactive expert has no phase to lose: after the cube is dropped mid-carry it grasps it again."""
    env = make_env({"backend": "robosuite", "task": "Stack", "cameras": [], "horizon": 300, "variety": True,
                    "perturbation": {"kind": "drop", "at_subgoal": "lift", "delay": 3}})
    info = run_episode(env, make_expert("robosuite", "Stack", noise=0.02, seed=0, kind="reactive"), 0)
    assert info["success"]
    assert info["perturbation"]["applied"], info


@pytest.mark.parametrize("kind,task,needle", [("planned", "Stack", "'planned' is not one of"),
                                              ("reactive", "Lift", "no reactive expert for robosuite task 'Lift'")])
def test_bad_expert_kind(kind, task, needle):
    with pytest.raises(EmbodiedError, match=needle):
        make_expert("robosuite", task, kind=kind)


def test_a_noisy_demo_depends_on_its_seed_alone():
    """Collected with action noise, the demo of a seed is the same whatever ran before it on that worker,
    so `embodied collect` (and the pipeline) give the same demos for the same seeds."""
    from embodied.envs.runner import run_episodes

    cfg = {"backend": "robosuite", "task": "Lift", "cameras": [], "horizon": 15}
    actions = {}

    def keep(res, traj):
        actions.setdefault(res["seed"], []).append(traj["actions"])

    for seeds in ([3, 4], [4]):
        run_episodes(cfg, lambda: make_expert("robosuite", "Lift", noise=0.1), seeds, record=True, on_episode=keep)
    first, again = actions[4]
    assert len(first) == len(again) == 15
    assert all((a == b).all() for a, b in zip(first, again))
    assert not all((a == b).all() for a, b in zip(actions[3][0], first))

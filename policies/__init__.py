"""Policies: the shared interface is `act(obs, subgoal) -> action` and `reset()`."""
from embodied.policies.scripted import ScriptedExpert, make_expert

__all__ = ["ScriptedExpert", "make_expert"]

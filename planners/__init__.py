"""Planners: text plans into typed sub-goals (`Plan`, `Subgoal`), and the planners behind one interface."""
from embodied.planners.plan import Plan, PlanParseError, Subgoal, parse_plan

__all__ = ["Plan", "PlanParseError", "Subgoal", "parse_plan"]

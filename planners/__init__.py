"""Planners: text plans into typed sub-goals (`Plan`, `Subgoal`), and the planners behind one interface
(`plan`, `replan`, `is_done`): EmbodiedGPT, its blind text-only baseline, and the simulator oracle."""
from embodied.planners.plan import Plan, PlanParseError, Subgoal, parse_plan
from embodied.planners.planners import BlindPlanner, EmbodiedGPTPlanner, OraclePlanner, Planner, make_planner

__all__ = ["BlindPlanner", "EmbodiedGPTPlanner", "OraclePlanner", "Plan", "PlanParseError", "Planner", "Subgoal",
           "make_planner", "parse_plan"]

"""Typed plans parsed from the EgoCOT schema the planner writes.

    Task: stack the red cube on the green cube. Plan: Step 1: reach the red cube. Step 2: ...
    Actions: 1. reach(red cube) 2. place(red cube, green cube)

Generated text is often imperfect. `parse_plan` never raises on it: what can be read is kept and the
plan is flagged `partial` with the reasons in `problems`. `parse_plan(text, strict=True)` raises
`PlanParseError` instead, for callers that must not act on a damaged plan.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from embodied.datasets.egocot import format_plan, subgoal_action
from embodied.errors import EmbodiedError


class PlanParseError(EmbodiedError):
    """Planner output that does not follow the Task/Plan/Actions schema."""


@dataclass
class Subgoal:
    text: str
    verb: str = ""
    args: list[str] = field(default_factory=list)

    @property
    def action(self) -> str:
        return f"{self.verb}({', '.join(self.args)})"


@dataclass
class Plan:
    task: str
    subgoals: list[Subgoal]
    partial: bool = False
    problems: list[str] = field(default_factory=list)
    text: str = ""

    def __len__(self) -> int:
        return len(self.subgoals)

    def to_text(self) -> str:
        return format_plan(self.task, [s.text for s in self.subgoals])

    @classmethod
    def from_subgoals(cls, task: str, sentences: list[str]) -> "Plan":
        plan = cls(task, [Subgoal(s, *subgoal_action(s)) for s in sentences])
        plan.text = plan.to_text()
        return plan


_STEP = re.compile(r"Step\s*(\d+)\s*:\s*(.*?)(?=\s*Step\s*\d+\s*:|$)", re.S)
_ACTION = re.compile(r"(\d+)\s*\.\s*([A-Za-z_][\w ]*?)\s*\(([^()]*)\)")


def parse_plan(text: str, strict: bool = False) -> Plan:
    problems: list[str] = []
    task_m = re.search(r"Task\s*:\s*(.*?)\s*(?=Plan\s*:|$)", text, re.S)
    task = task_m.group(1).strip().rstrip(".") if task_m else ""
    if not task_m:
        problems.append("no 'Task:'")
    plan_m = re.search(r"Plan\s*:\s*(.*?)\s*(?=Actions\s*:|$)", text, re.S)
    if not plan_m:
        problems.append("no 'Plan:'")
    steps = []
    for n, (num, body) in enumerate(_STEP.findall(plan_m.group(1) if plan_m else "")):
        if int(num) != n + 1:
            problems.append(f"step {num} out of order (expected {n + 1})")
        body = body.strip().rstrip(".").strip()
        if body:
            steps.append(body)
        else:
            problems.append(f"step {num} is empty")
    if plan_m and not steps:
        problems.append("no steps")
    act_m = re.search(r"Actions\s*:\s*(.*)$", text, re.S)
    actions = {}
    if act_m:
        for num, verb, args in _ACTION.findall(act_m.group(1)):
            actions.setdefault(int(num), (verb.strip(), [a.strip() for a in args.split(",") if a.strip()]))
    else:
        problems.append("no 'Actions:'")
    subgoals = []
    for i, s in enumerate(steps, 1):
        if i in actions:
            verb, args = actions[i]
        else:
            verb, args = subgoal_action(s)
            if act_m:
                problems.append(f"no action for step {i}")
        subgoals.append(Subgoal(s, verb, args))
    if act_m and len(actions) > len(steps):
        problems.append(f"{len(actions)} actions for {len(steps)} steps")
    if strict and problems:
        raise PlanParseError(f"malformed plan ({'; '.join(problems)}): {text[:120]!r}")
    return Plan(task, subgoals, partial=bool(problems), problems=problems, text=text)

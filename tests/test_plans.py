"""The EgoCOT plan schema: writing, parsing, and never crashing on malformed planner output."""
import random

import pytest

from embodied.datasets.egocot import format_plan, subgoal_action
from embodied.planners import Plan, PlanParseError, parse_plan

STEPS = ["reach the red cube", "grasp the red cube", "lift the red cube", "place the red cube on the green cube",
         "release the red cube"]


def test_round_trip():
    text = format_plan("stack the red cube on the green cube", STEPS)
    assert text.startswith("Task: stack the red cube on the green cube. Plan: Step 1: reach the red cube.")
    assert "Actions: 1. reach(red cube) 2. grasp(red cube) 3. lift(red cube) 4. place(red cube, green cube)" in text
    plan = parse_plan(text)
    assert not plan.partial and plan.task == "stack the red cube on the green cube"
    assert [s.text for s in plan.subgoals] == STEPS
    assert plan.subgoals[3].verb == "place" and plan.subgoals[3].args == ["red cube", "green cube"]
    assert plan.to_text() == text and Plan.from_subgoals(plan.task, STEPS).to_text() == text


@pytest.mark.parametrize("sentence,expected", [
    ("move the can over the bin", ("move", ["can", "bin"])),
    ("release the square nut onto the peg", ("release", ["square nut", "peg"])),
    ("hit the nail with the hammer", ("hit", ["nail", "hammer"])),
    ("pull the drawer open", ("pull", ["drawer open"])),
])
def test_subgoal_actions(sentence, expected):
    assert subgoal_action(sentence) == expected


def test_partial_plans_are_flagged_not_raised():
    p = parse_plan("Task: lift the cube. Plan: Step 1: reach the cube. Step 3: grasp the cube. Actions: 1. reach(cube)")
    assert p.partial and [s.text for s in p.subgoals] == ["reach the cube", "grasp the cube"]
    assert any("out of order" in q for q in p.problems) and any("no action for step 2" in q for q in p.problems)
    assert p.subgoals[1].verb == "grasp"  # read from the sentence when the action is missing
    with pytest.raises(PlanParseError, match="malformed plan"):
        parse_plan(p.text, strict=True)
    assert parse_plan("").partial and parse_plan("").subgoals == []


def test_parser_survives_garbage():
    rng = random.Random(0)
    alphabet = list("Task:Plan:Step 1:Actions:(),. abc\n0123456789")
    good = format_plan("lift the cube", STEPS[:3])
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        cut = good[: rng.randint(0, len(good))]  # a generation stopped mid-plan
        for t in (text, cut, cut + text):
            p = parse_plan(t)
            assert isinstance(p, Plan) and (p.partial or p.subgoals)

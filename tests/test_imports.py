"""The package's import graph, read from the source (imports inside functions included): no circle, and the ground
floor (errors, io, assets, run config) imports no stage. A circle hidden in a function-level import still makes two
modules one unit that cannot be read, tested or moved alone."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where each installed package lives in the repository (pyproject.toml's package-dir).
FOLDERS = {"embodied": "embodied", "embodied.envs": "envs", "embodied.policies": "policies",
           "embodied.planners": "planners", "embodied.datasets": "datasets"}
GROUND = {"embodied.errors", "embodied.io", "embodied.assets", "embodied.runconfig", "embodied.pretrained"}
# The data flow (README, Layout): a module imports only modules of its own layer or the layers before it.
LAYERS = [
    (*GROUND, "embodied.layers", "embodied.metrics"),
    ("embodied.datasets", "embodied.envs"),
    ("embodied.modeling", "embodied.configuration_embodiedgpt", "embodied.decoding", "embodied.tokenizer"),
    ("embodied.planners", "embodied.policies"),
    ("embodied.agent", "embodied.configuration_agent", "embodied.fsdp", "embodied.launch"),
    ("embodied.jobs",),
    ("embodied.cli",),
]


def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name."""
    mods = {}
    for pkg, folder in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if pkg == "embodied" and parts and parts[0] in {"envs", "policies", "planners", "datasets"}:
                continue
            name = ".".join([pkg, *parts])
            mods[name] = path
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The package module an imported name belongs to (`embodied.envs.make_env` -> `embodied.envs`)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports, at any depth of its source (not through re-exports)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        deps = set()
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = mod if is_pkg else mod.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}".rstrip(".")
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            for n in names:
                if n.startswith("embodied"):
                    target = _resolve(n, mods)
                    # `from embodied.policies import base` names a module; `import embodied.x` its package too
                    if target and target != mod and not mod.startswith(target + "."):
                        deps.add(target)
        graph[mod] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_function_level_imports():
    graph = import_graph()
    assert "embodied.modeling" in graph["embodied.policies.egpt.policy"]  # imported inside __init__
    assert "embodied.envs.runner" in graph["embodied.jobs.rollout"] and len(graph) > 60


def test_no_import_circle():
    assert _cycles(import_graph()) == []


def test_a_circle_would_be_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_ground_floor_imports_no_stage():
    graph = import_graph()
    for mod in sorted(graph):
        if mod in GROUND or any(mod.startswith(g + ".") for g in GROUND):
            above = {d for d in graph[mod] if d not in GROUND and not any(d.startswith(g + ".") for g in GROUND)}
            assert not above, f"{mod} (ground floor) imports {sorted(above)}"


def _layer(mod: str) -> int:
    if mod == "embodied":  # the package's __init__: the ground floor
        return 0
    best = max(((len(p), i) for i, names in enumerate(LAYERS) for p in names if mod == p or mod.startswith(p + ".")),
               default=None)
    assert best is not None, f"{mod} is in no layer of tests/test_imports.py's LAYERS"
    return best[1]


def test_imports_follow_the_data_flow():
    back = [f"{m} -> {d}" for m, deps in sorted(import_graph().items()) for d in sorted(deps) if _layer(d) > _layer(m)]
    assert not back, f"imports against the data flow: {back}"


def test_planners_and_policies_stand_side_by_side():
    graph = import_graph()
    for a, b in (("embodied.planners", "embodied.policies"), ("embodied.policies", "embodied.planners")):
        crossing = [f"{m} -> {d}" for m, deps in graph.items() if m.startswith(a) for d in deps if d.startswith(b)]
        assert not crossing, crossing

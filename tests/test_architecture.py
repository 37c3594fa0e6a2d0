"""docs/ARCHITECTURE.md holds: rooms import only lower rooms, no import cycles, models stays pure."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A room may import only rooms of a lower rank (docs/ARCHITECTURE.md, "The rooms").
FARM_RANKS = {
    "errors": 0,
    "faults": 0,
    "store": 1,
    "allocator": 1,
    "geometry": 1,
    "kinematics": 1,
    "sharding": 2,
    "ray_utils": 2,
    "samples": 2,
    "specs": 3,
    "records": 4,
    "cards": 4,
    "formats": 5,
    "generation": 6,
    "data": 7,
    "evaluation": 7,
    "registry": 8,
    "train": 9,
    "export": 9,
    "tune": 10,
    "campaign": 10,
    "quickstart": 11,
    "serve": 11,
    "cli": 12,
}
MODELS_RANKS = {
    "noise": 0,
    "data": 0,
    "checkpoint": 0,
    "linalg": 0,
    "samplers": 1,
    "quantile": 1,
    "cardinality": 1,
    "processes": 2,
    "networks": 2,
    "preprocessing": 2,
    "stage_preprocessing": 3,
    "sets": 3,
    "set_preprocessing": 3,
    "set_conditions": 4,
    "config": 4,
    "likelihood": 4,
    "generative": 5,
    "unrolled": 6,
    "loop": 6,
    "objectives": 7,
    "stream": 7,
    "two_stage": 8,
    "points": 8,
    "set_model": 8,
    "training": 9,
    "distill": 9,
    "loading": 9,
}
EDGE_ONLY = ("ray", "mlflow", "fsspec", "s3fs", "farm")  # never imported by models/


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in ("farm", "models"):
        for f in (ROOT / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = f
    return out


def _imports(path: Path) -> list[str]:
    """Every module named by an import anywhere in the file (inside functions too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return names


def _graph() -> dict[str, set[str]]:
    """Module -> the farm/models modules it imports."""
    modules = _modules()
    graph = defaultdict(set)
    for name, path in modules.items():
        for target in _imports(path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def _room(module: str) -> tuple[str, str] | None:
    parts = module.split(".")
    return (parts[0], parts[1]) if len(parts) > 1 else None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_every_room_has_a_rank():
    rooms = {_room(m) for m in _modules() if _room(m)}
    assert {r for p, r in rooms if p == "farm"} == set(FARM_RANKS)
    assert {r for p, r in rooms if p == "models"} == set(MODELS_RANKS)


def test_rooms_import_only_lower_rooms():
    ranks = {"farm": FARM_RANKS, "models": MODELS_RANKS}
    wrong = []
    for module, targets in _graph().items():
        src = _room(module)
        for target in targets:
            dst = _room(target)
            if src is None or dst is None or dst[1] == src[1]:
                continue
            if dst[0] == "farm" and src[0] == "models":
                wrong.append(f"{module} -> {target} (models never imports farm)")
            elif dst[0] == src[0] and ranks[src[0]][dst[1]] >= ranks[src[0]][src[1]]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against docs/ARCHITECTURE.md:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles_between_modules_or_rooms():
    graph = _graph()
    assert not _cycles(graph)
    rooms = defaultdict(set)
    for module, targets in graph.items():
        for target in targets:
            if _room(module) and _room(target) and _room(module) != _room(target):
                rooms[".".join(_room(module))].add(".".join(_room(target)))
    assert not _cycles(rooms)


def test_models_never_imports_the_edge():
    bad = [
        f"{name}: {target}"
        for name, path in _modules().items()
        if name.startswith("models")
        for target in _imports(path)
        if target.split(".")[0] in EDGE_ONLY
    ]
    assert not bad, bad

"""The package's layers: imports run one way, with no cycles, counting every import statement (inside
functions and under ``TYPE_CHECKING`` too), read from the source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "metalearn_lite"

#: each module's layer; a module may import from its own layer or from lower ones (smaller numbers) only
LAYERS = {
    "core": 0,  # _malloc, devices, paths, episodes, fewshot, distances, models, augment, evaluation,
    # finite (non-finite numbers are errors), integrity (digests, durable writes), interrupts (signals at a step
    # boundary), preflight (checks before step 1), compiling (channels_last, the compiler check of torch.compile)
    "datasets": 1,
    "algorithms": 2,
    "training": 3,
    "resumption": 3,  # what a resumed run may change
    "distributed": 3,
    "checkpoints": 3,
    "upgrade": 3,  # converts version 0.1's checkpoints (reads them through checkpoints)
    "recipes": 4,
    "cli": 5,
    "__main__": 6,
    "lessons": 6,
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every ``metalearn_lite`` module ``path`` imports, wherever the statement stands."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("metalearn_lite"):
                found.add(target)
                for alias in node.names:  # `from . import x` / `from .pkg import module`
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("metalearn_lite"))
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return -1  # the package's own __init__: the facade that re-exports the layers (nothing imports it)
    return LAYERS.get(parts[1], LAYERS["core"])


def test_the_graph_is_read_from_every_import_form():
    g = graph()
    assert "metalearn_lite.algorithms.batched_classifier" in g["metalearn_lite.algorithms.protonet"]  # `from .x import`
    assert "metalearn_lite.distances" in g["metalearn_lite.algorithms.protonet"]  # `from ..distances import`
    assert "metalearn_lite.recipes.folder" in g["metalearn_lite.recipes"]  # an import inside a method


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g.get(m, ())):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_imports_run_one_way():
    wrong = [f"{m} (layer {layer(m)}) imports {n} (layer {layer(n)})"
             for m, targets in graph().items() for n in targets
             if layer(m) >= 0 and (layer(n) > layer(m) or layer(n) < 0)]
    assert not wrong, "\n".join(wrong)


def test_nothing_but_lessons_imports_the_lessons_and_methods_read_no_files():
    g = graph()
    for m, targets in g.items():
        if not m.startswith("metalearn_lite.lessons"):
            assert not any(t.startswith("metalearn_lite.lessons") for t in targets), m
    for m, targets in g.items():  # a method never reads a checkpoint or knows a recipe
        if m.startswith("metalearn_lite.algorithms") or m.startswith("metalearn_lite.datasets"):
            assert not {t for t in targets if t.split(".")[1] in ("checkpoints", "training", "recipes", "cli")}, m


def test_one_class_mean_and_one_cosine():
    sources = {p: p.read_text() for p in PACKAGE.rglob("*.py")}
    means = [p.name for p, s in sources.items() if "index_add_" in s or "def prototypes" in s]
    cosines = [p.name for p, s in sources.items() if "def cosine_similarity" in s]
    assert means == [] and cosines == ["distances.py"]

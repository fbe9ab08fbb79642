"""The package's layers: each folder imports only the folders beneath it, and no circle.

Read from the source with `ast` (every import statement, those inside functions too),
so a lazy import cannot slip a layer past the check.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "lm_eval_semcal"
PACKAGE = "lm_eval_semcal"

# Bottom to top. `tasks` is the YAML folder's locator (pathlib only).
LAYERS = ("tasks", "core", "grouping", "harness", "runs", "demo", "cli")
# What core may import besides the standard library (relplot brings scipy).
CORE_THIRD_PARTY = {"numpy", "relplot", "scipy"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    """The layer index of a module of the package; None for the package root and _moved."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] in ("_moved",):
        return None
    top = "cli" if parts[1] in ("cli", "__main__") else parts[1]
    return LAYERS.index(top)


def imports(path: Path, top_level_only: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) for each import in the file; `from a import b` gives a.b
    when a.b is a module of the package, else a."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = candidate.startswith(PACKAGE) and (
                    (PACKAGE_DIR.parent / candidate.replace(".", "/")).with_suffix(".py").is_file()
                    or (PACKAGE_DIR.parent / candidate.replace(".", "/")).is_dir()
                )
                found.append((candidate if is_module else node.module, node.lineno))
    return found


SOURCES = sorted(PACKAGE_DIR.rglob("*.py"))


def test_every_module_is_in_a_layer():
    folders = {path.relative_to(PACKAGE_DIR).parts[0] for path in SOURCES if len(path.relative_to(PACKAGE_DIR).parts) > 1}
    assert folders == set(LAYERS) - {"cli"}
    top = {path.name for path in SOURCES if path.parent == PACKAGE_DIR}
    assert top == {"__init__.py", "__main__.py", "_moved.py", "cli.py"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_imports_point_down(path):
    here = module_name(path)
    here_layer = layer_of(here)
    for target, line in imports(path):
        root = target.split(".")[0]
        if root == "lm_eval":
            assert here.startswith(f"{PACKAGE}.harness."), f"{path.name}:{line} imports lm_eval outside harness/"
        if root != PACKAGE:
            if here.startswith(f"{PACKAGE}.core."):
                assert root in sys.stdlib_module_names or root in CORE_THIRD_PARTY, (
                    f"{path.name}:{line}: core imports {target}; it may use numpy and relplot only"
                )
            continue
        if here_layer is None:
            # The root's lazy exports and _moved's aliases import by string, never by statement.
            assert here == PACKAGE and target == f"{PACKAGE}._moved", f"{path.name}:{line} imports {target}"
            continue
        target_layer = layer_of(target)
        assert target_layer is not None, f"{path.name}:{line} imports the package root ({target})"
        assert target_layer <= here_layer, (
            f"{path.relative_to(PACKAGE_DIR)}:{line} imports {target}, a layer above "
            f"({LAYERS[target_layer]} > {LAYERS[here_layer]})"
        )


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (module -> modules it imports), or None."""
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state and (circle := visit(nxt, trail + [nxt])):
                return circle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (circle := visit(node, [node])):
            return circle
    return None


def test_no_import_circle():
    graph = {
        module_name(path): {target for target, _ in imports(path, top_level_only=True) if target.startswith(PACKAGE)}
        for path in SOURCES
    }
    assert find_circle(graph) is None, " -> ".join(find_circle(graph))
    # The registry and the B it loads (the circle this layout removed) would be found:
    assert find_circle({"registry": {"llm"}, "llm": {"base", "registry"}, "base": set()}) == ["llm", "registry", "llm"]


def test_the_checks_catch_a_climb(tmp_path):
    # The parser behind the checks sees imports inside functions too.
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from lm_eval_semcal.runs.report import write_reports\n    import lm_eval\n")
    assert [t for t, _ in imports(source)] == ["lm_eval_semcal.runs.report", "lm_eval"]
    assert layer_of("lm_eval_semcal.runs.report") > layer_of("lm_eval_semcal.core.metrics")


def test_each_folder_says_what_it_holds_and_may_import():
    for folder in LAYERS[1:-1]:
        doc = ast.get_docstring(ast.parse((PACKAGE_DIR / folder / "__init__.py").read_text()))
        assert doc and "May import" in doc, f"{folder}/__init__.py needs a docstring naming what it may import"

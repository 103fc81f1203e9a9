"""The package structure of docs/../DESIGN: arrows point down only.

Read from the source (AST, every import, function-local ones included):
- no package of ncfine imports a package that imports it back (directly or through others);
- no module imports another package's `_private` name;
- `ncfine.analysis` and `ncfine.features` import no Lightning and no Hydra; the apps that take a
  trained model (`ncfine.posthoc`) nothing from training (`ncfine.callbacks`, `ncfine.run`); one
  training run (`ncfine.run`) nothing from the sweeps above it or the apps beside it; what they
  share (`ncfine.results`, `ncfine.utils`) nothing from any of them.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

SRC = Path(os.environ.get("NCFINE_LAYERING_SRC", Path(__file__).resolve().parents[1] / "src"))


def _unit(module: str) -> str:
    """The package a module belongs to for layering: `ncfine.<sub>` (top-level modules are their own)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "ncfine" else parts[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every import statement in the file, relative ones resolved."""
    tree = ast.parse(path.read_text())
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((module, [alias.name for alias in node.names]))
    return found


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    edges: dict[str, set[str]] = {}
    private: list[str] = []
    for path in sorted((SRC / "ncfine").rglob("*.py")):
        here = _module_name(path)
        for module, names in _imports(path):
            if not module.startswith("ncfine"):
                continue
            src, dst = _unit(here), _unit(module)
            if src != dst:
                edges.setdefault(src, set()).add(dst)
                hidden = [n for n in names if n.startswith("_")] + [
                    p for p in module.split(".")[1:] if p.startswith("_") and p != "__init__"
                ]
                if hidden:
                    private.append(f"{here} imports {hidden} from {module}")
    return edges, private


def _reaches(edges: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo += list(edges.get(node, ()))
    return False


def test_no_package_imports_a_package_that_imports_it_back():
    edges, _ = _graph()
    # ncfine/__init__.py only re-exports the public API (ncfine.analyze): a facade, not a layer.
    edges.pop("ncfine", None)
    cycles = sorted(
        f"{a} -> {b} -> ... -> {a}" for a, targets in edges.items() for b in targets if _reaches(edges, b, a)
    )
    assert not cycles, cycles


def test_no_cross_package_import_of_a_private_name():
    _, private = _graph()
    assert not private, private


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("analysis", ("pytorch_lightning", "lightning", "hydra", "omegaconf", "ncfine.callbacks", "ncfine.features")),
        ("features", ("pytorch_lightning", "lightning", "hydra", "omegaconf", "ncfine.callbacks", "ncfine.posthoc")),
        ("posthoc", ("ncfine.callbacks", "ncfine.run")),
        ("callbacks", ("ncfine.posthoc", "ncfine.run", "ncfine.sweep")),
        ("run", ("ncfine.sweep", "ncfine.posthoc", "ncfine.collect")),
        ("sweep", ("ncfine.posthoc", "ncfine.collect")),
        ("results", ("ncfine.run", "ncfine.sweep", "ncfine.posthoc", "ncfine.callbacks", "ncfine.collect")),
        ("utils", ("ncfine.run", "ncfine.sweep", "ncfine.posthoc", "ncfine.callbacks", "ncfine.collect")),
    ],
)
def test_lower_layers_import_nothing_above_them(package, forbidden):
    bad = [
        f"{_module_name(path)} imports {module}"
        for path in sorted((SRC / "ncfine" / package).rglob("*.py"))
        for module, _ in _imports(path)
        if any(module == f or module.startswith(f + ".") for f in forbidden)
    ]
    assert not bad, bad


def test_the_package_root_is_a_table_of_contents():
    # Entry points and the notebook API beside the packages; every package says its job in its
    # docstring's first line.
    root = SRC / "ncfine"
    assert sorted(p.name for p in root.glob("*.py")) == ["__init__.py", "api.py", "plot.py", "train.py"]
    for package in sorted(p.parent for p in root.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc and doc.splitlines()[0].strip(), f"{package.name} has no docstring saying its job"

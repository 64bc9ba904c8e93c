"""The house rules of DESIGN section 6 that import-linter cannot express.

- no import cycles between the modules of the package (TYPE_CHECKING imports aside);
- no module imports a ``_private`` name of another module, and a module private as a whole
  (``_name.py``) is imported only by its own package;
- modules stay short (one concept each): at most ``MAX_LINES`` lines unless listed below, with
  the reason.

The layer contracts themselves run as ``lint-imports`` in tests/run.sh (pyproject.toml,
``[tool.importlinter]``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("terramind_nyc", "training")
MAX_LINES = 400
#: Modules allowed above MAX_LINES, and why.
LONG_MODULES: dict[str, str] = {
    "terramind_nyc/testing/fixture_catalog.py": "a 40-line docstring documents every generated scenario, "
    "the test oracle the reader is checked against; the code is one builder",
}


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


MODULES = {name: path for pkg in PACKAGES for name, path in _modules(pkg).items()}


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` of every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in MODULES:  # "from pkg import module"
                    out.append((sub, None, node.lineno))
                else:
                    out.append((target, a.name, node.lineno))
    return out


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def test_no_private_names_or_private_modules_across_modules():
    bad = []
    for module in MODULES:
        for target, name, line in _imports(module):
            if not target.startswith(PACKAGES):
                continue
            where = f"{MODULES[module].relative_to(ROOT)}:{line}"
            if name is not None and _private(name) and target != module:
                bad.append(f"{where} imports {name} from {target}")
            parts = target.split(".")
            for i, part in enumerate(parts):
                if _private(part):
                    owner = ".".join(parts[:i])  # the package the private module belongs to
                    if module != owner and not module.startswith(owner + "."):
                        bad.append(f"{where} imports the private module {target}")
                    break
    assert not bad, "\n".join(bad)


def test_no_import_cycles_between_modules():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("terramind_nyc", exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    # a package's __init__ importing its own submodules (and them importing the package) is no cycle
    # of concepts: only edges between distinct modules that are not parent/child count
    def related(a: str, b: str) -> bool:
        return a.startswith(b + ".") or b.startswith(a + ".")

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if related(v, w):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in modules:
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"


def test_modules_stay_short():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    unexplained = {k: v for k, v in long.items() if k not in LONG_MODULES}
    assert not unexplained, f"modules over {MAX_LINES} lines (split them, or list them with the reason): {unexplained}"
    stale = sorted(set(LONG_MODULES) - set(long))
    assert not stale, f"LONG_MODULES lists modules that are short now: {stale}"

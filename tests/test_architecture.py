"""The layering of docs/architecture.md holds in the code.

The allowed imports are read from that document's package table (and its diagram must
draw exactly those), so the document and this test cannot drift apart. Every import
counts: at module level, inside functions and under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
MAX_LINES = 400
# Modules (product, tests and benchmarks alike) allowed past MAX_LINES, each with the
# reason it cannot be split sensibly.
LONG_MODULES: dict[str, str] = {}
# Top-level packages of the repository that ship no product code; no product module may
# import them.
NOT_PRODUCT = ("tests", "benchmarks")


def product_packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["setuptools"]["packages"])


def documented_rules() -> dict[str, set[str]]:
    """The "May import" column of the doc's package table: package -> packages."""
    rules: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.fullmatch(r"`\w+`", cells[0]):
            continue
        rules[cells[0].strip("`")] = set(re.findall(r"`(\w+)`", cells[2]))
    return rules


def diagram_edges() -> set[tuple[str, str]]:
    """The arrows of the doc's mermaid diagram, as (importer, imported)."""
    text = DOC.read_text()
    diagram = re.search(r"```mermaid\n(.*?)```", text, re.S)
    assert diagram is not None, f"{DOC} has no mermaid diagram"
    return set(re.findall(r"^\s*(\w+)\s*-->\s*(\w+)\s*$", diagram.group(1), re.M))


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    path: Path
    line: int
    module: str  # the project module imported, dotted


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(packages: list[str]) -> dict[str, Path]:
    return {module_name(path): path for package in packages
            for path in sorted((ROOT / package).rglob("*.py"))}


def imports_of(path: Path, known: set[str], roots: set[str]) -> Iterator[Import]:
    """Every import of a project module in ``path``, wherever it is in the file. ``from
    p import m`` imports module ``p.m`` if there is one, else the package ``p``."""
    importer = module_name(path)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = list(dict.fromkeys(
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names))
        else:
            continue
        for target in targets:
            if target.split(".")[0] in roots:
                yield Import(importer, path, node.lineno, target)


def all_imports() -> list[Import]:
    packages = product_packages()
    modules = project_modules(packages)
    known = set(modules) | set(project_modules(list(NOT_PRODUCT)))
    roots = set(packages) | set(NOT_PRODUCT)
    return [found for path in modules.values() for found in imports_of(path, known, roots)]


def test_the_doc_and_its_diagram_cover_every_package() -> None:
    rules = documented_rules()
    assert sorted(rules) == sorted(product_packages()), (
        f"{DOC.name}'s package table must list exactly the packages of pyproject.toml")
    for package, allowed in rules.items():
        assert allowed <= set(rules), f"{package} may import unknown packages {allowed}"
        assert package not in allowed
    assert diagram_edges() == {(p, q) for p, allowed in rules.items() for q in allowed}, (
        f"{DOC.name}'s diagram must draw exactly the imports its table allows")


def test_each_package_imports_only_what_the_doc_allows() -> None:
    rules = documented_rules()
    wrong = []
    for found in all_imports():
        importer = found.importer.split(".")[0]
        imported = found.module.split(".")[0]
        if imported != importer and imported not in rules.get(importer, set()):
            wrong.append(f"{found.path.relative_to(ROOT)}:{found.line} imports {found.module}"
                         f" ({importer} may import only {sorted(rules.get(importer, []))})")
    assert not wrong, "\n".join(wrong)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for after in sorted(graph.get(node, ())):
            if after not in index:
                visit(after)
                low[node] = min(low[node], low[after])
            elif after in on_stack:
                low[node] = min(low[node], index[after])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for found in all_imports():
        if found.module != found.importer:
            graph.setdefault(found.importer, set()).add(found.module)
    found = cycles(graph)
    assert not found, "modules that import each other: " + "; ".join(
        " <-> ".join(component) for component in found)


def test_no_module_is_longer_than_the_limit() -> None:
    long = {}
    for path in project_modules([*product_packages(), *NOT_PRODUCT]).values():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and str(path.relative_to(ROOT)) not in LONG_MODULES:
            long[str(path.relative_to(ROOT))] = lines
    assert not long, f"modules over {MAX_LINES} lines (split them by what they hold): {long}"
    for listed in LONG_MODULES:
        assert (ROOT / listed).exists(), f"{listed} is listed as long but does not exist"


def test_no_test_module_imports_another() -> None:
    """What tests share lives in tests/support or a conftest.py, never in a test module."""
    modules = project_modules(list(NOT_PRODUCT))
    roots = set(product_packages()) | set(NOT_PRODUCT)
    wrong = [f"{found.path.relative_to(ROOT)}:{found.line} imports {found.module}"
             for path in modules.values() for found in imports_of(path, set(modules), roots)
             if found.module.rpartition(".")[2].startswith("test_")]
    assert not wrong, "\n".join(wrong)

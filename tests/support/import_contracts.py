"""An import-linter contract type the built-in ones lack: no private name
(one starting with ``_``) is imported from another package.

A leading underscore says "this module's business"; importing it from
elsewhere couples two packages through something neither promised to keep
(server/cli.py's ``_settings`` once tied four modules into a circle). Within
one package (modules with the same parent) it stays allowed. Registered in
pyproject.toml under ``[tool.importlinter]`` and run by ``lint-imports``.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import grimp
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def _package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = _package_of(importer, is_package).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_name_imports(module: str) -> list[tuple[int, str, str]]:
    """(line, imported module, name) for each private name ``module`` takes
    from a module of another package."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return []
    is_package = spec.submodule_search_locations is not None
    tree = ast.parse(Path(spec.origin).read_text(), filename=spec.origin)
    mine = _package_of(module, is_package)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = _resolve(module, is_package, node)
        for alias in node.names:
            name = alias.name
            if not name.startswith("_") or name.startswith("__"):
                continue
            source_spec = importlib.util.find_spec(source) if source else None
            source_is_package = bool(source_spec and source_spec.submodule_search_locations is not None)
            if _package_of(source, source_is_package) != mine:
                found.append((node.lineno, source, name))
    return found


class PrivateNamesContract(Contract):
    type_name = "private_names"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        roots = tuple(str(p) for p in self.packages)  # type: ignore[attr-defined]
        broken = []
        for module in sorted(graph.modules):
            if module.split(".")[0] not in roots:
                continue
            for line, source, name in private_name_imports(module):
                broken.append(f"{module} (l.{line}) imports {name} from {source}")
        return ContractCheck(kept=not broken, metadata={"broken": broken})

    def render_broken_contract(self, check: ContractCheck) -> None:
        output.print_error("Private names may only be imported within their own package:", bold=False)
        output.new_line()
        for line in check.metadata["broken"]:
            output.print_error(f"- {line}", bold=False)
            output.new_line()

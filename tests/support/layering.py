"""A static import checker for layered packages (what import-linter's layers contract does).

import-linter cannot read this project: its graph builder finds the subpackages of
``iii_trio`` on disk, and they live in the top-level folders ``actors/``, ``runtime/`` and
``sdk/`` that setuptools maps into ``iii_trio`` (``package-dir``). This walks those folders
with :mod:`ast` instead. Every import counts, type-only ones (under ``if TYPE_CHECKING:``)
and imports inside functions included.

A contract is a list of layers, lowest first; each layer is a set of packages. A module may
import from its own package and from any package of a lower layer, nothing else: not a
higher layer, and not another package of its own layer (siblings stay independent).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import attrs


@attrs.frozen
class Violation:
    module: str  # the importing module, e.g. iii_trio.runtime.calls.router
    line: int
    imported: str  # the imported module, e.g. iii_trio.runtime.connections.connection
    rule: str  # why it is forbidden

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported}: {self.rule}"


def source_modules(roots: Mapping[str, Path]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under each root (``{"iii_trio.sdk":
    Path("sdk")}``); a package's ``__init__.py`` is the package itself."""
    modules: dict[str, Path] = {}
    for package, folder in roots.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in the file, resolved to a known module
    where ``from package import name`` names a submodule."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    seen: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        found: list[str] = []
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node.module, node.level)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append(candidate if candidate in known else base)
        for imported in found:
            if (node.lineno, imported) not in seen:  # `from x import a, b`: x once
                seen.add((node.lineno, imported))
                yield node.lineno, imported


def _absolute(module: str, is_package: bool, name: str | None, level: int) -> str:
    if level == 0:
        return name or ""
    parts = module.split(".")
    if not is_package:
        parts.pop()
    parts = parts[: len(parts) - (level - 1)]
    return ".".join([*parts, name] if name else parts)


def owner(module: str, packages: Sequence[str]) -> str | None:
    """The longest listed package ``module`` belongs to."""
    matches = [p for p in packages if module == p or module.startswith(p + ".")]
    return max(matches, key=len, default=None)


def check_layers(
    modules: Mapping[str, Path], layers: Sequence[set[str]], *, scope: str
) -> list[Violation]:
    """Violations of ``layers`` among the modules under ``scope`` (imports of modules outside
    every layer, such as the standard library, are ignored)."""
    level = {package: i for i, layer in enumerate(layers) for package in layer}
    packages = list(level)
    known = set(modules)
    found: list[Violation] = []
    for module, path in modules.items():
        if not (module == scope or module.startswith(scope + ".")):
            continue
        source = owner(module, packages)
        if source is None:
            continue
        for line, imported in imports_of(module, path, known):
            target = owner(imported, packages)
            if target is None or target == source:
                continue
            if level[target] > level[source]:
                rule = f"{source} (layer {level[source]}) may not import the higher {target}"
            elif level[target] == level[source]:
                rule = f"{source} and {target} are siblings of one layer and stay independent"
            else:
                continue
            found.append(Violation(module, line, imported, rule))
    return found


def check_only(
    modules: Mapping[str, Path], source: str, allowed: Sequence[str], *, within: str
) -> list[Violation]:
    """Violations of "modules under ``source`` import nothing under ``within`` except
    ``allowed``, ``source`` itself and the root package ``within``"."""
    known = set(modules)
    found: list[Violation] = []
    for module, path in modules.items():
        if not (module == source or module.startswith(source + ".")):
            continue
        for line, imported in imports_of(module, path, known):
            if not imported.startswith(within + "."):
                continue  # outside ``within``, or its root package (``__version__``)
            if owner(imported, [source, *allowed]) is not None:
                continue
            rule = f"{source} may import only {', '.join(allowed)} of {within}"
            found.append(Violation(module, line, imported, rule))
    return found

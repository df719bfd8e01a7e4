"""The import contract (docs/architecture.md, "Layers"), checked by ``make lint``.

    actors <- runtime.wire <- core <- runtime.modules <- runtime.engine <- runtime.cli
    sdk    <- runtime.wire

Core is, lowest first: config and clock; calls; connections; builtins. A package may import
its own modules and lower layers only; packages of one layer are independent. Every import
counts, type-only ones included.

Inside ``runtime.modules`` (:data:`MODULE_LAYERS`), each module kind's package (rest_api,
state, stream, queue, pubsub, cron, observability) imports only itself and what the modules
share (context, base, storage, absent, kind); only the catalog names every kind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.layering import check_layers, check_only, owner, source_modules

ROOT = Path(__file__).resolve().parent.parent
ROOTS = {
    "iii_trio": ROOT / "iii_trio",
    "iii_trio.actors": ROOT / "actors",
    "iii_trio.runtime": ROOT / "runtime",
    "iii_trio.sdk": ROOT / "sdk",
}

LAYERS = [
    {"iii_trio.actors"},
    {"iii_trio.runtime.wire"},
    {"iii_trio.runtime.config", "iii_trio.runtime.clock"},
    {"iii_trio.runtime.calls"},
    {"iii_trio.runtime.connections"},
    {"iii_trio.runtime.builtins"},
    {"iii_trio.runtime.modules"},
    {"iii_trio.runtime.engine"},
    # The SDK imports only the wire (test below and tests/sdk/test_depends_only_on_wire.py).
    {"iii_trio.sdk"},
    {"iii_trio.runtime.cli"},
    {"iii_trio.runtime.__main__"},
]


MODULES = "iii_trio.runtime.modules"
MODULE_KINDS = ("rest_api", "state", "stream", "queue", "pubsub", "cron", "observability")
MODULE_LAYERS = [
    {f"{MODULES}.context"},
    {f"{MODULES}.base", f"{MODULES}.storage", f"{MODULES}.absent"},
    {f"{MODULES}.kind"},
    {f"{MODULES}.{kind}" for kind in MODULE_KINDS},  # siblings: independent of each other
    {f"{MODULES}.catalog"},
]


def modules_of(roots: dict[str, Path]) -> dict[str, Path]:
    return source_modules(roots)


def test_the_runtime_is_layered() -> None:
    violations = check_layers(modules_of(ROOTS), LAYERS, scope="iii_trio")
    assert not violations, "\n".join(map(str, violations))


def test_the_module_packages_are_independent_of_each_other() -> None:
    modules = modules_of(ROOTS)
    violations = check_layers(modules, MODULE_LAYERS, scope=MODULES)
    assert not violations, "\n".join(map(str, violations))
    listed = [package for layer in MODULE_LAYERS for package in layer]
    unlisted = [m for m in modules if m.startswith(f"{MODULES}.") and owner(m, listed) is None]
    assert not unlisted, f"add to MODULE_LAYERS: {unlisted}"  # a new module kind, say


def test_the_module_contract_reports_one_module_importing_another(tmp_path: Path) -> None:
    """The real tree with one more file in the state package, importing the stream module."""
    probe = tmp_path / "probe.py"
    probe.write_text("from iii_trio.runtime.modules.stream.items import StreamItems\n")
    modules = modules_of(ROOTS) | {f"{MODULES}.state.probe": probe}
    [violation] = check_layers(modules, MODULE_LAYERS, scope=MODULES)
    assert (violation.module, violation.imported) == (
        f"{MODULES}.state.probe",
        f"{MODULES}.stream.items",
    )
    assert "siblings" in violation.rule


def test_the_sdk_depends_only_on_the_wire() -> None:
    modules = modules_of(ROOTS)
    violations = check_only(modules, "iii_trio.sdk", ["iii_trio.runtime.wire"], within="iii_trio")
    assert not violations, "\n".join(map(str, violations))


def test_the_actors_toolkit_stands_alone() -> None:
    modules = modules_of(ROOTS)
    violations = check_only(modules, "iii_trio.actors", [], within="iii_trio")
    assert not violations, "\n".join(map(str, violations))


# --- the checker itself, on trees made for the test -------------------------------------------


def write(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {"pkg": tmp_path}


@pytest.mark.parametrize(
    "source",
    [
        "from pkg.high import thing\n",
        "import pkg.high.deep\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.high import T\n",
        "def later():\n    from ..high import thing\n",
        "from pkg import high\n",
    ],
    ids=["from-import", "import", "type-only", "relative-in-function", "submodule-by-name"],
)
def test_an_import_of_a_higher_layer_is_reported(tmp_path: Path, source: str) -> None:
    roots = write(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/mod.py": source,
            "high/__init__.py": "",
            "high/deep.py": "",
        },
    )
    [violation] = check_layers(source_modules(roots), [{"pkg.low"}, {"pkg.high"}], scope="pkg")
    assert violation.module == "pkg.low.mod"
    assert violation.imported.startswith("pkg.high")
    assert "may not import the higher pkg.high" in str(violation)


def test_siblings_of_one_layer_are_independent_and_lower_layers_are_allowed(
    tmp_path: Path,
) -> None:
    roots = write(
        tmp_path,
        {
            "__init__.py": "",
            "base.py": "",
            "a/__init__.py": "from pkg.base import x\nfrom pkg.a import own\n",
            "b/__init__.py": "from pkg.a import y\n",
        },
    )
    layers = [{"pkg.base"}, {"pkg.a", "pkg.b"}]
    [violation] = check_layers(source_modules(roots), layers, scope="pkg")
    assert (violation.module, violation.imported) == ("pkg.b", "pkg.a")
    assert "siblings" in violation.rule


def test_check_only_reports_what_is_not_allowed(tmp_path: Path) -> None:
    roots = write(
        tmp_path,
        {
            "__init__.py": "VERSION = 1\n",
            "wire.py": "",
            "engine.py": "",
            "sdk/__init__.py": "from pkg import VERSION\nfrom pkg import wire\nimport pkg.engine\n",
        },
    )
    [violation] = check_only(source_modules(roots), "pkg.sdk", ["pkg.wire"], within="pkg")
    assert violation.imported == "pkg.engine"

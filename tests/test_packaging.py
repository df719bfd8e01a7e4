"""The wheel installs exactly the iii_trio import root, with every subpackage listed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # builds the wheel and imports it in a fresh interpreter
def test_wheel_contains_every_package_under_iii_trio(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("iii_trio-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_levels = {name.split("/")[0] for name in names if not name.startswith("iii_trio-")}
    assert top_levels == {"iii_trio"}  # no top-level `runtime` or `sdk`
    for folder in ("actors", "runtime", "runtime/modules", "sdk"):
        source = {p.name for p in (ROOT / folder).glob("*.py")}
        packaged = {Path(n).name for n in names if str(Path(n).parent) == f"iii_trio/{folder}"}
        assert source <= packaged, f"{folder}: missing {source - packaged}"
    assert "iii_trio/py.typed" in names
    # Importable from the wheel alone, outside the source tree.
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    code = "import iii_trio.actors, iii_trio.sdk, iii_trio.runtime.engine as e; print(e.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.startswith(str(target))


def test_no_script_folder_shadows_the_standard_library() -> None:
    """A script run from bench/ or examples/ has its own folder first on sys.path, so a file
    there named like a standard module (bench/http.py once did) breaks every import of it,
    e.g. the official SDK's httpx importing http.client."""
    shadows = [
        path.relative_to(ROOT).as_posix()
        for folder in ("bench", "examples", "scripts")
        for path in (ROOT / folder).glob("*.py")
        if path.stem in sys.stdlib_module_names
    ]
    assert shadows == []

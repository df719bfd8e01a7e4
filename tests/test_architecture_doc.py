"""docs/architecture.md names the files of the tree it draws: every one of them exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A path as the document writes them: runtime/calls/router.py, runtime/modules/state/, ...
PATH = re.compile(r"\b((?:actors|runtime|sdk|tests|docs|bench)/[\w./-]*[\w/])")


def test_every_path_in_the_architecture_document_exists() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = sorted(set(PATH.findall(text)))
    assert len(named) > 30, named  # the tree and the folder list are there
    missing = [path for path in named if "<" not in path and not (ROOT / path).exists()]
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"

"""Every code block of docs/sdk.md runs, as its own program, against a real engine."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import trio

from iii_trio.runtime.engine import Engine
from tests.support.engine import worker_url

pytestmark = pytest.mark.slow  # runs each code block as a process

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_guide_has_code() -> None:
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{n}" for n in range(len(BLOCKS))])
async def test_code_block_runs(engine: Engine, code: str, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(code)
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, str(script)],
            env={**os.environ, "III_URL": worker_url(engine)},
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()

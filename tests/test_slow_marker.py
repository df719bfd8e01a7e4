"""tests/conftest.py keeps ``make check`` honest: a test not marked ``slow`` cannot start
another OS process, and a test marked ``slow`` can."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_an_unmarked_test_cannot_start_a_process() -> None:
    with pytest.raises(RuntimeError, match=r"starts a process: mark it @pytest.mark.slow"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)


@pytest.mark.slow  # starts a Python process, on purpose
def test_a_slow_test_can_start_one() -> None:
    subprocess.run([sys.executable, "-c", "pass"], check=True)

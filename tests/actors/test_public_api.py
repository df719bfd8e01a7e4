"""The toolkit's public API: what ``iii_trio.actors`` exports, and the example in its
docstring, run as written."""

from __future__ import annotations

import textwrap

import pytest

import iii_trio.actors as actors


def test_every_exported_name_exists_and_comes_from_the_toolkit() -> None:
    assert sorted(actors.__all__) == sorted(set(actors.__all__))
    for name in actors.__all__:
        value = getattr(actors, name)
        module = getattr(value, "__module__", "iii_trio.actors.mailbox")  # a constant
        assert module.startswith("iii_trio.actors."), name


def test_what_users_need_is_exported() -> None:
    assert {
        "Actor",
        "ActorSystem",
        "Supervisor",
        "ChildSpec",
        "Strategy",
        "Restart",
        "RestartIntensityExceeded",
        "Mailbox",
        "MailboxClosed",
        "MailboxStatistics",
        "ActorState",
        "ActorSnapshot",
        "ActorTreeNode",
        "current_actor",
        "current_actor_id",
        "current_system",
    } <= set(actors.__all__)


def docstring_example() -> str:
    doc = actors.__doc__
    assert doc is not None
    block = doc.split("::\n\n", 1)[1]
    lines: list[str] = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def test_the_docstring_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(docstring_example(), "<iii_trio.actors example>", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert "hello, world" in printed
    rows = [line.split() for line in printed if line != "hello, world"]
    assert [(row[0].split("#")[0], row[1], row[2]) for row in rows] == [
        ("supervisor:root", "running", "0"),
        ("greeter:greeter", "running", "16"),
    ]

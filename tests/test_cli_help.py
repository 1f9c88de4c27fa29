"""`python -m dlrepro --help` and every command's and subcommand's ``--help`` (#32): one
line per command, the commands a user runs first and the internal ones apart; a usage
line and the options everywhere."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from dlrepro.commands import COMMANDS, overview, run
from tests.conftest import ROOT


def help_text(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        status = run([*argv, "--help"])
        raise SystemExit(status)  # a command that prints its help and returns
    assert done.value.code in (0, None), argv
    return capsys.readouterr().out


def test_the_overview_lists_each_command_once_users_first():
    proc = subprocess.run([sys.executable, "-m", "dlrepro", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "workflow")})
    assert proc.returncode == 0 and proc.stdout.strip() == overview()
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("usage: python -m dlrepro <command>")
    listed = [ln.split()[0] for ln in lines if ln.startswith("  ")]
    assert sorted(listed) == sorted(COMMANDS) and len(listed) == len(set(listed))
    internal_at = next(i for i, ln in enumerate(lines) if ln.startswith("internal commands"))
    for i, ln in enumerate(lines):
        if ln.startswith("  "):
            name = ln.split()[0]
            assert (i > internal_at) == COMMANDS[name].internal, name
            assert len(ln.split(None, 1)) == 2 and len(ln) <= 100, ln  # a one-line summary
    assert listed[:2] == ["plan", "check-config"]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_and_subcommand_has_usage_and_options(name, capsys):
    text = help_text([name], capsys)
    assert text.startswith("usage: "), text[:200]
    assert "options:" in text and "-h, --help" in text
    usage = text.split("\n\n")[0]
    subs = re.search(r"\{([\w,-]+)\}", usage)
    for sub in (subs.group(1).split(",") if subs else []):
        sub_text = help_text([name, sub], capsys)
        assert sub_text.startswith("usage: ") and "options:" in sub_text, (name, sub, sub_text[:300])

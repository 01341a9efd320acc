"""One owner per shared CLI option: a flag that several `optical` commands take is declared in
optical_tui/commands/options.py (or config_options.py), and the commands use its type or factory,
so its short name, bounds and default display cannot drift apart between commands."""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command

from optical_tui.cli import app

ROOT = Path(__file__).resolve().parents[2]
OWNERS = {"options.py", "config_options.py"}
SHARED = ("--json", "--db", "--device", "--lease", "--runs-dir", "--data-dir", "--tag", "--metric",
          "--setting", "--plot", "--config", "--set", "--ratio")
FLAGS = "|".join(map(re.escape, SHARED))
DECLARED = re.compile(r"""Option\(\s*["'](""" + FLAGS + r""")["']""")


def test_shared_options_are_declared_only_by_their_owners() -> None:
    sources = [ROOT / "optical_tui" / "cli.py",
               *sorted((ROOT / "optical_tui" / "commands").glob("*.py"))]
    stray = [f"{p.relative_to(ROOT)}: {m.group(1)}" for p in sources if p.name not in OWNERS
             for m in DECLARED.finditer(p.read_text(encoding="utf-8"))]
    assert stray == [], "declare these through optical_tui/commands/options.py: " + ", ".join(stray)


def test_every_shared_option_is_used_by_more_than_one_command() -> None:
    """The owner holds shared options only: each is taken by two commands or more."""
    root = get_command(app)
    users: dict[str, int] = {}

    def walk(command: object) -> None:
        for param in getattr(command, "params", []):
            for flag in getattr(param, "opts", []):
                users[flag] = users.get(flag, 0) + 1
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(root)
    assert {flag: users.get(flag, 0) for flag in SHARED if users.get(flag, 0) < 2} == {}

"""The UI stays light (no torch) and the engine stays headless (no textual/typer); SQL lives
only in the store package (engine/store/)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _loaded_after(imports: str) -> set[str]:
    code = f"import sys; {imports}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return set(out.stdout.split())


def test_ui_never_loads_torch():
    mods = _loaded_after("import optical_tui.cli, optical_tui.app")
    for heavy in ("torch", "transformers", "ot"):
        assert heavy not in mods, f"optical_tui imports {heavy}"


def test_engine_never_loads_ui_libraries():
    engine_modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts)
                            for p in (ROOT / "engine").rglob("*.py") if p.stem != "__init__")
    assert "engine.store.sqlite" in engine_modules and "engine.running.worker" in engine_modules
    imports = "; ".join(f"import {m}" for m in engine_modules)
    mods = _loaded_after(imports)
    for ui in ("textual", "typer"):
        assert ui not in mods, f"engine imports {ui}"


def test_source_level_boundaries():
    ui_heavy = re.compile(r"^\s*(import|from)\s+(torch|transformers|ot)\b", re.MULTILINE)
    engine_ui = re.compile(r"^\s*(import|from)\s+(textual|typer)\b", re.MULTILINE)
    sql = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET"
                     r"|DELETE\s+FROM|CREATE\s+TABLE)\b", re.IGNORECASE)
    for p in (ROOT / "optical_tui").rglob("*.py"):
        text = p.read_text()
        assert not ui_heavy.search(text), f"{p} imports torch/transformers/ot"
        assert not sql.search(text), f"{p} contains SQL"
        assert "import sqlite3" not in text, f"{p} talks to SQLite directly"
    store = ROOT / "engine" / "store"
    checked = 0
    for p in (ROOT / "engine").rglob("*.py"):
        text = p.read_text()
        assert not engine_ui.search(text), f"{p} imports textual/typer"
        if store not in p.parents:
            checked += 1
            assert not sql.search(text), f"{p} contains SQL (only the engine/store/ package may)"
            assert "import sqlite3" not in text, f"{p} talks to SQLite directly"
            assert not re.search(r"^\s*(import|from)\s+psycopg\b", text,
                                 re.MULTILINE), f"{p} talks to PostgreSQL"
    assert checked > 20  # the glob found the engine's modules
    assert sql.search((store / "sqlite.py").read_text())  # and the pattern does match real SQL

"""The UI stays light (no torch) and the engine stays headless (no textual/typer); SQL lives
only in engine/store.py."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _loaded_after(imports: str) -> set[str]:
    code = f"import sys; {imports}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_ui_never_loads_torch():
    mods = _loaded_after("import optical_tui.cli, optical_tui.app")
    for heavy in ("torch", "transformers", "ot"):
        assert heavy not in mods, f"optical_tui imports {heavy}"


def test_engine_never_loads_ui_libraries():
    engine_modules = sorted(p.stem for p in (ROOT / "engine").glob("*.py") if p.stem != "__init__")
    imports = "; ".join(f"import engine.{m}" for m in engine_modules)
    mods = _loaded_after(imports)
    for ui in ("textual", "typer"):
        assert ui not in mods, f"engine imports {ui}"


def test_source_level_boundaries():
    ui_heavy = re.compile(r"^\s*(import|from)\s+(torch|transformers|ot)\b", re.MULTILINE)
    engine_ui = re.compile(r"^\s*(import|from)\s+(textual|typer)\b", re.MULTILINE)
    sql = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b", re.IGNORECASE)
    for p in (ROOT / "optical_tui").rglob("*.py"):
        text = p.read_text()
        assert not ui_heavy.search(text), f"{p} imports torch/transformers/ot"
        assert not sql.search(text), f"{p} contains SQL"
        assert "import sqlite3" not in text, f"{p} talks to SQLite directly"
    for p in (ROOT / "engine").rglob("*.py"):
        text = p.read_text()
        assert not engine_ui.search(text), f"{p} imports textual/typer"
        if p.name != "store.py":
            assert not sql.search(text), f"{p} contains SQL (only engine/store.py may)"
            assert "import sqlite3" not in text, f"{p} talks to SQLite directly"

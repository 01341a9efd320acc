"""pytest plugin: one real single-node Slurm per test session (munged + slurmctld + slurmd).

Register with `pytest_plugins = ["tests.slurm_fixtures"]`. The recipe, its timings and its pitfalls
are measured in ../shared/SLURM.md; the numbered pitfalls below refer to it. Everything lives in a
private scratch folder with its own munge key, state and free ports, so nothing touches /etc, a
system Slurm, or another session's cluster. Packages (Debian's `slurmctld slurmd slurm-client
munge`) are installed with apt-get when missing, as root; elsewhere the tests fail with what to
install (never a silent skip).

Every daemon runs in the foreground (-D, -F) as a child of this process, with PR_SET_PDEATHSIG so
that a killed test run takes them down too (pitfall 9). Teardown cancels the jobs first (their
slurmstepd outlives the daemons, pitfall 3), stops the daemons (TERM, then KILL: slurmd may ignore
TERM, pitfall 4), then kills orphans whose environment names this cluster's slurm.conf (pitfall 7).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
PROGRAMS = (
    "slurmctld",
    "slurmd",
    "sinfo",
    "squeue",
    "scontrol",
    "scancel",
    "sbatch",
    "srun",
    "munged",
    "mungekey",
)
SBIN = os.pathsep.join(["/usr/local/sbin", "/usr/sbin", "/sbin"])
DAEMONS = ("slurmd", "slurmctld", "munged")  # stop order: clients of munge first

SLURM_CONF = """\
ClusterName=optical-test
SlurmctldHost={host}
SlurmctldPort={port}
SlurmdPort={port1}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={s}/munge/munge.socket.2
StateSaveLocation={s}/state
SlurmdSpoolDir={s}/spool
SlurmctldPidFile={s}/run/slurmctld.pid
SlurmdPidFile={s}/run/slurmd.pid
SlurmctldLogFile={s}/log/slurmctld.log
SlurmdLogFile={s}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# Without these, back-to-back trivial jobs take 3 s each instead of 1 s.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
# submitit's job side ignores SIGTERM: a cancelled job is killed 2 s later, not 30.
KillWait=2
# scontrol shows a finished job (the tool's stand-in for sacct) for this long.
MinJobAge=3600
{node} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _path() -> str:
    return os.pathsep.join([os.environ.get("PATH", ""), SBIN])


def ensure_installed() -> None:
    """apt-get the Slurm and munge packages when a program is missing (root, Debian/Ubuntu)."""
    missing = [p for p in PROGRAMS if shutil.which(p, path=_path()) is None]
    if not missing:
        return
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(
            f"Slurm tests need {', '.join(missing)}: run `sudo {' '.join(install)}` "
            "(or the equivalent for this system)",
            pytrace=False,
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    done = subprocess.run(install, check=False, env=env, capture_output=True, text=True)
    if done.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(
            ["apt-get", "update", "-q"], check=False, env=env, capture_output=True, text=True
        )
        done = subprocess.run(install, check=False, env=env, capture_output=True, text=True)
    still = [p for p in PROGRAMS if shutil.which(p, path=_path()) is None]
    if done.returncode != 0 or still:
        pytest.fail(
            f"could not install Slurm ({' '.join(install)}): {done.stderr.strip()[-500:]}",
            pytrace=False,
        )


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports (pitfall 5: never a fixed port another run may still hold)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def alive(pid: int) -> bool:
    """Exists and is not a zombie (orphans wait a while for PID 1 to reap them, pitfall 8)."""
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


class SlurmCluster:
    """A private one-node cluster in `scratch`; clients need only `env` (SLURM_CONF)."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.conf = scratch / "etc" / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf), PATH=_path())
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.start_s = 0.0
        self.stop_s = 0.0

    def client(self, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(cmd), check=False, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start(self) -> None:
        t0 = time.monotonic()
        s = self.scratch
        for sub in ("etc", "munge", "state", "spool", "log", "run"):
            (s / sub).mkdir(parents=True, exist_ok=True)
        # munged refuses a socket whose folders are not all o+x (pitfall 1); mkdtemp makes 0700.
        s.chmod(0o711)
        (s / "munge").chmod(0o755)
        subprocess.run(
            ["mungekey", "-c", "-k", str(s / "munge" / "munge.key")],
            env=self.env,
            check=True,
            capture_output=True,
        )
        node = self.client("slurmd", "-C").stdout.splitlines()[
            0
        ]  # RealMemory as detected (pitfall 11)
        port, port1 = free_ports(2)
        self.conf.write_text(
            SLURM_CONF.format(
                host=socket.gethostname().split(".")[0], port=port, port1=port1, s=s, node=node
            )
        )
        m = s / "munge"
        self._spawn(
            "munged",
            "munged",
            "-F",
            f"--key-file={m / 'munge.key'}",
            f"--socket={m / 'munge.socket.2'}",
            f"--pid-file={m / 'munged.pid'}",
            f"--seed-file={m / 'munged.seed'}",
        )
        self._wait(lambda: (m / "munge.socket.2").is_socket(), 10, "munged's socket")
        self._spawn("slurmctld", "slurmctld", "-D", "-f", str(self.conf))
        self._spawn("slurmd", "slurmd", "-D", "-f", str(self.conf))
        self._wait(
            lambda: self.client("sinfo", "-h", "-o", "%T", timeout=5).stdout.strip() == "idle",
            30,
            "the node to be idle",
        )
        self.start_s = time.monotonic() - t0

    def _spawn(self, name: str, *cmd: str) -> None:
        log = open(self.scratch / "log" / f"{name}.out", "wb")  # noqa: SIM115 - the child holds it
        with log:
            self.procs[name] = subprocess.Popen(
                list(cmd),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Spawned from the main thread, before any test starts a thread.
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )

    def _wait(self, ready: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # An old daemon on our port would answer for a dead one (pitfall 5): check ours live.
            for name, p in self.procs.items():
                if p.poll() is not None:
                    tail = (self.scratch / "log" / f"{name}.out").read_text(errors="replace")[-800:]
                    raise RuntimeError(f"{name} exited with status {p.returncode}:\n{tail}")
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise RuntimeError(f"timed out after {timeout}s waiting for {what}")

    def cancel_all(self) -> None:
        """scancel every job (running ones with KILL) and wait until squeue is empty."""
        ctld = self.procs.get("slurmctld")
        if ctld is None or ctld.poll() is not None:
            return  # scancel would hang ~5 s on a dead controller
        try:
            self.client(
                "scancel", "--full", "--signal=KILL", "--state=RUNNING", "--user=root", timeout=5
            )
            self.client("scancel", "--user=root", timeout=5)
            deadline = time.monotonic() + 15
            while (
                time.monotonic() < deadline
                and self.client("squeue", "-h", timeout=5).stdout.strip()
            ):
                time.sleep(0.1)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> None:
        t0 = time.monotonic()
        self.cancel_all()
        for name in DAEMONS:
            p = self.procs.get(name)
            if p is not None and p.poll() is None:
                p.terminate()
        for name in DAEMONS:
            p = self.procs.get(name)
            if p is None:
                continue
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:  # slurmd ignores TERM while it retries registration
                p.kill()
                p.wait()
        self.sweep_orphans()
        self.stop_s = time.monotonic() - t0

    def sweep_orphans(self) -> list[int]:
        """KILL processes adopted by PID 1 whose initial environment names this cluster's slurm.conf
        (slurmstepd and job processes); a few rounds, since killing one re-orphans its children."""
        marker = f"SLURM_CONF={self.conf}".encode()
        killed: list[int] = []
        for _ in range(3):
            found = []
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    if marker not in (entry / "environ").read_bytes().split(b"\0"):
                        continue
                    ppid = int((entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == 1 and alive(int(entry.name)):
                    found.append(int(entry.name))
            for pid in found:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            killed += found
            if not found:
                break
            time.sleep(0.2)
        return killed

    def log(self, name: str = "slurmctld") -> str:
        try:
            return (self.scratch / "log" / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A started one-node cluster (partition `debug`); at the end, stopped with all it ran."""
    ensure_installed()
    scratch = Path(
        tempfile.mkdtemp(prefix="optical-slurm-", dir="/tmp" if os.geteuid() == 0 else None)
    )
    cluster = SlurmCluster(scratch)
    try:
        try:
            cluster.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            pytest.fail(f"the test Slurm cluster did not start: {exc}", pytrace=False)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmCluster]:
    """The session's cluster as this test's Slurm (SLURM_CONF, PATH); its jobs cancelled after."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    monkeypatch.setenv("PATH", _path())
    try:
        yield slurm_cluster
    finally:
        slurm_cluster.cancel_all()

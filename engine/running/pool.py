"""One worker per device on this box: `optical worker --device all` (every visible GPU) or a list
(`--device cuda:0,cuda:2`; `cpu,cpu` runs two CPU workers).

The supervisor starts `python -m engine.running.worker --device D …` for each device, each in its
own process group, so a Ctrl-C in the terminal reaches only the supervisor, which forwards exactly
one drain (a second signal to a worker means "kill the run now"). Each worker's output comes back
prefixed with its device. A worker that crashed (non-zero exit) is restarted after a pause that
doubles, at most `max_restarts` times (the count starts over after `STABLE_S` of good running); a
worker that exited 0 (drained, `--once`, `--until-empty`) is not. SIGTERM, SIGINT and SIGHUP drain
every worker; each further signal is forwarded too. The supervisor exits when every worker has:
status 0 if all exited 0, else 1.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any

from engine.devices import check_device_setting, resolve_device
from engine.errors import ConfigError, OpticalError
from engine.running.launch import WorkerOptions, engine_command, pid_file
from engine.store import open_store, resolve_location

MAX_RESTARTS = 3
#: A worker that ran this long before crashing gets its full restart budget back.
STABLE_S = 600.0
FIRST_PAUSE_S = 2.0
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def cuda_device_count() -> int:
    import torch  # only here: discovering GPUs is the one thing the supervisor needs torch for

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def is_pool_setting(setting: str) -> bool:
    """`all` or a comma-separated list: more than one worker."""
    return setting == "all" or "," in setting


def expand_devices(setting: str, count: Callable[[], int] = cuda_device_count) -> list[str]:
    """`all` → every visible CUDA device; `a,b,…` → each device, checked. Raises ConfigError."""
    if setting == "all":
        n = count()
        if n == 0:
            raise ConfigError("--device all: no CUDA device is visible on this box; "
                              "pass --device cpu to run one CPU worker")
        return [f"cuda:{i}" for i in range(n)]
    items = [item.strip() for item in setting.split(",")]
    devices: list[str] = []
    for item in items:
        if item in ("", "auto", "all"):
            raise ConfigError(f"--device {setting!r}: list devices as cpu, cuda or cuda:N, "
                              "comma-separated "
                              f"(not {item!r})")
        check_device_setting(item, "--device")
        device = resolve_device(item)  # a GPU that is not there fails here, once, not in N restarts
        if device != "cpu" and device in devices:
            raise ConfigError(f"--device {setting!r}: {device} is listed twice")
        devices.append(device)
    return devices


@dataclass
class _Slot:
    device: str
    label: str
    proc: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    finished: bool = False


class WorkerPool:
    def __init__(self, db: str, devices: Sequence[str], options: WorkerOptions | None = None, *,
                 max_restarts: int = MAX_RESTARTS, first_pause_s: float = FIRST_PAUSE_S,
                 out: IO[str] | None = None) -> None:
        self.db = db
        labels = [d if devices.count(d) == 1 else f"{d}#{devices[:i].count(d) + 1}"
                  for i, d in enumerate(devices)]
        self.slots = [_Slot(d, label) for d, label in zip(devices, labels, strict=True)]
        # Every worker gets the pool's options but its own device; the pid file and a forced id
        # belong to the supervisor (a detached pool), not to each of its workers.
        self.options = (options or WorkerOptions()).replace(pid_file=None, worker_id=None)
        self.max_restarts = max_restarts
        self.first_pause_s = first_pause_s
        self.out = out or sys.stdout
        self.gave_up = False
        self._signals = 0
        self._lock = threading.RLock()  # a signal handler may log while the main thread is logging

    def say(self, message: str) -> None:
        self._write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [pool] {message}\n")

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self.out.write(text)
                self.out.flush()
            except (OSError, ValueError):
                pass  # a full disk or a closed terminal must not stop the supervisor

    # ------------------------------------------------------------------ processes

    def command(self, device: str) -> tuple[list[str], dict[str, str]]:
        argv = self.options.replace(device=device).argv()
        return engine_command("engine.running.worker", self.db, *argv)

    def _start(self, slot: _Slot) -> None:
        cmd, env = self.command(slot.device)
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, process_group=0)
        except OSError as exc:
            self.say(f"{slot.label}: could not start a worker: {exc}")
            slot.finished, self.gave_up = True, True
            return
        slot.proc, slot.started_at = proc, time.monotonic()
        slot.reader = threading.Thread(target=self._relay, args=(slot.label, proc), daemon=True)
        slot.reader.start()
        self.say(f"{slot.label}: worker started (pid {proc.pid})")

    def _relay(self, label: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self._write(f"[{label}] {raw.decode(errors='replace')}")

    def _reap(self, slot: _Slot, now: float) -> None:
        assert slot.proc is not None
        code = slot.proc.returncode
        if slot.reader is not None:
            slot.reader.join(timeout=5)
        slot.proc, slot.reader = None, None
        if code == 0 or self._signals:
            slot.finished = True
            self.say(f"{slot.label}: worker exited ({_describe(code)})")
            return
        if now - slot.started_at >= STABLE_S:
            slot.restarts = 0
        if slot.restarts >= self.max_restarts:
            slot.finished, self.gave_up = True, True
            self.say(f"{slot.label}: worker {_describe(code)}; not restarting it after "
                     f"{slot.restarts} restart(s)")
            return
        pause = self.first_pause_s * 2 ** slot.restarts
        slot.restarts += 1
        slot.next_start = now + pause
        self.say(f"{slot.label}: worker {_describe(code)}; restarting in {pause:g}s "
                 f"(restart {slot.restarts} of at most {self.max_restarts})")

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        previous = self._install_signal_handlers()
        self.say(f"{len(self.slots)} worker(s): {', '.join(s.label for s in self.slots)}")
        try:
            while not all(s.finished for s in self.slots):
                now = time.monotonic()
                for slot in self.slots:
                    if slot.proc is not None and slot.proc.poll() is not None:
                        self._reap(slot, now)
                    if slot.proc is None and not slot.finished:
                        if self._signals:
                            # draining: a worker waiting for its restart stays down
                            slot.finished = True
                        elif now >= slot.next_start:
                            self._start(slot)
                time.sleep(0.2)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.say("all workers exited")
        return 1 if self.gave_up else 0

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        what = ("draining every worker" if self._signals == 1
                else "telling every worker to stop its run now")
        self.say(f"{signal.Signals(signum).name}: {what}")
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)


def _describe(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return "exited cleanly" if code == 0 else f"exited with status {code}"


def main(argv: list[str] | None = None) -> int:
    """Headless entry point (`python -m engine.running.pool`), used by `optical worker --device all
    --detach`. It takes the worker's options (engine/running/launch.py) and passes them to every
    worker; --device is the list of devices, one worker each."""
    p = argparse.ArgumentParser(prog="python -m engine.running.pool", description=__doc__)
    p.add_argument("--db", default=None, help="database path or URL (default: env OPTICAL_DB)")
    WorkerOptions.add_arguments(p)
    p.add_argument("--max-restarts", type=int, default=MAX_RESTARTS)
    args = p.parse_args(argv)
    options = WorkerOptions.from_args(args)
    db = resolve_location(args.db)
    try:
        with pid_file(options.pid_file):
            devices = expand_devices(options.device)
            open_store(db).close()  # a bad --db fails once here, not in every worker
            return WorkerPool(db, devices, options, max_restarts=args.max_restarts).run()
    except OpticalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

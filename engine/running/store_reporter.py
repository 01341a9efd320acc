"""The training child's link to the store: buffered metrics, heartbeats, cancel and stop.

`run_training` reports through the `Reporter` protocol. `StoreReporter` buffers metric points in
memory and a background thread writes them, together with a heartbeat and the progress, in one
transaction per second (`Store.flush`). The same thread keeps the lease alive while the main
thread sits in a long evaluation, and notices a cancel request (the flag `flush` returns).

Durability rule: every buffered point is written *before* a checkpoint exists. A resumed run
restarts after its latest checkpoint and never re-emits earlier steps, so a point still in the
buffer when the checkpoint lands would be lost for good; `before_checkpoint(step)`, which the
training loop calls right before it saves, flushes synchronously. Points after the checkpoint
that reached the store before a crash are re-sent on resume and ignored (unique per experiment,
key, step), so a series holds every step exactly once.

Transient database errors (locked past the busy timeout, a full disk, a dropped connection) do
not end the run: the heartbeat thread retries with backoff, and the training thread's own writes
(events, the flush before a checkpoint, the outcome) retry the same way (`write`, `renew`). The
one limit is the lease: with no renewal for half of it, the run stops itself (`LeaseLost`) before
another worker may reclaim it, so a run is never trained twice at once.

The reporter also writes the run's outcome (`finish`, `release`, `record_failure`): each first
stops the heartbeat and writes what is still buffered, so the outcome is the run's last word.
Used as a context manager, it starts the heartbeat on entry and stops it on exit.
"""


from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

from engine.errors import LeaseLost, StoreError
from engine.running.launch import DEFAULT_LEASE_S
from engine.statuses import EventKind, Status
from engine.store import RunLease, Store

#: Longest wait between two heartbeat retries after a database error.
MAX_BACKOFF_S = 8.0
#: First wait before retrying a write the training thread is blocked on.
FIRST_RETRY_S = 0.1

T = TypeVar("T")


def _warn(message: str) -> None:
    # The disk that refused the database write may refuse this line too: never let logging end a
    # run.
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class StoreReporter:
    """`with StoreReporter(...) as reporter:` heartbeats for the block; the outcome methods end
    the reporting (no heartbeat or metric after them)."""

    def __init__(self, store: Store, lease: RunLease, stop: threading.Event, *,
                 flush_interval_s: float = 1.0, lease_s: float = DEFAULT_LEASE_S,
                 parent_pid: int | None = None) -> None:
        self.store = store
        self.lease = lease
        self.stop = stop  # set by SIGTERM/SIGINT (worker draining) or by a cancel request
        self.flush_interval_s = flush_interval_s
        # Renewal must succeed well inside the lease: after half of it without one, the run stops
        # itself, so it can never keep training once another worker may have reclaimed it.
        self.renew_deadline_s = lease_s / 2
        self.parent_pid = parent_pid
        self.cancel_requested = False
        self.last_step = 0
        self._buf: list[tuple[str, int, float, float]] = []
        self._step: int | None = None
        self._total: int | None = None
        # One database connection shared by the main thread and the heartbeat thread: serialise.
        self._lock = threading.RLock()
        self._lease_lost: LeaseLost | None = None
        self._last_renewal = time.monotonic()
        self._closed = threading.Event()
        self._flushed_at_close = False
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    @property
    def exp_id(self) -> int:
        return self.lease.experiment_id

    # ------------------------------------------------------------------ Reporter protocol

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        self._check_lease()
        now = time.time()
        with self._lock:
            self._buf.extend((k, int(step), float(v), now) for k, v in values.items())
            self.last_step = max(self.last_step, int(step))

    def event(self, kind: str, message: str) -> None:
        self._check_lease()

        def log() -> None:
            with self._lock:
                self.store.log_run_event(self.lease, kind, message)
        self.write(log)

    def progress(self, step: int, total: int) -> None:
        with self._lock:
            self._step, self._total = int(step), int(total)

    def should_stop(self) -> bool:
        self._check_lease()
        return self.stop.is_set()

    def before_checkpoint(self, step: int) -> None:
        """Make every point reported so far durable before checkpoint `step` is written."""
        self.renew()

    # ------------------------------------------------------------------ flushing

    def start(self) -> None:
        self._thread.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # The outcome methods have flushed already; on any other way out (the lease lost) no
        # write is wanted, only no more heartbeats. The thread ends at its next wake-up.
        self._closed.set()

    def flush(self) -> None:
        """Write the buffer + heartbeat + progress now. Raises LeaseLost if the run was taken away,
        StoreError if the database refused the write (the points stay buffered for the next try)."""
        with self._lock:
            if self._lease_lost is not None:
                raise self._lease_lost
            batch, self._buf = self._buf, []
            try:
                cancel = self.store.flush(self.lease, batch, self._step, self._total)
            except LeaseLost as exc:
                self._lease_lost = exc
                self.stop.set()
                raise
            except BaseException:
                self._buf = batch + self._buf  # keep the points for the next try
                raise
            self._last_renewal = time.monotonic()
        if cancel and not self.cancel_requested:
            self.cancel_requested = True
            self.stop.set()

    def renew(self) -> None:
        """Flush now, retrying transient errors; on return the lease was just renewed. Also the
        lease check before checkpoint files are replaced or pruned (engine/checkpoint.py)."""
        self.write(self.flush)

    def write(self, fn: Callable[[], T]) -> T:
        """Run a fenced store write, retrying transient database errors with backoff until half
        the lease has passed without a renewal; then (or when the run was taken away) LeaseLost."""
        delay = FIRST_RETRY_S
        while True:
            self._check_lease()
            try:
                return fn()
            except LeaseLost:
                raise
            except StoreError as exc:
                left = self._renewal_left(exc)
                _warn(f"database write failed, retrying in {min(delay, left):.1f}s: {exc}")
                time.sleep(min(delay, left))
                delay = min(MAX_BACKOFF_S, delay * 2)

    def _renewal_left(self, exc: StoreError) -> float:
        """Seconds left before the run must give up its lease; past that, stop the run."""
        silent = time.monotonic() - self._last_renewal
        if silent >= self.renew_deadline_s:
            if self._lease_lost is None:
                self._lease_lost = LeaseLost(
                    f"experiment {self.exp_id}: could not renew its lease for {silent:.0f}s "
                    f"({exc}); stopping before another worker can take it over")
            self.stop.set()
            raise self._lease_lost
        return max(0.05, self.renew_deadline_s - silent)

    def close(self) -> None:
        """Stop the heartbeat thread and write what is left (retrying; raises if that fails).
        Once that write succeeded, a second call does nothing."""
        if self._flushed_at_close:
            return
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.renew()
        self._flushed_at_close = True

    # ------------------------------------------------------------------ outcomes

    def set_provenance(self, info: dict[str, Any]) -> None:
        self.write(lambda: self._locked(self.store.set_provenance, self.lease, info))

    def cancelled(self) -> bool:
        """Whether a cancel was requested, by the last flush or on the row itself (after close)."""
        self.close()
        return self.cancel_requested or self.write(
            lambda: self._locked(self.store.get, self.exp_id)).cancel_requested

    def finish(self, status: Status, *, error: str | None = None) -> None:
        """The run's outcome (done, cancelled, failed), after the last points are written."""
        self.close()
        self.write(lambda: self._locked(self.store.finish, self.lease, status, error=error))

    def release(self, reason: str) -> None:
        """Give the run back to the queue (stopped to drain): it resumes from its checkpoint."""
        self.close()
        self.write(lambda: self._locked(self.store.release, self.lease, reason))

    def record_failure(self, message: str, tb: str) -> None:
        """A crash: the points reported before it, the traceback as an event, then failed."""
        try:
            self.close()  # keep the points reported before the crash
        except LeaseLost:
            raise
        except Exception as flush_exc:  # noqa: BLE001 - the failure itself matters more
            _warn(f"could not write the last metrics: {flush_exc}")
        self.write(lambda: self._locked(self.store.log_run_event, self.lease,
                                        EventKind.TRACEBACK, tb))
        self.finish(Status.FAILED, error=f"{message}\n\n{tb}")

    def _locked(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # The store connection is the heartbeat thread's too: one call at a time.
        with self._lock:
            return fn(*args, **kwargs)

    def _check_lease(self) -> None:
        # Raised in the training thread, so the loop unwinds without writing a checkpoint into
        # a run directory that another worker may now own.
        if self._lease_lost is not None:
            raise self._lease_lost

    def _beat(self) -> None:
        backoff = self.flush_interval_s
        while not self._closed.wait(backoff):
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                # The worker is gone (PR_SET_PDEATHSIG covers Linux; this covers the rest):
                # an orphan must not keep the lease alive.
                os._exit(1)
            try:
                self.flush()
                backoff = self.flush_interval_s
            except LeaseLost:
                return
            except StoreError as exc:
                # A transient error (locked past the busy timeout, a full disk, a dropped
                # connection): retry sooner than the lease runs out, backing off meanwhile.
                silent = time.monotonic() - self._last_renewal
                _warn(f"heartbeat: {exc} (no renewal for {silent:.0f}s)")
                try:
                    left = self._renewal_left(exc)
                except LeaseLost:
                    return
                backoff = min(MAX_BACKOFF_S, backoff * 2, max(0.1, left))

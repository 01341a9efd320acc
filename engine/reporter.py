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
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping

from engine.errors import StoreError
from engine.store import LeaseLost, Store


class StoreReporter:
    def __init__(self, store: Store, exp_id: int, worker_id: str, stop: threading.Event, *,
                 flush_interval_s: float = 1.0, parent_pid: int | None = None) -> None:
        self.store = store
        self.exp_id = exp_id
        self.worker_id = worker_id
        self.stop = stop  # set by SIGTERM/SIGINT (worker draining) or by a cancel request
        self.flush_interval_s = flush_interval_s
        self.parent_pid = parent_pid
        self.cancel_requested = False
        self.last_step = 0
        self._buf: list[tuple[str, int, float, float]] = []
        self._step: int | None = None
        self._total: int | None = None
        # One sqlite connection shared by the main thread and the heartbeat thread: serialise.
        self._lock = threading.RLock()
        self._lease_lost: LeaseLost | None = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    # ------------------------------------------------------------------ Reporter protocol

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        self._check_lease()
        now = time.time()
        with self._lock:
            self._buf.extend((k, int(step), float(v), now) for k, v in values.items())
            self.last_step = max(self.last_step, int(step))

    def event(self, kind: str, message: str) -> None:
        self._check_lease()
        with self._lock:
            self.store.log_event(self.exp_id, kind, message)

    def progress(self, step: int, total: int) -> None:
        with self._lock:
            self._step, self._total = int(step), int(total)

    def should_stop(self) -> bool:
        self._check_lease()
        return self.stop.is_set()

    def before_checkpoint(self, step: int) -> None:
        """Make every point reported so far durable before checkpoint `step` is written."""
        self.flush()

    # ------------------------------------------------------------------ flushing

    def start(self) -> None:
        self._thread.start()

    def flush(self) -> None:
        """Write the buffer + heartbeat + progress now. Raises LeaseLost if the run was taken away."""
        with self._lock:
            if self._lease_lost is not None:
                raise self._lease_lost
            batch, self._buf = self._buf, []
            try:
                cancel = self.store.flush(self.exp_id, self.worker_id, batch, self._step, self._total)
            except LeaseLost as exc:
                self._lease_lost = exc
                self.stop.set()
                raise
            except BaseException:
                self._buf = batch + self._buf  # keep the points for the next try
                raise
        if cancel and not self.cancel_requested:
            self.cancel_requested = True
            self.stop.set()

    def close(self) -> None:
        """Stop the heartbeat thread and write what is left (raises if that fails)."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.flush()

    def _check_lease(self) -> None:
        # Raised in the training thread, so the loop unwinds without writing a checkpoint into
        # a run directory that another worker may now own.
        if self._lease_lost is not None:
            raise self._lease_lost

    def _beat(self) -> None:
        while not self._closed.wait(self.flush_interval_s):
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                # The worker is gone (PR_SET_PDEATHSIG covers Linux; this covers the rest):
                # an orphan must not keep the lease alive.
                os._exit(1)
            try:
                self.flush()
            except LeaseLost:
                return
            except StoreError as exc:  # locked for longer than the busy timeout: try again
                print(f"heartbeat: {exc}", file=sys.stderr, flush=True)

"""What the dashboard says out loud: a toast and the terminal bell when a run fails or a sweep
finishes while it is open.

`Alerts.update` compares each poll's experiment rows with the previous ones (the first poll only
sets the baseline: opening the dashboard never replays old failures). The texts are the worker's
notifications (engine/notify.py), so a toast and a phone say the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from engine import notify
from engine.statuses import TERMINAL, Status
from engine.store import Experiment


class Alerts:
    def __init__(self) -> None:
        self._status: dict[int, Status] | None = None

    def update(self, experiments: Sequence[Experiment],
               primary: Mapping[int, tuple[str, float]]) -> list[notify.Notice]:
        before, self._status = self._status, {e.id: e.status for e in experiments}
        if before is None:
            return []
        out = [notify.run_failed(e) for e in experiments
               if e.status == Status.FAILED and before.get(e.id, Status.FAILED) != Status.FAILED]
        sweeps: dict[str, list[Experiment]] = {}
        for e in experiments:
            sweeps.setdefault(e.name, []).append(e)
        for name, runs in sweeps.items():
            was_open = any(e.id in before and before[e.id] not in TERMINAL for e in runs)
            if was_open and all(e.status in TERMINAL for e in runs):
                out.append(notify.sweep_finished(name, runs,
                                                 {i: v for i, (_k, v) in primary.items()}))
        return out

"""Dashboard defects found in the user trial of issue 20 (item 7): each test failed before its fix."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.widgets import DataTable

from engine.store import open_store
from engine.sweep import new_experiments
from tests.dashboard_support import NOW, loaded, make_app, queue_table, synchronous, wait_for


def _width(table: DataTable, key: str) -> int:
    return next(c for k, c in table.columns.items() if k.value == key).get_render_width(table)


@synchronous
async def test_queue_cells_widen_when_a_run_finishes(tmp_path: Path) -> None:
    """A table first painted with `-` kept that width: a finished run showed `too` for its ETA."""
    db = tmp_path / "e.db"
    (spec,) = new_experiments(["1:1"], [0])
    with open_store(db, clock=lambda: NOW - 300) as store:
        (e,) = store.add_experiments([spec])
    app = make_app(db)
    async with app.run_test(size=(140, 30)) as pilot:
        await loaded(pilot)
        table = queue_table(app)
        assert str(table.get_cell(str(e.id), "eta")) == "-"
        with open_store(db, clock=lambda: NOW - 185) as store:
            run = store.claim_next("w", "cpu")
            assert run is not None and run.lease is not None
            store.flush(run.lease, [], step=200, total=200)
        with open_store(db, clock=lambda: NOW) as store:
            store.finish(run.lease, "done")
        await wait_for(pilot, lambda: str(table.get_cell(str(e.id), "status")).endswith("done"))
        await pilot.pause()
        eta, progress = table.get_cell(str(e.id), "eta"), table.get_cell(str(e.id), "progress")
        assert str(eta) == "took 3m05s" and str(progress).endswith("100%")
        padding = 2 * table.cell_padding
        assert _width(table, "eta") - padding >= Text(str(eta)).cell_len
        assert _width(table, "progress") - padding >= Text(str(progress)).cell_len

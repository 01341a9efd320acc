"""CLI command modules; each exposes `register(app)`. Heavy engine imports stay inside commands."""

from optical_tui.commands import (
    batches,
    data,
    db,
    demo,
    eval,
    export,
    export_runs,
    launch,
    queue,
    report,
    run,
    ui,
    worker,
)

# Order is the order of `optical --help`.
COMMAND_MODULES = [queue, worker, launch, run, eval, export, export_runs, report, batches, demo, ui, data, db]

"""CLI command modules; each exposes `register(app)`. Heavy engine imports stay inside commands."""

from optical_tui.commands import (
    batches,
    compare,
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
    tags,
    ui,
    worker,
)

# Order is the order of `optical --help`.
COMMAND_MODULES = [queue, tags, worker, launch, run, eval, export, export_runs, report, compare,
                   batches,
                   demo, ui, data, db]

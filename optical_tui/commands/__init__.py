"""CLI command modules; each exposes `register(app)`. Heavy engine imports stay inside commands."""

from optical_tui.commands import db, queue

COMMAND_MODULES = [queue, db]

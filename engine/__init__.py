"""Computation and storage for optical-tui: store, config, data, training, evaluation, worker.

Never imports textual or typer (a test enforces it), so the engine runs headless.
"""

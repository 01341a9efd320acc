"""What the user touches: the `optical` CLI and the `optical-tui` dashboard.

Never imports torch, transformers or POT (a test enforces it): the dashboard must start fast
over SSH and must not hold GPU memory.
"""

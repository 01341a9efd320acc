"""Turning a device setting (auto, cpu, cuda, cuda:N) into a concrete, existing device.

Its own module so the worker's parent process can resolve devices without importing
transformers; torch itself is imported only when CUDA has to be asked about.
"""

from __future__ import annotations

from engine.errors import ConfigError

#: What a device setting may say, for help texts and errors.
DEVICE_FORMS = "auto, cpu, cuda or cuda:N"


def check_device_setting(setting: str, what: str = "device") -> str:
    """The one device rule (config, CLI options, workers): auto, cpu, cuda or cuda:N."""
    if setting in ("auto", "cpu", "cuda"):
        return setting
    index = setting[5:] if setting.startswith("cuda:") else ""
    if not (index.isascii() and index.isdigit()):
        raise ConfigError(f"{what}: {setting!r} is not {DEVICE_FORMS}")
    return setting


def resolve_device(setting: str) -> str:
    """auto → cuda:0 when a GPU is visible, else cpu; cuda → cuda:0; cuda:N must exist."""
    check_device_setting(setting)
    if setting == "cpu":
        return "cpu"
    import torch  # only here: a cpu run never pays for CUDA discovery

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if setting == "auto":
        return "cuda:0" if n else "cpu"
    index = int(setting.split(":", 1)[1]) if ":" in setting else 0
    if not n:
        raise ConfigError(f"device {setting!r} requested but no CUDA device is visible; use cpu or "
                          "auto")
    if index >= n:
        raise ConfigError(f"device {setting!r}: {n} CUDA device(s) visible; use "
                          f"cuda:0..cuda:{n - 1} or cpu")
    return f"cuda:{index}"

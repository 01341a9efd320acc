"""What a model name in a config can be checked for before any run starts, without the hub:
`embedded:<name>` must be a bundled model, a local path must be a model folder, and anything
else must have the form of a Hugging Face id (`org/name` or `name`). Whether a hub id exists
(and is cached where HF_HUB_OFFLINE is set) is known only on the box that loads it.

No torch, no transformers: this runs at queue time, in the CLI and the dashboard's form.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.errors import ConfigError

EMBEDDED_PREFIX = "embedded:"
#: The bundled models (engine/models/bundled.py builds them; kept here so checking needs no numpy).
EMBEDDED_NAMES = ("multilingual-e5-small", "tiny-random")
# The hub's rule for repo ids: an optional namespace, then a name; letters, digits, -, _ and .,
# no leading or trailing - or ., no `--` or `..`, at most 96 characters.
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HUB_ID = re.compile(rf"^(?:{_PART}/)?{_PART}$")


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name in (".", "..") or "\\" in name


def check_model_name(name: str, key: str = "model.name") -> str | None:
    """Raise ConfigError for a name that cannot load anywhere; return a note for a hub id, which
    only the worker's box can check, and None for a bundled model or an existing local folder."""
    if name.startswith(EMBEDDED_PREFIX):
        bundled = name.removeprefix(EMBEDDED_PREFIX)
        if bundled not in EMBEDDED_NAMES:
            raise ConfigError(
                f"{key} {name!r}: no such bundled model; bundled: "
                + ", ".join(EMBEDDED_PREFIX + n for n in EMBEDDED_NAMES)
            )
        return None
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"{key} {name!r}: the folder has no config.json; a local model is a folder "
                "saved by save_pretrained (or optical export)"
            )
        return None
    if _looks_like_path(name) or folder.exists():
        raise ConfigError(
            f"{key} {name!r}: no model folder there (a local model must exist when it is "
            "queued; a Hugging Face id has the form org/name)"
        )
    if not _HUB_ID.match(name) or "--" in name or ".." in name:
        raise ConfigError(
            f"{key} {name!r}: not a local folder, a bundled model (embedded:…) or a "
            "Hugging Face id (org/name: letters, digits, - _ .)"
        )
    return (
        f"{key} {name!r} is a Hugging Face id: whether it exists is checked only when the run "
        "starts, on the worker's box (with HF_HUB_OFFLINE set there, it must be in its cache)"
    )

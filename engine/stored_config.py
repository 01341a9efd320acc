"""A run's stored config, and its one reader.

An experiment row keeps its config frozen as JSON (`Config.to_dict()` when it was queued:
sections of keys, lists where the config has tuples). Every reader of such a config (the study,
`optical compare`, the dashboard's screens, the run exports) reads it through these functions,
so they cannot disagree about a run's languages, groups or zero-shot languages. A row may
predate a key added since: the key then reads as today's default.

Pure, and free of torch: the dashboard imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.config import Config

#: A config as an experiment row stores it: section -> key -> JSON value.
StoredConfig = Mapping[str, Any]

#: Today's defaults, in the stored shape (what a key a run predates reads as).
DEFAULTS: dict[str, dict[str, Any]] = Config().to_dict()

#: The resource groups a config names (`eval.high`, `eval.low`), in the order they are shown.
GROUPS: tuple[str, ...] = ("high", "low")

#: Keys that decide where and how a run executes, not what it learns: a difference between runs
#: is noted, never split on (unless the key was swept on purpose).
NOT_FACTORS = frozenset({
    "train.ratio", "train.seed", "data.data_dir", "train.device", "train.checkpoint_every",
    "train.log_every", "eval.batch_size", "train.save_model",
})

_DEFAULT = object()


def config_value(config: StoredConfig, key: str, missing: Any = _DEFAULT) -> Any:
    """A run's frozen value of `section.key`; for a key the run predates, today's default (or
    `missing` when given: a caption that says "?" rather than guess)."""
    sec, _, name = key.partition(".")
    section = config.get(sec, {})
    if isinstance(section, Mapping) and name in section:
        return section[name]
    return DEFAULTS.get(sec, {}).get(name) if missing is _DEFAULT else missing


def flat_config(config: StoredConfig) -> dict[str, Any]:
    """`{"train": {"lr": 3e-5}}` -> `{"train.lr": 3e-5}`: the keys the row itself stores."""
    return {
        f"{sec}.{k}": v
        for sec, values in config.items()
        if isinstance(values, Mapping)
        for k, v in values.items()
    }


def languages(config: StoredConfig) -> tuple[str, ...]:
    """The query languages the run is scored on (`eval.langs`), in the config's order."""
    return tuple(config_value(config, "eval.langs") or ())


def groups(config: StoredConfig) -> dict[str, tuple[str, ...]]:
    """Each resource group's languages (`eval.high`, `eval.low`); a group may be empty."""
    return {g: tuple(config_value(config, f"eval.{g}") or ()) for g in GROUPS}


def trained_languages(configs: Iterable[StoredConfig]) -> set[str]:
    """Every language some of these runs train on (`data.train_langs`)."""
    return {lang for c in configs for lang in config_value(c, "data.train_langs") or ()}


def zero_shot(langs: Iterable[str], configs: Iterable[StoredConfig]) -> tuple[str, ...]:
    """The languages of `langs` that none of these runs trains on: starred wherever shown."""
    trained = trained_languages(configs)
    return tuple(lang for lang in langs if lang not in trained)


def selected_model(config: StoredConfig) -> str:
    """`train.select`: which weights are the run's result ("last" for a run that predates it)."""
    return str(config_value(config, "train.select") or "last")

"""What queueing experiments means, for both front ends (`optical queue add` and the dashboard's
form): user input → validated `NewExperiment` specs, all checked before anything is written.

A sweep is a full grid: ratios × the values of every `--sweep section.key=v1,v2` factor × seeds.
Each factor value goes through the same parser and validation as `--set`, and every cell of the
grid is validated as a whole config, so a combination that cannot train is refused at queue
time. Each experiment records its factor values (`NewExperiment.factors`), which is what the
study splits by.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import (
    SEED_MAX,
    coerce_value,
    config_key,
    is_list_key,
    load_config,
    parse_override,
    parse_ratio,
)
from engine.errors import ConfigError
from engine.models.names import check_model_name
from engine.statuses import Status
from engine.store import Experiment, NewExperiment, Store

#: Sane bounds for what a user types; the store's integers are 64-bit, these are far inside.
PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1
MAX_ATTEMPTS_MAX = 1000
#: A typo in a grid (one more value, one more factor) multiplies the queue: refuse huge grids.
MAX_EXPERIMENTS = 10_000
#: Ratio and seed are the design's own factors, given with --ratio and --seed.
OWN_FACTORS = {"train.ratio": "--ratio (-r)", "train.seed": "--seed (-s)"}


@dataclass(frozen=True)
class Factor:
    """One swept config key and its typed values, in the order given."""

    key: str  # "ot.weight"
    values: tuple[Any, ...]


def level_text(value: Any) -> str:
    """A factor value as people write it: 1.0 → "1", [en, de] → "en,de", True → "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ",".join(level_text(v) for v in value)
    return str(value)


def factor_label(key: str, value: Any) -> str:
    return f"{key}={level_text(value)}"


def factors_text(factors: dict[str, Any], short: bool = False) -> str:
    """`ot.weight=1 train.mixing=within` (keys sorted), or "" for a run without factors;
    `short`: `weight=1 mixing=within` where the key names alone are unambiguous (narrow tables)."""
    names = {k: k.rpartition(".")[2] if short else k for k in factors}
    if len(set(names.values())) < len(names):
        names = {k: k for k in factors}
    return " ".join(f"{names[k]}={level_text(factors[k])}" for k in sorted(factors))


def _split_values(raw: str) -> list[str]:
    """Split on commas outside brackets and quotes: `[en,de],[en,de,es]` is two values."""
    out, depth, quote, current = [], 0, "", ""
    for ch in raw:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(current)
            current = ""
            continue
        current += ch
    out.append(current)
    return [v.strip() for v in out]


def parse_sweep(text: str) -> Factor:
    """`section.key=v1,v2,…` → a Factor whose values are typed and checked like `--set` values."""
    if "=" not in text:
        raise ConfigError(f"--sweep {text!r}: expected section.key=value1,value2, e.g. "
                          "ot.weight=0,1")
    path, raw = (part.strip() for part in text.split("=", 1))
    sec, key = config_key(path, "--sweep")
    if f"{sec}.{key}" in OWN_FACTORS:
        raise ConfigError(f"--sweep {path}: give {key}s with {OWN_FACTORS[f'{sec}.{key}']}, not "
                          "--sweep")
    pieces = _split_values(raw)
    if not raw or any(not p for p in pieces):
        raise ConfigError(f"--sweep {path}={raw}: give one or more comma-separated values, e.g. "
                          f"{path}=a,b")
    values: list[Any] = []
    for piece in pieces:
        if is_list_key(sec, key):
            if not (piece.startswith("[") and piece.endswith("]")):
                raise ConfigError(f"--sweep {path}: each value of a list key is a bracketed list, "
                                  f"e.g. {path}=[en,de],[en,de,es,zh]")
            # [en,de] and ["en", "de"] alike: one list, items split the way --set splits them.
            piece = ",".join(item.strip().strip("\"'") for item in piece[1:-1].split(","))
        _, _, value = parse_override(f"{path}={piece}", option="--sweep")
        values.append(coerce_value(sec, key, value))
    _no_repeats(f"--sweep {path} value", [level_text(v) for v in values])  # 1 and 1.0 are one value
    return Factor(f"{sec}.{key}", tuple(values))


def _no_repeats(what: str, items: Sequence[Any]) -> None:
    seen: set[Any] = set()
    for item in items:
        if item in seen:
            raise ConfigError(f"{what} {item} is given twice")
        seen.add(item)


def _plain(value: Any) -> Any:
    """JSON-ready: tuples become lists."""
    return list(value) if isinstance(value, tuple) else value


def new_experiments(ratios: Sequence[str], seeds: Sequence[int] = (), config: Path | None = None,
                    overrides: Sequence[str] = (), name: str | None = None, priority: int = 0,
                    max_attempts: int = 3, code_version: str = "", *,
                    sweeps: Sequence[str] = ()) -> list[NewExperiment]:
    """One spec per ratio × factor values × seed; everything is validated before anything can be
    written (a bad key or value raises ConfigError with one line)."""
    if not ratios:
        raise ConfigError("give at least one ratio, e.g. 1:1")
    normalised = [str(parse_ratio(r)) for r in ratios]
    _no_repeats("ratio", normalised)  # 2:2 is 1:1: the same cell twice would be a duplicate run
    seeds = list(seeds or [0])
    _no_repeats("seed", seeds)
    for seed in seeds:
        if not 0 <= seed <= SEED_MAX:
            raise ConfigError(f"--seed {seed}: must be between 0 and {SEED_MAX} (2^32 - 1)")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ConfigError(f"--priority {priority}: must be between {PRIORITY_MIN} and "
                          f"{PRIORITY_MAX}")
    if not 1 <= max_attempts <= MAX_ATTEMPTS_MAX:
        raise ConfigError(f"--max-attempts {max_attempts}: must be between 1 and "
                          f"{MAX_ATTEMPTS_MAX}")
    base = load_config(config, list(overrides))
    factors = [parse_sweep(text) for text in sweeps]
    _no_repeats("--sweep key", [f.key for f in factors])
    fixed = {".".join(parse_override(o)[:2]) for o in overrides}
    for f in factors:
        if f.key in fixed:
            raise ConfigError(f"--sweep {f.key}: also given with --set; give it in one place")
    sweep = name if name is not None else (config.stem if config else "default")
    if not sweep.strip():
        raise ConfigError("--name must not be empty")
    size = len(normalised) * len(seeds) * math.prod(len(f.values) for f in factors)
    if size > MAX_EXPERIMENTS:
        raise ConfigError(f"this grid has {size:,} experiments; at most {MAX_EXPERIMENTS:,} per "
                          "queue add")
    specs = []
    for ratio in normalised:
        for combo in itertools.product(*(f.values for f in factors)):
            for seed in seeds:
                # Each cell validated as a whole: values that cannot train together fail here.
                sections: dict[str, dict[str, Any]] = {"train": {"ratio": ratio, "seed": seed}}
                for f, v in zip(factors, combo):
                    sec, key = f.key.split(".")
                    sections.setdefault(sec, {})[key] = v
                cfg = base.replace(**sections)
                specs.append(NewExperiment(
                    name=sweep, ratio=ratio, seed=seed, priority=priority, config=cfg.to_dict(),
                    code_version=code_version, max_attempts=max_attempts,
                    factors={f.key: _plain(v) for f, v in zip(factors, combo)}))
    model_notes(specs)  # a model that cannot load anywhere fails now, not when its run starts
    return specs


def model_notes(specs: Sequence[NewExperiment]) -> list[str]:
    """Check every model the specs name (student and OT teacher); raises ConfigError for one that
    cannot load anywhere, returns a note for each hub id (only the worker's box can check it)."""
    named = {(f"model.{field}", model[field]) for s in specs
             if (model := s.config.get("model", {}))
             for field in ("name", "teacher") if model.get(field)}
    return [note for key, name in sorted(named) if (note := check_model_name(str(name), key))]


#: Runs that make a new identical one a duplicate: failed and cancelled ones may be queued again.
_LIVE_OR_DONE = (Status.QUEUED, Status.RUNNING, Status.DONE)


def _same_run_key(name: str, config: dict[str, Any]) -> str:
    # The frozen config holds the ratio, seed and every factor value: same name + same config is
    # the same cell and seed of the same sweep. JSON: stored configs come back with lists for
    # tuples.
    return json.dumps([name, config], sort_keys=True, default=str)


def duplicates(store: Store, specs: Sequence[NewExperiment]) -> list[Experiment]:
    """Queued, running or done experiments these specs would repeat: same sweep name, same frozen
    config (so the same ratio, seed and factor values)."""
    wanted = {_same_run_key(s.name, s.config) for s in specs}
    found = []
    for name in sorted({s.name for s in specs}):
        found += [e for e in store.list_experiments(status=list(_LIVE_OR_DONE), name=name)
                  if _same_run_key(e.name, e.config) in wanted]
    return sorted(found, key=lambda e: e.id)


def refuse_duplicates(store: Store, specs: Sequence[NewExperiment]) -> None:
    """One clear line instead of a silently doubled sweep (`queue add --allow-duplicate` skips
    this check)."""
    same = duplicates(store, specs)
    if not same:
        return
    def cell(e: Experiment) -> str:
        return " ".join(filter(None, (e.ratio, f"seed {e.seed}", factors_text(e.factors))))

    shown = ", ".join(f"#{e.id} ({cell(e)}, {e.status})" for e in same[:4])
    more = f" and {len(same) - 4} more" if len(same) > 4 else ""
    raise ConfigError(
        f"sweep {specs[0].name!r} already has {len(same)} of these {len(specs)} experiment(s) with "
        f"the same config: {shown}{more}; nothing queued. Queue them again with --allow-duplicate, "
        "add only new seeds or ratios, or give another --name")


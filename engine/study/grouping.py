"""A study's counted runs grouped by any keys (`optical report --group-by`, the study screen's
`g`): n, mean ± sd and the 95% interval over the runs of each group.

The runs and their values are the study's own (`Study.runs`, engine/study/core.py: done runs
only, one per cell and seed), so a grouping never counts a run the study would not. A key is a
config key (`ot.weight`, `train.mixing`), or one of `ratio`, `seed`, `name` (the sweep) and
`tags` (the run's tags together, "-" for none: each run is in exactly one group).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.config import Config, ratio_sort_key
from engine.errors import ConfigError, OpticalError
from engine.metric_keys import MACRO, MetricName, Setting, Unit
from engine.store import Experiment
from engine.stored_config import config_value
from engine.study.core import Study
from engine.study.formats import TextTable, stat_cell, unit_label
from engine.study.stats import Stat, describe
from engine.sweep import level_text

#: Keys that are not config keys: what each groups by.
SPECIAL_KEYS = {
    "ratio": "the mono:cross ratio",
    "seed": "the seed",
    "name": "the sweep name",
    "tags": "the run's tags",
}
_CONFIG_KEYS = sorted(f"{sec}.{k}" for sec, values in Config().to_dict().items() for k in values)


@dataclass(frozen=True)
class Group:
    levels: tuple[str, ...]  # one per key, in `Grouping.keys` order
    ids: tuple[int, ...]  # the counted runs in the group
    stats: Mapping[Unit, Stat]  # the study's metric per unit
    rank: Mapping[Unit, Stat]  # Mul rank distance per unit, when recorded


@dataclass(frozen=True)
class Grouping:
    keys: tuple[str, ...]
    units: tuple[Unit, ...]
    groups: tuple[Group, ...]


def group_keys() -> list[str]:
    """Every config key a grouping accepts (section.key), sorted."""
    return list(_CONFIG_KEYS)


def parse_group_keys(text: str) -> tuple[str, ...]:
    """`ot.weight,tags` -> ("ot.weight", "tags"); unknown keys are refused with the valid ones."""
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys:
        raise ConfigError("--group-by: give one or more keys, e.g. --group-by ot.weight,tags")
    for k in keys:
        if k not in SPECIAL_KEYS and k not in _CONFIG_KEYS:
            close = [c for c in _CONFIG_KEYS if c.endswith("." + k) or k in c][:5]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"--group-by {k!r}: not a config key (section.key) nor one of "
                f"{', '.join(SPECIAL_KEYS)}{hint}"
            )
    if len(set(keys)) != len(keys):
        raise ConfigError("--group-by: a key is given twice")
    return keys


def key_value(e: Experiment, key: str) -> str:
    """The level of one run for one key, as text."""
    if key == "tags":
        return " ".join(e.tags) or "-"
    if key == "name":
        return e.name
    if key == "seed":
        return str(e.seed)
    if key == "ratio":
        return e.ratio
    return level_text(config_value(e.config, key))


def _order(text: str, key: str) -> tuple[int, float, str]:
    try:
        if key == "ratio":
            return 0, ratio_sort_key(text), text
        x = float(text)
        return (0, x, text) if math.isfinite(x) else (1, 0.0, text)
    except (ValueError, OpticalError):
        return 1, 0.0, text


def group_study(study: Study, experiments: Sequence[Experiment], keys: Sequence[str]) -> Grouping:
    by_id = {e.id: e for e in experiments}
    members: dict[tuple[str, ...], list[int]] = {}
    for r in study.runs:
        e = by_id[r.experiment_id]
        levels = tuple(r.ratio if k == "ratio" else key_value(e, k) for k in keys)
        members.setdefault(levels, []).append(r.experiment_id)
    runs = {r.experiment_id: r for r in study.runs}
    units = tuple(u for u in study.units if u.kind != "lang") + tuple(
        u for u in study.units if u.kind == "lang"
    )
    groups = []
    for levels in sorted(members, key=lambda lv: tuple(_order(t, k) for t, k in zip(lv, keys))):
        ids = members[levels]
        stats = {
            u: describe([runs[i].values[u] for i in ids if u in runs[i].values]) for u in units
        }
        rank = {
            u: describe(xs)
            for u in units
            if (xs := [runs[i].rank_distance[u] for i in ids if u in runs[i].rank_distance])
        }
        groups.append(Group(levels, tuple(ids), stats, rank))
    return Grouping(tuple(keys), units, tuple(groups))


def _clean(x: float) -> float | None:
    return x if math.isfinite(x) else None


def grouping_dict(g: Grouping) -> dict[str, object]:
    def stat(s: Stat) -> dict[str, object]:
        return {
            "n": s.n,
            "mean": _clean(s.mean),
            "sd": _clean(s.sd),
            "ci_low": _clean(s.ci_low),
            "ci_high": _clean(s.ci_high),
        }

    return {
        "keys": list(g.keys),
        "groups": [
            {
                "levels": dict(zip(g.keys, grp.levels)),
                "experiment_ids": list(grp.ids),
                "values": {str(u): stat(s) for u, s in grp.stats.items()},
                "rank_distance": {str(u): stat(s) for u, s in grp.rank.items()},
            }
            for grp in g.groups
        ],
    }


def grouping_table(g: Grouping, study: Study) -> TextTable:
    """Groups × (resource groups, macro): mean ± sd [95% interval] (languages are in the JSON)."""
    units = tuple(u for u in g.units if u.kind != "lang") or (MACRO,)
    name = f"{Setting(study.setting).label} {MetricName(study.metric).label}"
    headers = (*g.keys, "n", *(f"{unit_label(study, u)}" for u in units))
    rows = tuple(
        (*grp.levels, str(len(grp.ids)), *(stat_cell(grp.stats.get(u)) for u in units))
        for grp in g.groups
    )
    return TextTable(
        f"{name} by {', '.join(g.keys)}: mean ± sd [95% interval] over the runs of each group",
        headers,
        rows,
    )


def grouping_markdown(g: Grouping, study: Study) -> str:
    t = grouping_table(g, study)
    lines = [
        f"**{t.title}**",
        "",
        "| " + " | ".join(t.headers) + " |",
        "|" + "|".join(":---" if i < len(g.keys) else "---:" for i in range(len(t.headers))) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
    return "\n".join(lines) + "\n"

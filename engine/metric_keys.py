"""The metric vocabulary: every metric key is built and parsed here, and nowhere else.

A metric point is (experiment, key, step, value); keys are slash-separated paths (the
sentence-transformers habit of prefixing a metric with where it was measured):

    train/<name>                                 training curves          train/loss_ot
    <split>/<setting>/<lang>/<metric>            one query language       eval/mul/hi/map
    <split>/cr/<x>-><y>/<metric>                 one language pair (Cr)   eval/cr/ar->en/map
    <split>/group/<group>/<setting>/<metric>     a resource group's mean  full/group/low/cr/map
    <split>/macro/<setting>/<metric>             mean over query langs    full/macro/mul/map
    <split>/<setting>/<lang or pair>/skipped     queries with no answer in the target language
    <split>/n_questions, <split>/n_candidates    what was scored

Splits: `eval` (the quick MLQA-R subset, at every evaluation), `full` (the whole benchmark,
after training), `dev` (held-out training questions, for model selection; never MLQA-R).
Settings: Mo (X→X), Cr (X→Y, Y ≠ X) and Mul (X→all languages), as in LAReQA.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Split(StrEnum):
    QUICK = "eval"
    FULL = "full"
    DEV = "dev"


class Setting(StrEnum):
    MO = "mo"
    CR = "cr"
    MUL = "mul"

    @property
    def label(self) -> str:
        return _SETTING_LABELS[self]

    @property
    def long_label(self) -> str:
        return f"{self.label} ({_SETTING_ARROWS[self]})"


_SETTING_LABELS = {Setting.MO: "Mo", Setting.CR: "Cr", Setting.MUL: "Mul"}
_SETTING_ARROWS = {Setting.MO: "X→X", Setting.CR: "X→Y", Setting.MUL: "X→all"}
SETTINGS: tuple[Setting, ...] = tuple(Setting)


class MetricName(StrEnum):
    MAP = "map"
    R1 = "r@1"
    R10 = "r@10"
    MRR10 = "mrr@10"
    NDCG10 = "ndcg@10"
    # Mul only: per query, the highest minus the lowest rank of its relevant sentences across
    # languages (language bias; lower is better). Always 0 with one relevant sentence.
    RANK_DISTANCE = "rank_distance"

    @property
    def label(self) -> str:
        return _METRIC_LABELS[self]


_METRIC_LABELS = {MetricName.MAP: "mAP", MetricName.R1: "R@1", MetricName.R10: "R@10",
                  MetricName.MRR10: "MRR@10", MetricName.NDCG10: "nDCG@10",
                  MetricName.RANK_DISTANCE: "rank distance"}
#: Averaged per query in every setting.
RANKING_METRICS: tuple[MetricName, ...] = (MetricName.MAP, MetricName.R1, MetricName.R10,
                                           MetricName.MRR10, MetricName.NDCG10)
#: Every metric a curve or a table can show.
ALL_METRICS: tuple[MetricName, ...] = tuple(MetricName)


def metric_allowed(setting: str, metric: str) -> bool:
    """Rank distance exists only in the multilingual pool."""
    return metric != MetricName.RANK_DISTANCE or setting == Setting.MUL


def metrics_for(setting: str) -> tuple[MetricName, ...]:
    return tuple(m for m in ALL_METRICS if metric_allowed(setting, m))


class TrainKey(StrEnum):
    LOSS = "train/loss"
    LOSS_TASK = "train/loss_task"
    LOSS_OT = "train/loss_ot"
    LR = "train/lr"
    GRAD_NORM = "train/grad_norm"
    BATCH_CROSS = "train/batch_cross"  # fraction of cross-lingual rows in the step's batches
    EXAMPLES_PER_S = "train/examples_per_s"
    OT_ITERS = "train/ot_iters"
    OT_MARGINAL_ERR = "train/ot_marginal_err"
    # Reported once, at the last step: the step whose weights the run's final numbers describe
    # (`full/…` at the last step, and the saved model). train.select = "last": the last step;
    # "best-dev": the evaluation step with the highest DEV_SELECTION_KEY.
    SELECTED_STEP = "train/selected_step"


LOSS_KEYS: tuple[TrainKey, ...] = (TrainKey.LOSS, TrainKey.LOSS_TASK, TrainKey.LOSS_OT)


# --------------------------------------------------------------------------- units


@dataclass(frozen=True, order=True)
class Unit:
    """What a value is aggregated over: one query language, a resource group, or the macro mean."""

    kind: str  # "lang" | "group" | "macro"
    name: str  # "ar", "high", "all"

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


MACRO = Unit("macro", "all")


def lang_unit(lang: str) -> Unit:
    return Unit("lang", lang)


def group_unit(group: str) -> Unit:
    return Unit("group", group)


# --------------------------------------------------------------------------- building keys


def metric_key(split: str, setting: str, unit: Unit, metric: str) -> str:
    if unit.kind == "group":
        return f"{split}/group/{unit.name}/{setting}/{metric}"
    if unit.kind == "macro":
        return f"{split}/macro/{setting}/{metric}"
    return f"{split}/{setting}/{unit.name}/{metric}"


def pair_key(split: str, x: str, y: str, metric: str) -> str:
    """One Cr language pair, e.g. eval/cr/ar->en/map."""
    return f"{split}/{Setting.CR}/{x}->{y}/{metric}"


def skipped_key(split: str, setting: str, x: str, y: str | None = None) -> str:
    """Queries of x with no answer in the target (y for a Cr pair)."""
    where = f"{x}->{y}" if setting == Setting.CR and y is not None else x
    return f"{split}/{setting}/{where}/skipped"


def size_key(split: str, what: str) -> str:
    """`n_questions` or `n_candidates` of one evaluation."""
    if what not in SIZES:
        raise ValueError(f"unknown size {what!r}")
    return f"{split}/{what}"


SIZES = ("n_questions", "n_candidates")


def split_prefix(split: str) -> str:
    """The prefix every key of a split starts with (for prefix reads)."""
    return f"{split}/"


#: The queue's headline number: Mul mAP, macro over query languages — from the full benchmark
#: when a run has one, else from its latest quick evaluation.
PRIMARY_SETTING, PRIMARY_METRIC = Setting.MUL, MetricName.MAP
PRIMARY_KEYS: tuple[str, ...] = (metric_key(Split.FULL, PRIMARY_SETTING, MACRO, PRIMARY_METRIC),
                                 metric_key(Split.QUICK, PRIMARY_SETTING, MACRO, PRIMARY_METRIC))
#: What train.select = "best-dev" maximises: the primary metric on the held-out dev split.
DEV_SELECTION_KEY: str = metric_key(Split.DEV, PRIMARY_SETTING, MACRO, PRIMARY_METRIC)


# --------------------------------------------------------------------------- parsing keys


@dataclass(frozen=True)
class ParsedKey:
    split: str  # a Split value, or "train"
    setting: str | None = None
    unit: Unit | None = None
    pair: tuple[str, str] | None = None
    metric: str | None = None  # a MetricName, "skipped", a size, or a train curve's name


def parse_key(key: str) -> ParsedKey | None:
    """The parts of a key, or None when it is not in this vocabulary."""
    parts = key.split("/")
    head = parts[0]
    if head == "train" and len(parts) == 2:
        return ParsedKey("train", metric=parts[1])
    if head not in {s.value for s in Split} or len(parts) < 2:
        return None
    if len(parts) == 2 and parts[1] in SIZES:
        return ParsedKey(head, metric=parts[1])
    if len(parts) == 5 and parts[1] == "group":
        return ParsedKey(head, parts[3], group_unit(parts[2]), metric=parts[4])
    if len(parts) == 4 and parts[1] == "macro":
        return ParsedKey(head, parts[2], MACRO, metric=parts[3])
    if len(parts) == 4 and parts[1] in {s.value for s in Setting}:
        if "->" in parts[2]:
            x, y = parts[2].split("->", 1)
            return ParsedKey(head, parts[1], pair=(x, y), metric=parts[3])
        return ParsedKey(head, parts[1], lang_unit(parts[2]), metric=parts[3])
    return None


def split_of(key: str) -> str | None:
    parsed = parse_key(key)
    return parsed.split if parsed else None


# --------------------------------------------------------------------------- the one table


@dataclass(frozen=True)
class TableRow:
    label: str  # "ar*", "high (en, de, …)", "macro"
    unit: Unit
    values: tuple[float | None, ...]  # one per column


@dataclass(frozen=True)
class LangSettingTable:
    """Query language × setting at one evaluation: rows = languages, groups, macro; columns =
    the metric per setting, then the Mul rank distance when Mul was scored."""

    metric: str
    columns: tuple[str, ...]
    rows: tuple[TableRow, ...]


def lang_setting_table(value: Callable[[str], float | None], split: str, langs: Sequence[str],
                       settings: Sequence[str], groups: Mapping[str, Sequence[str]],
                       metric: str = MetricName.MAP,
                       zero_shot: Sequence[str] = ()) -> LangSettingTable:
    """Every front end (`optical eval`, `optical run`, the experiment screen) renders this.

    `value(key)` returns a stored value or None; zero-shot languages are starred."""
    settings = [s for s in SETTINGS if s in settings]  # always Mo, Cr, Mul order
    with_rank = Setting.MUL in settings
    cells = [s for s in settings if metric_allowed(s, metric)]
    columns = tuple(f"{Setting(s).label} {MetricName(metric).label}" for s in cells)
    columns += ("Mul rank dist.",) if with_rank else ()

    def row(label: str, unit: Unit) -> TableRow:
        vals = [value(metric_key(split, s, unit, metric)) for s in cells]
        if with_rank:
            vals.append(value(metric_key(split, Setting.MUL, unit, MetricName.RANK_DISTANCE)))
        return TableRow(label, unit, tuple(vals))

    rows = [row(f"{lang}*" if lang in zero_shot else lang, lang_unit(lang)) for lang in langs]
    for name, members in groups.items():
        present = [m for m in members if m in langs]
        if present:
            rows.append(row(f"{name} ({', '.join(present)})", group_unit(name)))
    rows.append(row("macro", MACRO))
    return LangSettingTable(metric, columns, tuple(rows))

"""`optical eval`: zero-shot MLQA-R evaluation of any encoder, as a paper-style table or JSON."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from engine.config import MLQA_LANGS, EvalConfig, ModelConfig
from engine.devices import DEVICE_FORMS, check_device_setting
from engine.errors import ConfigError
from engine.metric_keys import SETTINGS, Setting, Split, lang_setting_table, parse_key, size_key
from optical_tui.commands.options import DATA_DIR_HELP, data_dir_option, device_option, json_option
from optical_tui.console import console, err_console, lang_setting_rich, print_json

_DEFAULTS = EvalConfig()
_QUERY_PREFIX, _PASSAGE_PREFIX = ModelConfig().query_prefix, ModelConfig().passage_prefix


def _split(value: str, valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    bad = [v for v in items if v not in valid]
    if bad or not items:
        raise ConfigError(f"--{what}: {', '.join(bad) or 'nothing given'} invalid; valid: "
                          f"{','.join(valid)}")
    return items


def eval_command(
    model: Annotated[str,
                     typer.Option("--model", "-m",
                                  help="HF id, local folder (e.g. a model saved by a run or "
                                       "`optical export`: its prefixes and max length are used), "
                                       "or embedded:NAME.")] = (
        "embedded:multilingual-e5-small"
    ),
    langs: Annotated[str,
                     typer.Option("--langs",
                                  help="Comma-separated MLQA languages to evaluate.")] = (
        ",".join(MLQA_LANGS)
    ),
    settings: Annotated[str,
                        typer.Option("--settings",
                                     help="Comma-separated settings: mo, cr, mul.")] = (
        ",".join(SETTINGS)
    ),
    subset: Annotated[int,
                      typer.Option("--subset", min=0, help="Questions per language of the fixed "
                                        "quick subset (engine.evaluate.select_subset); 0 = full "
                                        "MLQA-R.")] = 0,
    subset_seed: Annotated[int,
                           typer.Option("--subset-seed", help="Seed of the quick subset.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Encoding batch size.")] = (
        _DEFAULTS.batch_size
    ),
    max_length: Annotated[int | None, typer.Option("--max-length", min=8, show_default=False, help=(
        "Max tokens per text (default: a saved model's recorded one, else "
        f"{_DEFAULTS.max_length})."))] = None,
    device: Annotated[str, device_option(f"{DEVICE_FORMS}.")] = "auto",
    high: Annotated[str,
                    typer.Option("--high", help="High-resource group.")] = ",".join(_DEFAULTS.high),
    low: Annotated[str,
                   typer.Option("--low", help="Low-resource group.")] = ",".join(_DEFAULTS.low),
    query_prefix: Annotated[str | None, typer.Option("--query-prefix", show_default=False, help=(
        "Prefix of questions (default: a saved model's recorded one, else "
        f"{_QUERY_PREFIX!r})."))] = None,
    passage_prefix: Annotated[str | None,
                              typer.Option("--passage-prefix", show_default=False, help=(
        "Prefix of sentences (default: a saved model's recorded one, else "
        f"{_PASSAGE_PREFIX!r})."))] = None,
    data_dir: Annotated[Path | None, data_dir_option(DATA_DIR_HELP)] = None,
    as_json: Annotated[bool, json_option("Print the flat metrics dict as JSON.")] = False,
) -> None:
    """Zero-shot MLQA-R retrieval (mAP Mo/Cr/Mul, R@1, R@10, MRR@10, nDCG@10, rank distance).

    Every distinct text is encoded once and reused by all settings; queries without an answer in a
    target language are skipped and counted (see --json for the per-pair counts).
    """
    lang_list = _split(langs, MLQA_LANGS, "langs")
    setting_list = _split(settings, tuple(SETTINGS), "settings")
    groups = {"high": _split(high, MLQA_LANGS, "high"), "low": _split(low, MLQA_LANGS, "low")}
    check_device_setting(device, "--device")
    # A folder saved by a run (engine/models/export.py) says how it was evaluated; explicit options
    # win.
    from engine.models.export import read_info

    info = read_info(Path(model)) or {}
    query_prefix = query_prefix if query_prefix is not None else str(info.get("query_prefix",
                                                                              _QUERY_PREFIX))
    passage_prefix = (passage_prefix if passage_prefix is not None
                      else str(info.get("passage_prefix", _PASSAGE_PREFIX)))
    max_length = max_length if max_length is not None else int(info.get("max_length",
                                                                        _DEFAULTS.max_length))
    metrics, dev, elapsed = _encode_and_evaluate(
        model, lang_list, setting_list, groups, data_dir, device, query_prefix, passage_prefix,
        max_length, subset, subset_seed, batch_size)
    if as_json:
        print_json(metrics)
        return
    _print_table(metrics, model, lang_list, setting_list, groups, subset, subset_seed, dev,
                 elapsed)


def _encode_and_evaluate(model: str, lang_list: tuple[str, ...], setting_list: tuple[str, ...],
                         groups: dict[str, tuple[str, ...]], data_dir: Path | None, device: str,
                         query_prefix: str, passage_prefix: str, max_length: int, subset: int,
                         subset_seed: int, batch_size: int) -> tuple[dict[str, float], str, float]:
    """Encode every distinct text once and score all settings: (metrics, device, seconds)."""
    # Heavy imports (torch, transformers) only once the command actually runs.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from engine.data.loaders import load_lareqa
    from engine.devices import resolve_device
    from engine.evaluate import evaluate
    from engine.models.encoders import load_encoder

    sets = load_lareqa("mlqa-r", lang_list, data_dir)
    dev = resolve_device(device)
    encoder = load_encoder(model, device=dev, query_prefix=query_prefix,
                           passage_prefix=passage_prefix,
                           max_length=max_length)
    start = time.perf_counter()
    columns = (TextColumn("encoding"), BarColumn(), MofNCompleteColumn(), TextColumn("texts"),
               TimeRemainingColumn())
    # Progress goes to stderr so `--json` output on stdout stays parseable.
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("encoding", total=None)
        metrics = evaluate(
            encoder, sets, settings=setting_list, groups=groups, subset_questions=subset,
            subset_seed=subset_seed, batch_size=batch_size, max_length=max_length,
            prefix=Split.QUICK,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    return metrics, dev, time.perf_counter() - start


def _print_table(metrics: dict[str, float], model: str, lang_list: tuple[str, ...],
                 setting_list: tuple[str, ...], groups: dict[str, tuple[str, ...]], subset: int,
                 subset_seed: int, dev: str, elapsed: float) -> None:
    """The per-language table of `optical eval`, and the count of skipped cross-language pairs."""
    scope = f"subset {subset}/lang (seed {subset_seed})" if subset else "full"
    title = (f"MLQA-R zero-shot, {model} ({scope}: "
             f"{int(metrics[size_key(Split.QUICK, 'n_questions')])} "
             f"questions, {int(metrics[size_key(Split.QUICK, 'n_candidates')])} sentences; {dev}, "
             f"{elapsed:.1f} s)")
    console.print(lang_setting_rich(lang_setting_table(metrics.get, Split.QUICK, lang_list,
                                                       setting_list, groups),
                                    title))
    skipped = sum(v for k, v in metrics.items()
                  if (p := parse_key(k)) and p.setting == Setting.CR and p.metric == "skipped")
    if Setting.CR in setting_list:
        console.print(f"cr: {int(skipped)} (question, target language) pairs skipped: no answer in "
                      "the target (MLQA is 2–4-way parallel)", markup=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)

"""`optical batches`: the first N batches a config would train on, without loading a model.

Researchers see what a ratio, a mixing mode or `train.cross_pairs` does to their batches, and
anyone can check the sampler: every batch must show 0 false negatives (engine/batch_preview.py).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from engine.config import load_config
from optical_tui.commands.config_options import ConfigFileOption, set_option
from optical_tui.commands.options import json_option, ratio_option
from optical_tui.console import console, print_json, safe, safe_text

_HELP = """Print the first N batches a config would draw, without loading a model.

Per row: question id, question language -> answer language, mono or cross, and its hard
negatives. Per batch: language pairs, false negatives (rows sharing an answer sentence with
another row, in any training language: always 0) and hard negatives. The batches are exactly a
run's: the same records (dev split and holdout removed), seed and sampler.

Example: optical batches -c configs/paper.toml -r 1:1 --set train.cross_pairs=batch -n 3"""

_RATIO_HELP = "Mono:cross batch ratio, e.g. 1:3 (overrides train.ratio)."
_JSON_HELP = "Print a JSON object: config, totals, and a list of batches, each with its rows."
_SNIPPET = 48  # characters of a hard negative shown in the table (--json has them whole)


def _row_table(batch: dict[str, Any]) -> Table:
    table = Table(title=f"batch {batch['batch']} ({batch['kind']}): false negatives "
                        f"{batch['false_negatives']}, "
                        f"hard negatives {batch['hard_negatives']}", title_justify="left")
    for col in ("#", "id", "q -> a", "kind", "hard negatives"):
        table.add_column(col, justify="right" if col == "#" else "left", overflow="fold")
    for i, row in enumerate(batch["rows"]):
        negs = row["hard_negatives"]
        shown = "; ".join(n if len(n) <= _SNIPPET else n[: _SNIPPET - 1] + "…" for n in negs)
        table.add_row(str(i), safe_text(row["id"]), f"{row['q_lang']} -> {row['a_lang']}",
                      row["kind"],
                      safe_text(f"{len(negs)}: {shown}" if negs else "0"))
    return table


def batches(
    config: ConfigFileOption = None,
    ratio: Annotated[str | None, ratio_option(_RATIO_HELP)] = None,
    overrides: Annotated[list[str] | None, set_option("train.hard_negatives=2")] = None,
    n: Annotated[int,
                 typer.Option("-n", "--batches", min=1, max=100_000,
                              help="How many batches to draw.")] = 3,
    as_json: Annotated[bool, json_option(_JSON_HELP)] = False,
) -> None:
    """Print the first N batches a config would draw, without loading a model."""
    sets = list(overrides or [])
    if ratio is not None:
        sets.append(f"train.ratio={ratio}")
    cfg = load_config(config, sets)
    from engine.batch_preview import preview_batches  # reads the training data

    preview = preview_batches(cfg, n)
    if as_json:
        print_json(preview)
        return
    c = preview["config"]
    console.print(safe(f"ratio {c['ratio']} · mixing {c['mixing']} · cross_pairs "
                       f"{c['cross_pairs']} · batch "
                       f"{c['batch_size']} · hard negatives {c['hard_negatives']} · seed "
                       f"{c['seed']} · "
                       f"{c['records']} training records in {', '.join(c['train_langs'])}"))
    for batch in preview["batches"]:
        console.print(_row_table(batch))
        console.print("pairs: " + ", ".join(f"{p} {k}" for p, k in batch["pairs"].items()))
    t = preview["totals"]
    console.print(f"{t['batches']} batches, {t['rows']} rows ({t['cross_rows']} cross-lingual): "
                  f"{t['false_negatives']} false negatives, {t['hard_negatives']} hard negatives")


def register(app: typer.Typer) -> None:
    app.command("batches", help=_HELP)(batches)

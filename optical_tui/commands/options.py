"""Options and arguments that several `optical` commands share, each declared once: its flag, its
short name, its bounds and, where the commands mean the same thing, its help.

A type (`JsonOption`) is the whole option; a factory (`json_option(help)`) is the option with the
help of the command that uses it, where each says what it prints or keeps. The options of the
commands that build an experiment config (--config, --set) are in config_options.py.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

DB_HELP = ("Experiments database: a file path or postgresql:// URL (env OPTICAL_DB; default "
           "./experiments.db).")


def db_option(help: str, envvar: str | None = None) -> Any:
    """`--db`; no default is shown: the help says where the database is when it is not given."""
    return typer.Option("--db", help=help, envvar=envvar, show_default=False)


def json_option(help: str) -> Any:
    """`--json`: what the command prints instead of its table or lines."""
    return typer.Option("--json", help=help)


def device_option(help: str, *short: str, hidden: bool = False) -> Any:
    """`--device` (checked by engine.devices.check_device_setting in the command)."""
    return typer.Option("--device", *short, help=help, hidden=hidden)


def lease_option(help: str) -> Any:
    """`--lease` in seconds; its default is engine.running.launch.DEFAULT_LEASE_S. The minimum
    leaves room for a few heartbeats per lease."""
    return typer.Option("--lease", help=help, min=2.0)


def runs_dir_option(help: str) -> Any:
    """`--runs-dir`; no default is shown: it depends on --db (engine.run_dirs.runs_root)."""
    return typer.Option("--runs-dir", help=help, show_default=False)


DATA_DIR_HELP = "Data folder (default: env OPTICAL_DATA, else ./data)."


def data_dir_option(help: str, flag: str = "--data-dir") -> Any:
    """A benchmark data folder; no default is shown: it depends on env OPTICAL_DATA."""
    return typer.Option(flag, help=help, show_default=False)


def ratio_option(help: str) -> Any:
    """`--ratio/-r`: a mono:cross batch ratio (engine.config.parse_ratio)."""
    return typer.Option("--ratio", "-r", help=help)


def sweep_name_option(help: str) -> Any:
    """`--name/-n`: the name a sweep is queued under."""
    return typer.Option("--name", "-n", help=help)


def sweep_option(help: str) -> Any:
    """`--sweep/-n`: the runs of a sweep, by its name."""
    return typer.Option("--sweep", "-n", help=help, show_default=False)


def tag_option(help: str) -> Any:
    """`--tag/-t` (engine.tags.parse_tags: repeatable, or a,b)."""
    return typer.Option("--tag", "-t", help=help)


def metric_option(help: str) -> Any:
    """`--metric/-m`: a per-query metric (engine.metric_keys.MetricName)."""
    return typer.Option("--metric", "-m", help=help)


def setting_option(help: str) -> Any:
    """`--setting/-s`: mo, cr or mul (engine.metric_keys.Setting)."""
    return typer.Option("--setting", "-s", help=help)


def plot_option(help: str) -> Any:
    """`--plot FILE`: where a study plot goes (engine.study.plot.save_plot)."""
    return typer.Option("--plot", help=help)


DbOption = Annotated[str | None, db_option(DB_HELP, envvar="OPTICAL_DB")]
JsonOption = Annotated[bool, json_option("Print JSON.")]
MachineJsonOption = Annotated[bool, json_option("Print machine-readable JSON.")]
ExperimentIdArgument = Annotated[str, typer.Argument(metavar="ID", help="Experiment id.")]
ExperimentIdsArgument = Annotated[list[str],
                                  typer.Argument(metavar="ID...", help="Experiment ids.")]
SweepIdsArgument = Annotated[list[str] | None,
                             typer.Argument(metavar="ID",
                                            help="Experiment ids (default: the newest sweep).",
                                            show_default=False)]

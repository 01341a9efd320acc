"""`optical queue …`: add, list, show, cancel, retry and remove experiments."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.metric_keys import LOSS_KEYS, MACRO, SETTINGS, MetricName, Split, metric_key
from engine.running.provenance import code_version
from engine.statuses import Status
from engine.store import Experiment
from engine.sweep import factors_text, model_notes, new_experiments, refuse_duplicates
from engine.tags import has_tags, parse_tags
from optical_tui.commands.config_options import ConfigFileOption, set_option
from optical_tui.commands.context import parse_ids, store_for
from optical_tui.commands.options import (
    ExperimentIdArgument,
    ExperimentIdsArgument,
    JsonOption,
    json_option,
    ratio_option,
    sweep_name_option,
    tag_option,
)
from optical_tui.console import console, err_console, print_json, safe, safe_text
from optical_tui.experiment_data import config_lines
from optical_tui.status_style import status_text

queue_app = typer.Typer(help="Add, inspect and manage queued experiments.", no_args_is_help=True)


def experiment_dict(e: Experiment) -> dict:
    d = asdict(e)
    d["progress"] = round(e.progress, 4)
    return d


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


_RATIO_HELP = "Mono:cross batch ratio, e.g. 1:3. Repeat for a sweep."
_SEED_HELP = "Seed (0 to 2^32-1); repeat for several. Default 0."
_NAME_HELP = "Sweep name shared by these experiments (default: the config file's stem)."
_MAX_ATTEMPTS_HELP = "Times a lost run is retried before it fails."
_TAG_HELP = ("Tag every queued experiment (repeatable, or a,b). Change later with: optical tag ID "
             "+x -y")


@queue_app.command("add")
def add(
    ctx: typer.Context,
    ratio: Annotated[list[str], ratio_option(_RATIO_HELP)],
    seed: Annotated[list[int] | None, typer.Option("--seed", "-s", help=_SEED_HELP)] = None,
    config: ConfigFileOption = None,
    overrides: Annotated[list[str] | None, set_option("train.lr=3e-5")] = None,
    sweeps: Annotated[list[str] | None, typer.Option("--sweep", help=(
        "A factor: one key and its values, e.g. --sweep ot.weight=0,1 (a list key: --sweep "
        "'data.train_langs=\\[en,de],\\[en,de,es,zh]'). Repeatable: the full grid ratios × "
        "every factor's values × seeds is queued, and the study splits by each factor."
    ))] = None,
    name: Annotated[str | None, sweep_name_option(_NAME_HELP)] = None,
    priority: Annotated[int, typer.Option("--priority", "-p", help="Higher runs first.")] = 0,
    max_attempts: Annotated[int,
                            typer.Option("--max-attempts", help=_MAX_ATTEMPTS_HELP, min=1)] = 3,
    tags: Annotated[list[str] | None, tag_option(_TAG_HELP)] = None,
    allow_duplicate: Annotated[bool, typer.Option("--allow-duplicate", help=(
        "Queue even experiments the sweep already has queued, running or done with the same "
        "config (by default that is refused: a sweep queued twice trains every run twice, and "
        "the study counts only the newest)."
    ))] = False,
    as_json: Annotated[bool, json_option("Print the queued experiments as JSON.")] = False,
) -> None:
    """Queue one experiment per ratio × factor values × seed. Everything is validated (by the same
    code as --set) before anything is written; repeating experiments the sweep already has is
    refused unless --allow-duplicate."""
    specs = new_experiments(ratio, seed or [0], config, overrides or [], name, priority,
                            max_attempts,
                            code_version(), sweeps=sweeps or [])
    if tags:
        labels = parse_tags(tags)
        specs = [replace(s, tags=labels) for s in specs]
    sweep = specs[0].name
    with store_for(ctx) as store:
        if not allow_duplicate:
            refuse_duplicates(store, specs)
        added = store.add_experiments(specs)
    for note in model_notes(specs):  # stderr: --json output stays one document
        err_console.print(safe_text(f"note: {note}"))
    if as_json:
        print_json([experiment_dict(e) for e in added])
        return
    for e in added:
        factors = factors_text(e.factors)
        console.print(safe_text(f"queued #{e.id} ratio {e.ratio} seed {e.seed}"
                                + (f" {factors}" if factors else "")
                                + f" (priority {e.priority})"))
    console.print(Text.assemble(f"{len(added)} experiment(s) in sweep ",
                                safe_text(repr(sweep), "bold"),
                                ". Run them with: optical worker"))


_SEARCH_HELP = ("Only experiments whose name, factors, tags or note contain this text (any "
                "case).")


@queue_app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[Status | None, typer.Option("--status", help="Only this status.")] = None,
    name: Annotated[str | None, sweep_name_option("Only this sweep name.")] = None,
    tags: Annotated[list[str] | None,
                    tag_option("Only experiments with this tag (repeatable: all of them).")] = None,
    search: Annotated[str | None, typer.Option("--search", help=_SEARCH_HELP)] = None,
    as_json: JsonOption = False,
) -> None:
    """List experiments (oldest first)."""
    tagged = parse_tags(tags or [])
    needle = (search or "").lower()
    with store_for(ctx) as store:
        exps = [e for e in store.list_experiments(status=status, name=name)
                if has_tags(e.tags, tagged)
                and needle in " ".join((e.name, factors_text(e.factors), *e.tags, e.note)).lower()]
    if as_json:
        print_json([experiment_dict(e) for e in exps])
        return
    if not exps:
        console.print(safe_text("no experiments" + (f" with status {status}" if status else "") +
                                (f" tagged {' '.join(tagged)}" if tagged else "") +
                                (f" matching {search!r}" if search else "") +
                                ". Add some with: optical queue add --ratio 1:1"))
        return
    with_factors = any(e.factors for e in exps)
    with_tags = any(e.tags for e in exps)
    cells = [
        [str(e.id), safe(e.name), e.ratio,
         *([safe(factors_text(e.factors, short=True)) or "-"] if with_factors else []),
         *([safe(" ".join(e.tags)) or "-"] if with_tags else []),
         str(e.seed), e.status, f"{e.step}/{e.total_steps}" if e.total_steps else "-",
         f"{e.attempts}/{e.max_attempts}", str(e.priority), safe(e.device or "-"),
         time.strftime("%m-%d %H:%M", time.localtime(e.created_at))]
        for e in exps
    ]
    headers = ("id", "name", "ratio", *(("factors",) if with_factors else ()),
               *(("tags",) if with_tags else ()), "seed", "status", "progress",
               "tries", "prio", "device", "created")
    table = Table(box=None, header_style="bold", pad_edge=False)
    widths = [max([len(col)] + [len(r[i]) + (2 if col == "status" else 0) for r in cells])
              for i, col in enumerate(headers)]
    # Every column but the name and the factors keeps its full width; on a terminal, those two
    # share what is left of it (the full factors are in `queue show` and --json). Without a
    # terminal nothing is cut.
    flexible = [i for i, col in enumerate(headers) if col in ("name", "factors", "tags")]
    room = console.width - sum(w for i, w in enumerate(widths)
                               if i not in flexible) - 2 * (len(headers) - 1)
    # Piped (`| grep`, a file): every name whole, however wide the line; only a terminal truncates.
    piped = not console.is_terminal
    wanted = {} if piped else {i: min(widths[i], 40) for i in flexible}
    if wanted and sum(wanted.values()) > room:
        share = max(4, room // len(flexible))
        small = {i: w for i, w in wanted.items() if w <= share}
        rest = [i for i in flexible if i not in small]
        spare = max(4 * len(rest), room - sum(small.values()))
        wanted = {**small, **{i: max(4, spare // len(rest)) for i in rest}}
    for i, col in enumerate(headers):
        table.add_column(col, no_wrap=True, overflow="ellipsis", width=wanted.get(i),
                         min_width=None if i in wanted else widths[i],
                         justify="right" if col in ("id", "seed", "tries", "prio") else "left")
    status_at = headers.index("status")
    for e, r in zip(exps, cells):
        # Text cells: a stored name is never read as Rich markup.
        table.add_row(*(Text(c) for c in r[:status_at]), status_text(e.status),
                      *(Text(c) for c in r[status_at + 1:]))
    # A console as wide as the table: print(width=…) is capped at the console's own width (80 in
    # a pipe), which would squeeze columns out.
    out = (Console(file=console.file, width=sum(widths) + 2 * len(headers), highlight=False)
           if piped else console)
    out.print(table)


@queue_app.command("show")
def show(
    ctx: typer.Context,
    exp_id: ExperimentIdArgument,
    as_json: Annotated[bool, json_option("Print JSON (with events).")] = False,
) -> None:
    """Show one experiment: state, frozen config, provenance, events and latest metrics."""
    (i,) = parse_ids([exp_id])
    with store_for(ctx) as store:
        e = store.get(i)
        events = store.events(i)
        latest: dict[str, tuple[int, float]] = {}
        for m in store.metrics(i):
            if m.key not in latest or m.step >= latest[m.key][0]:
                latest[m.key] = (m.step, m.value)
    if as_json:
        d = experiment_dict(e)
        d["events"] = [asdict(ev) for ev in events]
        d["latest_metrics"] = {k: {"step": s, "value": v} for k, (s, v) in latest.items()}
        print_json(d)
        return
    # Stored strings (name, error, events, worker) go out as Text through `safe`: never markup,
    # never raw control characters.
    console.print(Text.assemble(f"#{e.id} ", safe_text(e.name, "bold"),
                                f"  ratio {e.ratio}  seed {e.seed}  ",
                                status_text(e.status)))
    if e.factors:
        console.print(safe_text(f"  factors {factors_text(e.factors)}"))
    if e.tags:
        console.print(safe_text(f"  tags {' '.join(e.tags)}"))
    if e.note:
        console.print(safe_text("  note: " + e.note, "italic", lines=True))
    console.print(safe_text(f"  priority {e.priority}  attempts {e.attempts}/{e.max_attempts}  "
                            f"step {e.step}/"
                            f"{e.total_steps}  device {e.device or '-'}  worker "
                            f"{e.worker_id or '-'}"))
    console.print(f"  created {_fmt_time(e.created_at)}  started {_fmt_time(e.started_at)}  "
                  f"finished {_fmt_time(e.finished_at)}  heartbeat {_fmt_time(e.heartbeat_at)}",
                  markup=False)
    console.print(Text.assemble(safe_text(f"  code {e.code_version or '-'}"),
                                ("  cancel requested", "yellow") if e.cancel_requested else ""))
    if e.error:
        console.print(safe_text("  error:\n" + e.error, "red", lines=True))
    _print_config_and_provenance(e)
    headline = {*LOSS_KEYS, *(metric_key(split, s, MACRO, MetricName.MAP)
                              for split in (Split.QUICK, Split.FULL) for s in SETTINGS)}
    shown = {k: v for k, v in latest.items() if k in headline}
    if shown:
        console.print("  latest metrics:")
        for k in sorted(shown):
            s, v = shown[k]
            console.print(safe_text(f"    {k} = {v:.4f} (step {s})"))
    console.print("  events:")
    for ev in events[-15:]:
        console.print(safe_text(f"    {_fmt_time(ev.time)} {ev.kind}: {ev.message}"))


def _print_config_and_provenance(e: Experiment) -> None:
    """What `show` promises: the config the run trains with (frozen at queue time) and where its
    last attempt ran (commit, host, packages, run folder), the same text as the dashboard's tab."""
    console.print("  frozen config:")
    for line in config_lines(e.config):
        if line:
            console.print(safe_text(f"    {line}"))
    if not e.provenance:
        console.print("  provenance: - (recorded when the run starts)")
        return
    console.print("  provenance:")
    for k, v in sorted(e.provenance.items()):
        console.print(safe_text(f"    {k} = {v}"))


def _print_changed(exps: list[Experiment], as_json: bool,
                   line: Callable[[Experiment], str]) -> None:
    """What a command that changes experiments prints: them as JSON, else a line each."""
    if as_json:
        print_json([experiment_dict(e) for e in exps])
        return
    for e in exps:
        console.print(line(e))


def _cancel_line(e: Experiment) -> str:
    what = (Status.CANCELLED.value if e.status == Status.CANCELLED
            else "cancel requested (stops within seconds)")
    return f"#{e.id}: {what}"


_CANCEL_JSON_HELP = "Print the experiments after the request as JSON."


@queue_app.command("cancel")
def cancel(
    ctx: typer.Context,
    ids: ExperimentIdsArgument,
    as_json: Annotated[bool, json_option(_CANCEL_JSON_HELP)] = False,
) -> None:
    """Cancel experiments: queued ones at once, running ones within seconds."""
    with store_for(ctx) as store:
        touched = store.request_cancel(parse_ids(ids))
    _print_changed(touched, as_json, _cancel_line)


_RETRY_IDS_HELP = "Failed or cancelled experiment ids."


@queue_app.command("retry")
def retry(
    ctx: typer.Context,
    ids: Annotated[list[str], typer.Argument(metavar="ID...", help=_RETRY_IDS_HELP)],
    as_json: Annotated[bool, json_option("Print the new copies as JSON.")] = False,
) -> None:
    """Queue a fresh copy of failed or cancelled experiments (terminal states stay final)."""
    with store_for(ctx) as store:
        copies = store.retry(parse_ids(ids))
    _print_changed(copies, as_json, lambda e: f"#{e.retry_of} retried as #{e.id} (queued)")


_RM_HELP = ("Delete experiments with their metrics, events and run folders (running ones must "
            "be cancelled first).")


@queue_app.command("rm", help=_RM_HELP)
def rm(
    ctx: typer.Context,
    ids: ExperimentIdsArgument,
    as_json: Annotated[bool, json_option("Print the removed ids as JSON.")] = False,
) -> None:
    from engine.run_dirs import remove_run_dirs, runs_root

    with store_for(ctx) as store:
        exps = store.list_experiments(ids=parse_ids(ids))  # their run folders go too
        n = store.remove(parse_ids(ids))
        remove_run_dirs(exps, runs_root(store.location))
    if as_json:
        print_json({"removed": n, "ids": [e.id for e in exps]})
        return
    console.print(f"removed {n} experiment(s)")


def register(app: typer.Typer) -> None:
    app.add_typer(queue_app, name="queue")

"""An MLflow tracking store: one MLflow experiment per sweep, one MLflow run per experiment.

    DIR/mlflow.db           `mlflow ui --backend-store-uri sqlite:///DIR/mlflow.db`

SQLite is MLflow 3's own default backend (its folder store is in maintenance mode and refuses to
open without an opt-out). Params: the flattened frozen config, ratio and seed. Metrics: every
point with its step and time, under its `tracker_key`. Tags: the run's id, sweep, status and
commit (`mlflow.source.git.commit`). Exporting a run again replaces its MLflow run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.statuses import Status
from engine.trackers import RunRecord, need, tracker_key

_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_PARAM_BATCH = 100
_RUN_STATUS = {Status.DONE: "FINISHED", Status.FAILED: "FAILED", Status.CANCELLED: "KILLED"}


def tracking_uri(out: Path) -> str:
    return f"sqlite:///{Path(out).resolve() / 'mlflow.db'}"


def write_mlflow(runs: Sequence[RunRecord], out: Path) -> list[str]:
    """The MLflow run ids written, in the order of `runs`."""
    need("mlflow", "mlflow")
    need("sqlalchemy", "mlflow")
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its schema set-up chatters on stderr
    logging.getLogger("alembic").setLevel(logging.WARNING)
    Path(out).mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=tracking_uri(out))
    return [_write_run(client, run) for run in runs]


def _experiment_id(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return str(found.experiment_id if found else client.create_experiment(name))


def _write_run(client: Any, run: RunRecord) -> str:
    from mlflow.entities import Metric, Param

    e = run.experiment
    experiment_id = _experiment_id(client, e.name)
    for old in client.search_runs([experiment_id], filter_string=f"tags.`optical.id` = '{e.id}'"):
        client.delete_run(old.info.run_id)
    tags = {**run.tags(), "mlflow.source.git.commit": e.code_version or "unknown"}
    created = client.create_run(experiment_id,
                                start_time=int((e.started_at or e.created_at) * 1000),
                                tags=tags, run_name=run.label)
    run_id = created.info.run_id
    params = [Param(k, str(v)) for k, v in run.params().items()]
    for i in range(0, len(params), _PARAM_BATCH):
        client.log_batch(run_id, params=params[i:i + _PARAM_BATCH])
    metrics = [Metric(tracker_key(m.key), m.value, int(m.time * 1000), m.step) for m in run.points]
    for i in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[i:i + _BATCH])
    status = _RUN_STATUS.get(e.status)
    if status is not None:
        client.set_terminated(run_id, status, end_time=int((e.finished_at or e.created_at) * 1000))
    return str(run_id)

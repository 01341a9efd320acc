"""`optical export-runs` (engine/trackers/): every metric point, the config and the final metrics of
chosen runs, read back with each ecosystem's own reader: TensorBoard's EventAccumulator and HParams
protos, the MLflow client, and W&B's record protobufs from the offline run's transaction log."""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.config import load_config, with_run
from engine.metric_keys import MACRO, MetricName, Setting, Split, lang_unit, metric_key, pair_key
from engine.statuses import Status
from engine.store import NewExperiment, open_store
from engine.trackers import tracker_key
from optical_tui.cli import app

REPO = Path(__file__).resolve().parents[3]
KEYS = [metric_key(Split.QUICK, Setting.MUL, MACRO, MetricName.MAP),
        metric_key(Split.QUICK, Setting.MUL, lang_unit("hi"), MetricName.MAP),
        metric_key(Split.QUICK, Setting.CR, MACRO, MetricName.R10),
        pair_key(Split.QUICK, "ar", "en", MetricName.MAP)]
LOSS = "train/loss"


def make_db(tmp_path: Path) -> tuple[Path, dict[int, dict[tuple[str, int], tuple[float, float]]]]:
    """Two runs of sweep `s` (done, failed) and one of sweep `other`; (key, step) → (value,
    time)."""
    db = tmp_path / "e.db"
    cfg = load_config(REPO / "configs" / "smoke.toml")
    stored: dict[int, dict[tuple[str, int], tuple[float, float]]] = {}
    with open_store(db) as store:
        specs = [NewExperiment(name, ratio, seed, with_run(cfg, ratio, seed).to_dict(),
                               code_version="c0ffee")
                 for name, ratio, seed in (("s", "1:3", 0), ("s", "1:0", 1), ("other", "1:1", 0))]
        for n, exp in enumerate(store.add_experiments(specs)):
            lease = store.claim_next("w", "cpu").lease
            points = [(LOSS, step, 2.0 / (step + 1) + n, 1.7e9 + step) for step in range(1, 7)]
            points += [(k, step, 0.1 * step + 0.01 * i + n / 7, 1.7e9 + step + 0.5)
                       for step in (0, 3, 6) for i, k in enumerate(KEYS)]
            store.flush(lease, points, step=6, total=6)
            store.finish(lease, Status.FAILED if n == 1 else Status.DONE,
                         error="Boom" if n == 1 else None)
            # As every tracker spells the keys (engine/trackers/__init__.py).
            stored[exp.id] = {(tracker_key(k), s): (v, t) for k, s, v, t in points}
    return db, stored


def export(db: Path, *args: str) -> dict:
    res = CliRunner().invoke(app, ["--db", str(db), "export-runs", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def final(points: dict[tuple[str, int], tuple[float, float]]) -> dict[str, float]:
    return {tracker_key(k): points[(tracker_key(k), 6)][0] for k in KEYS}


def test_tensorboard_holds_every_point_and_the_hparams(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    db, stored = make_db(tmp_path)
    out = tmp_path / "tb"
    for _ in range(2):  # a second export replaces the first: no point twice
        written = export(db, "--sweep", "s", "--tensorboard", str(out))
    assert written["experiments"] == [1, 2] and written["points"] == 2 * (6 + 3 * len(KEYS))
    assert sorted(str(p.relative_to(out)) for p in out.iterdir()) == ["s"]
    assert sorted(p.name for p in (out / "s").iterdir()) == ["1-1to3-s0", "2-1to0-s1"]
    for exp_id, folder in ((1, out / "s" / "1-1to3-s0"), (2, out / "s" / "2-1to0-s1")):
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1
        acc = EventAccumulator(str(folder), size_guidance={SCALARS: 0})
        acc.Reload()
        assert sorted(acc.Tags()["scalars"]) == sorted([*map(tracker_key, KEYS), LOSS])
        got = {(tag, e.step): (e.value, e.wall_time) for tag in acc.Tags()["scalars"]
               for e in acc.Scalars(tag)}
        assert got.keys() == stored[exp_id].keys()
        for key, (value, when) in stored[exp_id].items():
            assert got[key][0] == pytest.approx(value, rel=1e-6), key
            assert got[key][1] == pytest.approx(when), key
        content = acc.PluginTagToContent("hparams")
        data = {tag: plugin_data_pb2.HParamsPluginData.FromString(raw)
                for tag, raw in content.items()}
        experiment = next(d.experiment for d in data.values() if d.HasField("experiment"))
        assert sorted(m.name.tag for m in experiment.metric_infos) == sorted(final(stored[exp_id]))
        session = next(d.session_start_info for d in data.values()
                       if d.HasField("session_start_info"))
        assert session.hparams["ratio"].string_value == ("1:3" if exp_id == 1 else "1:0")
        assert session.hparams["train.seed"].number_value == exp_id - 1
        assert session.hparams["model.name"].string_value == "embedded:tiny-random"


def test_mlflow_store_holds_params_every_point_with_steps_and_tags(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    db, stored = make_db(tmp_path)
    out = tmp_path / "ml"
    export(db, "1", "2", "--mlflow", str(out))
    written = export(db, "1", "2", "--mlflow", str(out))  # again: replaces, never duplicates
    client = MlflowClient(tracking_uri=written["mlflow"]["tracking_uri"])
    experiment = client.get_experiment_by_name("s")
    runs = {r.data.tags["optical.id"]: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["1", "2"]
    assert [runs[str(i)].info.run_id for i in (1, 2)] == written["mlflow"]["run_ids"]
    for exp_id, run in ((1, runs["1"]), (2, runs["2"])):
        assert run.info.run_name == ("1-1to3-s0" if exp_id == 1 else "2-1to0-s1")
        assert run.info.status == ("FINISHED" if exp_id == 1 else "FAILED")
        assert (run.data.tags["mlflow.source.git.commit"] == "c0ffee"
                and run.data.tags["optical.sweep"] == "s")
        assert (run.data.params["train.ratio"] == run.data.params["ratio"]
                and run.data.params["ot.weight"] == "1.0")
        got = {}
        for key in {k for k, _ in stored[exp_id]}:
            for m in client.get_metric_history(run.info.run_id, key):
                got[(key, m.step)] = (m.value, m.timestamp)
        assert got.keys() == stored[exp_id].keys()
        for key, (value, when) in stored[exp_id].items():
            assert got[key] == (pytest.approx(value), int(when * 1000)), key
    assert tracker_key(pair_key(Split.QUICK, "ar", "en",
                                MetricName.R10)) == "eval/cr/ar-to-en/r_at_10"


def wandb_records(path: Path) -> Iterator[object]:
    """W&B's offline transaction log: a LevelDB-style log (32 KiB blocks, records of header crc32 +
    length + type, split across blocks as FULL/FIRST/MIDDLE/LAST) after a 7-byte W&B header, each
    record a `wandb_internal_pb2.Record`. Every checksum is verified."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0)
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (crc, n, kind) == (0, 0, 0):
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + n]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc
        pos += 7 + n
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            yield wandb_internal_pb2.Record.FromString(buf)


def test_wandb_offline_runs_hold_every_point_config_and_summary(tmp_path: Path) -> None:
    db, stored = make_db(tmp_path)
    out = tmp_path / "wb"
    written = export(db, "--sweep", "s", "--sweep", "other", "--wandb", str(out), "--wandb-project",
                     "proj")
    assert len(written["wandb"]) == 3
    for exp_id, folder in zip((1, 2, 3), map(Path, written["wandb"]), strict=True):
        (log,) = folder.glob("run-*.wandb")  # what `wandb sync` uploads
        assert folder.name.startswith("offline-run-") and folder.parent == out / "wandb"
        got: dict[tuple[str, int], float] = {}
        summary: dict[str, float] = {}
        for record in wandb_records(log):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                r = record.run
                assert (r.project, r.run_group, r.display_name) == ("proj",
                                                                    "other" if exp_id == 3 else "s",
                                                                 ["1-1to3-s0", "2-1to0-s1",
                                                                  "3-1to1-s0"][exp_id - 1])
                assert str(Status.FAILED if exp_id == 2 else Status.DONE) in r.tags
                config = {item.key: json.loads(item.value_json) for item in r.config.update}
                assert config["ratio"] == ["1:3", "1:0", "1:1"][exp_id - 1]
                assert (config["train"]["steps"] == 6
                        and config["model"]["name"] == "embedded:tiny-random")
            elif kind == "history":
                row = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                       for item in record.history.item}
                step = row["_step"]
                got.update({(k, step): v for k, v in row.items() if not k.startswith("_")})
            elif kind == "summary":
                for item in record.summary.update:
                    key = item.key or "/".join(item.nested_key)
                    if not key.startswith("_"):
                        summary[key] = json.loads(item.value_json)
        assert got.keys() == stored[exp_id].keys()
        for key, (value, _when) in stored[exp_id].items():
            assert math.isclose(got[key], value, rel_tol=1e-12), key
        assert {k: summary[k]
                for k in final(stored[exp_id])} == pytest.approx(final(stored[exp_id]))


def test_bad_requests_are_one_error_line(tmp_path: Path) -> None:
    db, _ = make_db(tmp_path)
    for args, expected in ((["1"], "choose where to write"),
                           (["99", "--tensorboard", str(tmp_path / "x")],
                            "no experiment with id 99"),
                           (["--sweep", "nope", "--tensorboard", str(tmp_path / "x")],
                            "no sweep named 'nope'"),
                           (["1", "--sweep", "s", "--tensorboard", str(tmp_path / "x")],
                            "not both")):
        res = CliRunner().invoke(app, ["--db", str(db), "export-runs", *args])
        assert (res.exit_code == 1 and res.stderr.startswith("error:")
                and expected in res.stderr), res.stderr
    assert not (tmp_path / "x").exists()

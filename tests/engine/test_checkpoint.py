"""Checkpoints you can trust: a corrupt, truncated or empty latest checkpoint falls back to an older
one (or to step 0) with an event naming the file; writes are fenced by a lease check and confined
to the attempt's own folder; leftovers of interrupted writes and checkpoints of finished, cancelled,
failed and removed runs are deleted; a run folder of another database is never touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from engine.checkpoint import Checkpoints, list_checkpoints
from engine.config import load_config
from engine.errors import ConfigError, LeaseLost
from engine.run_dirs import claim_run_dir, run_dir, runs_root, sweep_finished
from engine.statuses import Status
from engine.store import open_store
from engine.train import ListReporter, run_training
from tests.worker_support import SMOKE, queue


def state(marker: float) -> dict:
    return {"model": {"w": torch.full((2,), marker)}, "optimizer": {}, "config": {}}


def warnings_of(fn):
    said: list[str] = []
    return fn(said.append), said


def test_a_bad_latest_checkpoint_falls_back_to_the_previous_one_and_names_the_file(
    tmp_path: Path
) -> None:
    run = tmp_path / "7"
    one = Checkpoints.for_attempt(run, 1)
    for step in (10, 20):
        one.save(step, state(step))
    # the previous one is kept for this
    assert [s for s, _ in list_checkpoints(one.own)] == [10, 20]
    two = Checkpoints.for_attempt(run, 2)
    latest = one.own / "step_000020.pt"
    good = latest.read_bytes()
    for bad in (good[: len(good) // 2], b"", b"not a checkpoint" * 10):  # truncated, empty, garbage
        latest.write_bytes(bad)
        (loaded, path), said = warnings_of(two.load_latest)
        assert path == one.own / "step_000010.pt" and int(loaded["step"]) == 10
        assert len(said) == 1 and str(latest) in said[0] and "unusable" in said[0], said
    latest.write_bytes(good)
    assert two.load_latest(print)[1] == latest


def test_with_no_usable_checkpoint_the_run_starts_over_and_says_so(tmp_path: Path) -> None:
    run = tmp_path / "7"
    one = Checkpoints.for_attempt(run, 1)
    one.save(10, state(1))
    (one.own / "step_000010.pt").write_bytes(b"")
    result, said = warnings_of(Checkpoints.for_attempt(run, 2).load_latest)
    assert result is None
    assert str(one.own / "step_000010.pt") in said[0] and "restarts from step 0" in said[-1]
    # nothing to say
    assert warnings_of(Checkpoints.for_attempt(tmp_path / "8", 1).load_latest) == (None, [])


def test_an_attempt_reads_earlier_attempts_newest_first_and_writes_only_its_own(
    tmp_path: Path
) -> None:
    run = tmp_path / "7"
    Checkpoints.for_attempt(run, 1).save(30, state(1))
    Checkpoints.for_attempt(run, 2).save(20, state(2))  # resumed from an older checkpoint, say
    three = Checkpoints.for_attempt(run, 3)
    assert [p.parent.parent.name for p in three.candidates()] == ["attempt-2", "attempt-1"]
    assert Checkpoints.for_attempt(run, 2).candidates()[0].parent.parent.name == "attempt-2"
    assert all(p.parent.parent.name != "attempt-3"
               for p in Checkpoints.for_attempt(run, 2).candidates())
    three.save(25, state(3))
    # earlier attempts' files stay until this one has a fallback
    assert len(list(run.rglob("*.pt"))) == 3
    three.save(30, state(3))
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*.pt")) == [
        "attempt-3/checkpoints/step_000025.pt", "attempt-3/checkpoints/step_000030.pt"]
    three.save(35, state(3))
    assert [s for s, _ in list_checkpoints(three.own)] == [30, 35]


def test_a_write_whose_lease_is_gone_leaves_no_file(tmp_path: Path) -> None:
    run = tmp_path / "7"
    Checkpoints.for_attempt(run, 1).save(10, state(1))
    before = sorted(p.relative_to(run) for p in run.rglob("*") if p.is_file())

    def lost() -> None:
        raise LeaseLost("experiment 7 is no longer held by worker w (attempt 1)")

    fenced = Checkpoints.for_attempt(run, 1, guard=lost)
    with pytest.raises(LeaseLost):
        fenced.save(20, state(1))
    # no tmp, no replace
    assert sorted(p.relative_to(run) for p in run.rglob("*") if p.is_file()) == before


def test_leftovers_of_interrupted_writes_are_removed_when_an_attempt_starts(tmp_path: Path) -> None:
    run = tmp_path / "7"
    one = Checkpoints.for_attempt(run, 1)
    one.save(10, state(1))
    leftovers = [one.own / ".step_000015.pt.tmp-4242",
                 run / "attempt-2" / "checkpoints" / ".step_000020.pt.tmp-77"]
    for p in leftovers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * 1000)
    unrelated = one.own / "notes.txt"
    unrelated.write_text("mine")
    assert sorted(Checkpoints.for_attempt(run, 2).remove_temp_files()) == sorted(leftovers)
    assert not any(p.exists() for p in leftovers)
    assert unrelated.exists() and (one.own / "step_000010.pt").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")
def test_training_falls_back_past_a_truncated_checkpoint_and_still_matches_an_uninterrupted_run(
        tmp_path: Path) -> None:
    """Also: a disk that refuses checkpoints does not stop training."""
    cfg = load_config(SMOKE, ["train.steps=8", "train.checkpoint_every=2", "eval.every=4"])
    full = ListReporter()
    assert run_training(cfg, tmp_path / "full", full) == "done"
    run = tmp_path / "7"
    first = ListReporter(stop_at=5)
    assert run_training(cfg, run / "attempt-1", first, Checkpoints.for_attempt(run, 1)) == "stopped"
    latest = run / "attempt-1" / "checkpoints" / "step_000005.pt"
    latest.write_bytes(latest.read_bytes()[:300])  # a copy cut short on a shared filesystem
    # And this attempt's disk refuses every checkpoint (a file where its folder should be): it
    # warns and trains on.
    (run / "attempt-2").mkdir()
    (run / "attempt-2" / "checkpoints").write_text("in the way")
    second = ListReporter()
    assert run_training(cfg, run / "attempt-2", second, Checkpoints.for_attempt(run, 2)) == "done"
    assert any(kind == "warning" and str(latest) in msg for kind, msg in second.events)
    assert ("info", "resumed from step 4") in second.events
    refused = [m for k, m in second.events if k == "warning" and "not written" in m]
    assert [m.split()[3] for m in refused] == ["6",
                                               "8"] and not any(k == "checkpoint"
                                                                for k, _ in second.events)
    # Steps 5.. are computed again from step 4's state: the same numbers as the uninterrupted run.
    ref = {(s, k): v for s, k, v in full.rows if k.startswith("train/loss")}
    got = {(s, k): v for s, k, v in first.rows + second.rows if k.startswith("train/loss")}
    assert got == pytest.approx(ref, rel=1e-5)


# ---------------------------------------------------------------------- cleanup and ownership


def test_finished_runs_lose_their_checkpoints_and_other_databases_runs_are_left_alone(
    tmp_path: Path
) -> None:
    from optical_tui.cli import app

    db = tmp_path / "e.db"
    root = runs_root(str(db))  # the database's default runs folder, where `queue rm` looks
    ids = queue(db, seeds=(0, 1, 2, 3, 4, 5))
    store = open_store(db)
    exps = {e.id: e for e in store.list_experiments(ids=ids)}
    for e in exps.values():
        Checkpoints.for_attempt(claim_run_dir(root, e), 1).save(10, state(e.id))
    done, failed, running, cancelled, queued, foreign = ids  # claimed in id order
    for exp_id, status in ((done, Status.DONE), (failed, Status.FAILED), (running, None)):
        claimed = store.claim_next("w")
        assert claimed is not None and claimed.id == exp_id
        if status is not None:
            store.finish(claimed.lease, status)
    store.request_cancel([cancelled])  # cancelled while queued: no process was there to clean up
    # `foreign`'s folder belongs to an experiment with the same id in another database sharing the
    # root.
    store.request_cancel([foreign])
    (root / str(foreign) / "run.json").write_text(json.dumps({"experiment_id": foreign,
                                                              "created_at": 1.0, "name": "x"}))

    assert sorted(sweep_finished(store, root)) == sorted([done, failed, cancelled])
    with_checkpoints = sorted(int(p.parts[-4]) for p in root.rglob("*.pt"))
    assert with_checkpoints == sorted([running, queued, foreign])
    assert (root / str(done) / "run.json").exists()  # the folder stays, with its logs

    # A run folder already owned by another experiment: the worker refuses to mix them.
    with pytest.raises(ConfigError, match="another database uses the same runs dir"):
        claim_run_dir(root, store.get(foreign))

    # `queue rm` deletes the folders of what it removed, never another database's.
    result = CliRunner().invoke(app,
                                ["--db", str(db), "queue", "rm", str(queued), str(foreign),
                                 str(done)])
    assert result.exit_code == 0, result.output
    assert not run_dir(root, queued).exists() and not run_dir(root, done).exists()
    assert any(run_dir(root, foreign).rglob("*.pt"))


@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")
def test_a_run_whose_checkpoints_are_out_of_reach_restarts_from_step_0_and_says_so(
    tmp_path: Path
) -> None:
    """Box a trained to step 3 and died; box b does not see box a's runs dir: the run restarts from
    step 0 with an event saying why, and finishes (it never fails for that)."""
    import signal

    from engine.running.run_process import run

    db = str(tmp_path / "e.db")
    (exp_id,) = queue(db, ["train.steps=4", "eval.every=0", "ot.weight=0",
                           "train.checkpoint_every=2"])
    store = open_store(db)
    lost = store.claim_next("box-a:1:cpu", "cpu")
    assert lost is not None and lost.lease is not None
    store.flush(lost.lease, [], step=3, total=4)
    store.release(lost.lease, "box a died", count_attempt=True)
    again = store.claim_next("box-b:1:cpu", "cpu")
    assert again is not None and again.lease is not None and again.attempts == 2
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert run(db, exp_id, "box-b:1:cpu", 2, "cpu", None, runs=tmp_path / "box-b-runs",
                   lease_s=60) == 0
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    e = store.get(exp_id)
    assert e.status == "done", e.error
    (warning,) = [ev.message for ev in store.events(exp_id) if ev.kind == "warning"]
    assert ("no checkpoint found under" in warning and "reached step 3" in warning
            and "from step 0" in warning)
    assert e.provenance["run_dir"] == str(tmp_path / "box-b-runs" / str(exp_id))
    assert not list((tmp_path / "box-b-runs").rglob("*.pt"))  # done: its checkpoints are gone

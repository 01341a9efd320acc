"""The store's shared decisions (engine/store/policy.py), without a database: hand-countable
cases of the lost-run rule, cancel, release, finish and the messages both backends write."""

from __future__ import annotations

import pytest

from engine.errors import ExperimentNotFound, InvalidTransition, LeaseLost, StoreError
from engine.statuses import EventKind, Status
from engine.store import policy
from engine.store.policy import NOW
from engine.store.records import NewExperiment, RunLease


def test_lost_run_with_attempts_left_is_requeued() -> None:
    t = policy.lost_run("w1", attempts=1, max_attempts=3, cancel_requested=False, silent=90.4)
    assert t.status == Status.QUEUED and t.event == EventKind.REQUEUED
    assert t.changes == {"status": "queued", "worker_id": None}
    assert t.message == "lost worker w1 (no heartbeat for 90s); requeued"


def test_lost_run_out_of_attempts_fails_with_the_message_as_error() -> None:
    t = policy.lost_run("w1", attempts=3, max_attempts=3, cancel_requested=False, silent=61)
    msg = "lost: no heartbeat for 61s after 3 attempt(s)"
    assert t.status == Status.FAILED and t.event == EventKind.FAILED and t.message == msg
    assert t.changes == {"status": "failed", "finished_at": NOW, "error": msg, "worker_id": None}


def test_lost_run_that_was_being_cancelled_is_cancelled_whatever_its_attempts() -> None:
    for attempts in (1, 3):
        t = policy.lost_run("w2", attempts, 3, cancel_requested=True, silent=500)
        assert t.status == Status.CANCELLED and t.event == EventKind.CANCELLED
        assert t.changes == {"status": "cancelled", "finished_at": NOW, "worker_id": None}
        assert t.message == "cancelled: its worker w2 was lost before the cancel took effect"


def test_cancel_queued_ends_now_and_running_is_only_flagged() -> None:
    queued = policy.cancel(Status.QUEUED)
    assert queued.changes == {"status": "cancelled", "finished_at": NOW}
    assert (queued.event, queued.message) == (EventKind.CANCELLED, "cancelled while queued")
    running = policy.cancel(Status.RUNNING)
    assert running.changes == {"cancel_requested": True} and running.status is None
    assert (running.event, running.message) == (EventKind.CANCEL_REQUESTED, "cancel requested")


def test_release_by_a_drain_hands_the_attempt_back() -> None:
    t = policy.release("drained", attempts=2, max_attempts=3, count_attempt=False)
    assert t.changes == {"status": "queued", "worker_id": None, "attempts": 1}
    assert (t.event, t.message) == (EventKind.REQUEUED, "drained")
    # Never below zero, and a drain requeues even when every attempt is used.
    assert policy.release("x", 0, 3, False).changes["attempts"] == 0
    assert policy.release("x", 3, 3, False).status == Status.QUEUED


def test_release_by_a_crash_keeps_the_attempt_and_fails_when_none_are_left() -> None:
    t = policy.release("crashed", attempts=2, max_attempts=3, count_attempt=True)
    assert t.changes == {"status": "queued", "worker_id": None, "attempts": 2}
    assert t.message == ("crashed; requeued to resume from its last checkpoint "
                         "(2/3 attempts used)")
    last = policy.release("crashed", attempts=3, max_attempts=3, count_attempt=True)
    msg = "crashed; not requeued: no attempts left (3/3 used)"
    assert (last.status, last.event, last.message) == (Status.FAILED, EventKind.FAILED, msg)
    assert last.changes == {"status": "failed", "finished_at": NOW, "error": msg,
                            "worker_id": None}


def test_finish_says_the_last_line_of_the_error_or_the_status() -> None:
    t = policy.finish(Status.FAILED, "Traceback\n  ...\nValueError: bad\n")
    assert (t.event, t.message) == (EventKind.FAILED, "ValueError: bad")
    assert t.changes == {"status": "failed", "finished_at": NOW, "heartbeat_at": NOW,
                         "error": "Traceback\n  ...\nValueError: bad\n"}
    assert policy.finish(Status.DONE, None).message == "done"
    assert policy.finish(Status.CANCELLED, "  ").message == "cancelled"
    with pytest.raises(InvalidTransition, match="not a terminal status"):
        policy.finish(Status.RUNNING, None)


def test_user_command_checks_name_the_first_offender() -> None:
    rows = {4: {"status": "queued"}, 5: {"status": "done"}, 6: {"status": "running"}}
    with pytest.raises(InvalidTransition,
                       match="^experiment 5 is already done; nothing to cancel$"):
        policy.check_cancellable(rows)
    with pytest.raises(InvalidTransition,
                       match="^experiment 4 is queued; only failed or cancelled"):
        policy.check_retryable(rows)
    with pytest.raises(InvalidTransition, match="^experiment 6 is running; cancel it first$"):
        policy.check_removable(rows)
    policy.check_cancellable({1: {"status": "running"}})
    policy.check_retryable({1: {"status": "failed"}, 2: {"status": "cancelled"}})
    policy.check_removable({1: {"status": "done"}})
    assert str(policy.already_retried(3, 9)) == ("experiment 3 was already retried as #9; "
                                                 "retry #9 instead (or clone #3)")


def test_messages() -> None:
    spec = NewExperiment(name="a", ratio="1:1", seed=7, config={})
    assert policy.queued_message(spec) == "queued 'a' ratio 1:1 seed 7"
    assert policy.copy_message(3, retry=True) == "retry of #3"
    assert policy.copy_message(3, retry=False) == "clone of #3"
    assert policy.tags_message(("a", "b"), ("b", "c")).startswith("tags ")
    assert policy.note_message("hi") == "note: hi" and policy.note_message("") == "note cleared"
    assert policy.claimed_message("w", "") == "claimed by w on ?"
    assert policy.claimed_message("w", "cuda:0") == "claimed by w on cuda:0"
    assert policy.worker_started_message("w", "box", "cpu") == "worker w started on box (cpu)"
    assert policy.worker_stopped_message("w") == "worker w stopped"
    assert policy.worker_gone_message("w", 180.6) == "worker w gone: no heartbeat for 181s"
    assert isinstance(policy.not_found(8), ExperimentNotFound)
    assert str(policy.not_found(8)) == "no experiment with id 8"
    lost = policy.lease_lost(RunLease(4, "w", 2))
    assert isinstance(lost, LeaseLost)
    assert str(lost) == "experiment 4 is no longer held by worker w (attempt 2)"


def test_a_newer_schema_is_refused() -> None:
    policy.refuse_newer_schema("x.db", 5, 5)
    policy.refuse_newer_schema("x.db", 0, 5)
    with pytest.raises(StoreError, match="^x.db: schema version 6 is newer than this optical-tui "
                                         r"understands \(5\); upgrade optical-tui$"):
        policy.refuse_newer_schema("x.db", 6, 5)

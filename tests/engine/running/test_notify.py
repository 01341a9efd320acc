"""Notifications (engine/notify.py) reach a real HTTP receiver on 127.0.0.1 through apprise's
`json://` service, from a real worker whose run fails; one that cannot be sent is logged, never
fatal; a bad target is one error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine import notify
from engine.statuses import Status
from engine.store import Experiment, open_store
from tests.worker_support import REPO, Workers, queue, wait_for, workers_fixture

OPTICAL = Path(sys.executable).parent / "optical"


class Receiver:
    """A JSON/HTTP endpoint on 127.0.0.1 that keeps every body it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def titles(self) -> list[str]:
        return [r["title"] for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Workers]:
    yield from workers_fixture(tmp_path)


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket closes


@pytest.mark.usefixtures("data_dir")
@pytest.mark.timeout(300)
def test_a_real_worker_tells_a_local_receiver_a_run_failed_its_worker_was_lost_and_all_ended(
        tmp_path: Path, pool: Workers, receiver: Receiver) -> None:
    db = tmp_path / "e.db"
    # A malformed training file fails the run (a missing data folder would be handed back for
    # another box instead, without failing: engine/running/run_process.py `lacks_data`).
    empty = tmp_path / "bad-data"
    empty.mkdir()
    (empty / "train.jsonl").write_text("{not json\n", encoding="utf-8")
    (exp_id,) = queue(db, [f"data.train_file={empty / 'train.jsonl'}"])
    with open_store(db) as store:  # a worker that claimed it and died: no heartbeat ever again
        assert store.claim_next("ghost:1:cpu", "cpu") is not None
    # A second target that nobody answers: logged, never fatal, and the first still gets everything.
    w = pool.start(db, "--until-empty", "--lease", "2", "--notify", receiver.url,
                   "--notify", f"json://127.0.0.1:{closed_port()}/")
    assert w.wait(timeout=240) == 0, pool.log()
    assert receiver.titles() == [f"optical: a worker was lost (run #{exp_id})",
                                 f"optical: run #{exp_id} failed",
                                 "optical: sweep t finished",
                                 "optical: queue empty"], receiver.received
    lost, failed, sweep, empty_queue = receiver.received
    assert "had no heartbeat for 2s" in lost["message"] and "requeued" in lost["message"]
    # The failure's own last line, not the traceback's.
    assert failed["type"] == "failure" and "DataMissing" in failed["message"], failed
    assert str(empty) in failed["message"] and "Traceback" not in failed["message"]
    assert sweep["message"].startswith("t: 1 failed.") and "no Mul macro mAP" in sweep["message"]
    assert "ran 1 experiment(s)" in empty_queue["message"]
    log = pool.log()
    assert log.count("could not be sent") == 4 and "Connection error" in log, log
    with open_store(db) as store:
        assert store.get(exp_id).status == Status.FAILED


def exp(i: int, status: Status, finished_at: float | None = None, name: str = "s") -> Experiment:
    return Experiment(i, name, "1:1", i, 0, status, {}, "", 1, 3, 0.0, None, finished_at, None,
                      None, False,
                      None, 0, 10, None)


def test_sweep_headline_and_who_announces_it() -> None:
    runs = [exp(1, Status.DONE, 5.0), exp(2, Status.DONE, 7.0), exp(3, Status.CANCELLED, 6.0)]
    # a cancelled run's value is not counted
    n = notify.sweep_finished("s", runs, {1: 0.5, 2: 0.6, 3: 0.9})
    assert n.body == ("s: 2 done, 1 cancelled. Mul macro mAP 0.5500 ± 0.0707 (mean ± sd over 2 "
                      "runs; best 0.6000)")
    assert not n.failure
    # Only the run that ended last announces the sweep (two workers may end its last runs at once).
    assert notify.finished_sweep(runs[1], runs) and not notify.finished_sweep(runs[0], runs)
    assert not notify.finished_sweep(runs[1], [*runs, exp(4, Status.RUNNING)])
    assert notify.sweep_finished("s", [exp(1, Status.FAILED, 1.0)], {}).failure
    assert notify.last_error_line("Boom: bad\nsecond line\n\nTraceback:\n  x\nValueError: "
                                  "y") == "second line"


def test_a_notifier_that_cannot_send_logs_and_never_raises() -> None:
    said: list[str] = []
    n = notify.Notifier([f"json://127.0.0.1:{closed_port()}/"], said.append)
    n.send(notify.queue_empty("w", 1))
    n.close()
    assert len(said) == 1 and "could not be sent" in said[0] and "Connection error" in said[0], said
    assert not notify.Notifier([], said.append)  # no targets: nothing to do


def test_targets_come_from_flags_then_the_environment(tmp_path: Path) -> None:
    assert notify.targets_from(["json://a/", " "],
                               {notify.ENV: "ntfy://t  json://a/"}) == ["json://a/", "ntfy://t"]


def test_bad_targets_are_one_error_line_before_the_worker_starts(tmp_path: Path) -> None:
    config = tmp_path / "apprise.txt"
    config.write_text("# nothing usable\n")
    for target, expected in (("bogus://secret-token@x", "not a notification URL apprise knows"),
                             (str(config), "not an apprise configuration file")):
        res = subprocess.run([str(OPTICAL), "--db", str(tmp_path / "e.db"), "worker", "--once",
                              "--device", "cpu",
                              "--notify", target], check=False, capture_output=True, text=True,
                             cwd=REPO, timeout=120,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        assert (res.returncode == 1 and res.stderr.startswith("error:")
                and expected in res.stderr), res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "secret-token" not in res.stderr


def test_a_config_file_target_sends(tmp_path: Path, receiver: Receiver) -> None:
    config = tmp_path / "apprise.yml"
    # a token stays in the file, off the command line
    config.write_text(f"urls:\n  - {receiver.url}\n")
    n = notify.Notifier([str(config)], print)
    n.send(notify.queue_empty("w", 2))
    n.close()
    wait_for(lambda: receiver.received, 10, "the receiver")
    assert receiver.titles() == ["optical: queue empty"]

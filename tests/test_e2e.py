"""End to end through the installed `optical` entry point: queue → worker → report, on the smoke
config (tiny random encoder, 6 steps, 10-question subset), with a database in tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OPTICAL = Path(sys.executable).parent / "optical"


def optical(db: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    # The fixture's environment (OPTICAL_DATA, the per-session OPTICAL_CACHE) reaches the
    # worker and its training children through the subprocess environment; a wide COLUMNS
    # keeps Rich from wrapping the table output the test reads.
    return subprocess.run([str(OPTICAL), "--db", str(db), *args], capture_output=True, text=True,
                          check=False, timeout=timeout, cwd=REPO,
                          env={**os.environ, "COLUMNS": "250"})


# Four training processes (torch start-up, data loading, 6 steps, three quick evaluations each):
# ~15 s per run on an idle 2-core CPU, so slow by the team's rule (> ~20 s).
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_queue_worker_report_through_the_cli(tmp_path: Path, data_dir: Path) -> None:
    assert OPTICAL.exists(), f"the optical entry point is not installed in {OPTICAL.parent}"
    db = tmp_path / "experiments.db"
    # Two ratios × two seeds: the smallest sweep with a paired comparison against 1:1.
    res = optical(db, "queue", "add", "--config", "configs/smoke.toml", "--name", "e2e",
                  "--ratio", "1:0", "--ratio", "1:1", "--seed", "0", "--seed", "1")
    assert res.returncode == 0, res.stderr
    res = optical(db, "worker", "--device", "cpu", "--max-experiments", "4", "--poll", "0.2")
    assert res.returncode == 0, res.stdout + res.stderr
    listed = json.loads(optical(db, "queue", "list", "--json").stdout)
    assert [e["status"] for e in listed] == ["done"] * 4, [(e["id"], e["status"], e["error"])
                                                           for e in listed]

    res = optical(db, "report", "--sweep", "e2e", "--format", "json", "--plot",
                  str(tmp_path / "study.png"))
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    # smoke.toml has eval.full_at_end = false: the report must say it used the quick subset.
    assert report["source"] == "eval" and report["subset"] and any("quick-curve" in n
                                                                   for n in report["notes"])
    assert report["ratios"] == ["1:0", "1:1"]
    assert report["setup"]["model"] == "embedded:tiny-random" and report["setup"]["steps"] == "6"
    assert "10 questions per language" in report["setup"]["scored on"]
    macro = {r["ratio"]: r for r in report["summary"] if r["unit"] == "macro"}
    assert macro["1:0"]["n"] == 2 and 0.0 <= macro["1:0"]["mean"] <= 1.0
    # The JSON's per-run values reproduce the summary and the paired difference.
    runs = {(r["ratio"], r["seed"]): r["values"]["macro:all"] for r in report["runs"]}
    assert macro["1:1"]["mean"] == pytest.approx((runs[("1:1", 0)] + runs[("1:1", 1)]) / 2)
    diff = next(d for d in report["differences"] if d["unit"] == "macro")
    assert diff["n"] == 2 and diff["seeds"] == [0, 1]
    expected = ((runs[("1:0", 0)] - runs[("1:1", 0)]) + (runs[("1:0", 1)] - runs[("1:1", 1)])) / 2
    assert diff["mean"] == pytest.approx(expected)
    assert {r["name"] for r in report["rank_distance"]} >= {"high", "low", "all"}
    assert (tmp_path / "study.png").read_bytes()[:4] == b"\x89PNG"

    table = optical(db, "report", "--sweep", "e2e", "--setting", "mo", "--metric", "r@10")
    assert table.returncode == 0 and "QUICK SUBSET" in table.stdout and "R@10" in table.stdout


# --------------------------------------------------------------------------- `optical demo`
# planning


def test_demo_plan_is_idempotent_and_fresh_starts_over(tmp_path: Path) -> None:
    """Queueing only (no training): a second `optical demo` continues the sweep, never
    duplicates."""
    from engine.store import open_store
    from optical_tui.commands.demo import RATIOS, SWEEP, plan_sweep

    config = REPO / "configs" / "smoke.toml"
    with open_store(tmp_path / "experiments.db") as store:
        plan_sweep(store, config, seeds=2, fresh=False)
        first = store.list_experiments(name=SWEEP)
        assert sorted((e.ratio, e.seed) for e in first) == sorted((r, s) for r in RATIOS
                                                                  for s in (0, 1))
        assert all(e.config["train"]["ratio"] == e.ratio and e.config["train"]["seed"] == e.seed
                   for e in first)
        lines = plan_sweep(store, config, seeds=2, fresh=False)
        assert len(store.list_experiments(name=SWEEP)) == 10 and "nothing new to queue" in lines[-1]
        plan_sweep(store, config, seeds=3, fresh=False)  # more seeds: only the new ones are queued
        assert len(store.list_experiments(name=SWEEP)) == 15
        # A failed run is retried once per `optical demo`; a done one is kept.
        a = store.claim_next("w", "cpu")
        store.finish(a.lease, "failed", error="boom")
        b = store.claim_next("w", "cpu")
        store.finish(b.lease, "done")
        plan_sweep(store, config, seeds=3, fresh=False)
        retried = [e for e in store.list_experiments(name=SWEEP) if e.retry_of == a.id]
        assert len(retried) == 1 and retried[0].status == "queued"
        assert len(store.list_experiments(name=SWEEP)) == 16
        run_dir = tmp_path / "experiments.runs" / str(b.id)
        run_dir.mkdir(parents=True)
        lines = plan_sweep(store, config, seeds=1, fresh=True)
        assert "removed 16" in lines[0] and not run_dir.exists()  # old checkpoints go with the rows
        assert len(store.list_experiments(name=SWEEP)) == 5

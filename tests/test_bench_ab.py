"""benchmarks/ab.py's arithmetic: which numbers of a benchmark's JSON it compares, and how."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "bench_ab", Path(__file__).resolve().parents[1] / "benchmarks" / "ab.py")
assert _spec and _spec.loader
ab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ab)


def test_numeric_leaves_flatten_dicts_and_lists_and_skip_booleans_and_text() -> None:
    report = {"first_paint_s": 0.8, "poll": {"median_ms": 19, "ok": True, "unit": "ms"},
              "per_process": [244, 375.5], "setup": {"python": "3.11"}}
    assert ab.numeric_leaves(report) == {"first_paint_s": 0.8, "poll.median_ms": 19.0,
                                         "per_process.0": 244.0, "per_process.1": 375.5}


def test_medians_take_each_key_every_run_reported() -> None:
    runs = [{"a": 1.0, "b": 10.0}, {"a": 3.0, "b": 30.0, "c": 5.0}, {"a": 2.0, "b": 40.0}]
    assert ab.medians(runs) == {"a": 2.0, "b": 30.0}  # c: one run only, not compared
    assert ab.medians([{"a": 1.0}, {"a": 4.0}]) == {"a": 2.5}
    assert ab.medians([]) == {}

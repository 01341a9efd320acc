"""The zero-shot baseline is computed once per (model, eval settings, data) and reused
(engine/baseline_cache.py): a second run reads it instead of encoding, with the same numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.baseline_cache import (
    baseline_dir,
    baseline_key,
    load_baseline,
    model_identity,
    save_baseline,
)
from engine.config import load_config
from engine.data.loaders import load_lareqa
from engine.evaluate import select_subset
from engine.train import ListReporter, run_training

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.toml"

pytestmark = pytest.mark.usefixtures("data_dir", "one_torch_thread")



@pytest.fixture
def empty_cache():
    # The session's cache is shared by every test; start this one without any baseline in it.
    shutil.rmtree(baseline_dir(), ignore_errors=True)
    yield baseline_dir()


def step0(rep: ListReporter, prefix: str) -> dict[str, float]:
    return {k: v for s, k, v in rep.rows if s == 0 and k.startswith(prefix)}


def baseline_events(rep: ListReporter) -> list[str]:
    return [m for kind, m in rep.events if kind == "eval" and m.startswith("step 0:")]


def test_a_second_run_of_the_sweep_reuses_the_baseline(tmp_path: Path, empty_cache: Path) -> None:
    cfg = load_config(SMOKE, ["train.steps=1", "eval.every=0", "data.dev_questions=10"])
    first = ListReporter()
    assert run_training(cfg, tmp_path / "a", first) == "done"
    assert not any("reused from cache" in m for m in baseline_events(first))
    assert len(list(empty_cache.glob("*.json"))) == 2  # the quick MLQA-R subset and the dev split

    # Another ratio and seed of the same sweep: the same untouched encoder at step 0.
    second = ListReporter()
    assert run_training(cfg.replace(train={"ratio": "1:0", "seed": 1}), tmp_path / "b",
                        second) == "done"
    events = baseline_events(second)
    assert len(events) == 2 and all("zero-shot baseline reused from cache" in m
                                    for m in events), events
    for prefix in ("eval/", "dev/"):
        assert step0(second, prefix) == step0(first, prefix) and step0(first, prefix)

    # The numbers come from the file, not from an encoder: an edited file is what a run reports.
    (quick_file,) = [p for p in empty_cache.glob("*.json") if '"split": "eval"' in p.read_text()]
    data = json.loads(quick_file.read_text())
    data["metrics"]["eval/macro/mul/map"] = 0.123456
    quick_file.write_text(json.dumps(data))
    third = ListReporter()
    assert run_training(cfg, tmp_path / "c", third) == "done"
    assert step0(third, "eval/")["eval/macro/mul/map"] == 0.123456


def test_anything_that_changes_the_numbers_changes_the_key(tmp_path: Path, tiny_encoder) -> None:
    sets = select_subset(load_lareqa("mlqa-r", ["ar", "en"]), 3, 0)
    base: dict = {"model": "embedded:tiny-random", "query_prefix": "query: ",
                  "passage_prefix": "passage: ",
                  "split": "eval", "sets": sets, "settings": ("mo", "cr", "mul"),
                  "groups": {"low": ("ar",)},
                  "batch_size": 64, "max_length": 64, "device": "cpu"}
    key = baseline_key(**base)
    assert key is not None and baseline_key(**base) == key
    for change in ({"query_prefix": ""}, {"passage_prefix": "doc: "}, {"split": "dev"},
                   {"max_length": 32},
                   {"batch_size": 8}, {"settings": ("mul",)}, {"groups": {"low": ("ar", "en")}},
                   {"sets": select_subset(load_lareqa("mlqa-r", ["ar", "en"]), 3, 1)}):
        assert baseline_key(**{**base, **change}) != key, change

    # A model folder is pinned by its files: a changed weight file is another model.
    folder = tmp_path / "model"
    tiny_encoder.model.save_pretrained(str(folder))
    before = model_identity(str(folder))
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    assert before is not None and model_identity(str(folder)) != before
    # A model that cannot be pinned (not embedded, no folder, not in the local hub cache) is
    # never cached: every run computes its own baseline.
    unknown = {**base, "model": "nobody/no-such-model-here"}
    assert baseline_key(**unknown) is None and save_baseline(None, {"x": 1.0}) is None
    assert load_baseline(None) is None


def test_cache_files_round_trip_exactly_and_reject_strangers(empty_cache: Path) -> None:
    sets = select_subset(load_lareqa("mlqa-r", ["hi"]), 2, 0)
    key = baseline_key(model="embedded:tiny-random", query_prefix="q: ", passage_prefix="p: ",
                       split="eval",
                       sets=sets, settings=("mul",), groups={}, batch_size=4, max_length=16,
                       device="cpu")
    values = {"eval/macro/mul/map": 0.1 + 0.2, "eval/n_questions": 2.0}
    path = save_baseline(key, values)
    assert path is not None and load_baseline(key) == values  # floats survive JSON bit for bit
    # no temporary file left
    assert not [p for p in empty_cache.iterdir() if p.name.startswith(".")]
    assert save_baseline(key, {"eval/macro/mul/map": float("nan")}) is None
    assert load_baseline(key) == values  # a NaN is never stored over a good baseline
    data = json.loads(path.read_text())
    data["key"]["max_length"] = 99  # a file whose key is not ours (a hash collision, an edit)
    path.write_text(json.dumps(data))
    assert load_baseline(key) is None
    path.write_text("{not json")
    assert load_baseline(key) is None

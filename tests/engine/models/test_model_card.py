"""`optical export` writes a model card that explains the model (engine/models/model_card.py): the
Hub reads its metadata, it says how the run trained and shows the run's MLQA-R table, and the
exported prompts give the tool's own embeddings in sentence-transformers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.config import load_config, with_run
from engine.metric_keys import MACRO, MetricName, Setting, Split, lang_unit, metric_key
from engine.models.model_card import base_model, mlqa_table, training_data
from engine.statuses import Status
from engine.store import NewExperiment, open_store
from engine.train import ListReporter, run_training
from optical_tui.cli import app
from tests.engine.models.test_export import SMOKE, mlqa_texts

pytestmark = pytest.mark.usefixtures("data_dir", "one_torch_thread")


def test_exported_model_carries_a_card_the_hub_reads_and_its_prompts_give_our_embeddings(
    tmp_path: Path
) -> None:
    db, runs = tmp_path / "e.db", tmp_path / "runs"
    name = "card: #1"  # YAML-significant characters stay text
    cfg = with_run(load_config(SMOKE, ["train.steps=2", "train.save_model=true", "ot.weight=0.5",
                                       "train.mixing=within"]), "1:3", 7)
    with open_store(db) as store:
        (exp,) = store.add_experiments([NewExperiment(name, "1:3", 7, cfg.to_dict(),
                                                      code_version="abc123def456")])
        lease = store.claim_next("test", "cpu").lease
        rep = ListReporter()
        assert run_training(cfg, runs / str(exp.id), rep) == "done"  # where a worker would put it
        store.flush(lease, [(k, s, v, time.time()) for s, k, v in rep.rows], step=2, total=2)
        store.finish(lease, Status.DONE)
    dest = tmp_path / "exported"
    res = CliRunner().invoke(app,
                             ["--db", str(db), "export", str(exp.id), str(dest), "--runs-dir",
                              str(runs)])
    assert res.exit_code == 0, res.output

    from huggingface_hub import ModelCard

    card = ModelCard.load(dest / "README.md")
    meta = card.data.to_dict()
    assert meta["language"] == ["ar", "de", "en", "es", "hi", "vi", "zh"]
    assert meta["datasets"] == ["google-research-datasets/xquad_r"] and meta["license"] == "mit"
    assert "base_model" not in meta  # embedded:tiny-random is a random initialisation
    assert meta["model-index"][0]["name"] == "card: #1-1to3-s7"
    assert (meta["library_name"] == "sentence-transformers"
            and meta["pipeline_tag"] == "sentence-similarity")
    quick = {k: v for s, k, v in rep.rows if s == 2}
    (result,) = [r for r in card.data.eval_results if r.metric_name == "Mul mAP macro"]
    mul_macro = quick[metric_key(Split.QUICK, Setting.MUL, MACRO, MetricName.MAP)]
    assert result.metric_value == pytest.approx(mul_macro,
                                                abs=1e-6) and result.dataset_type == "mlqa-r"
    text = card.text
    for line in ("| monolingual : cross-lingual batch ratio | 1:3 |",
                 "| OT distillation weight λ (`ot.weight`) | 0.5 |",
                 "| mixing (`train.mixing`) | within |", "| seed | 7 |",
                 "| code commit | `abc123def456` |",
                 "| selection (`train.select`) | last: step 2 |",
                 "MLQA-R, quick subset of 10 questions per language, at step 2"):
        assert line in text, (line, text)
    hi = quick[metric_key(Split.QUICK, Setting.MUL, lang_unit("hi"), MetricName.MAP)]
    # zero-shot: starred
    assert any(r.startswith("| hi* |") and f"{hi:.4f}" in r for r in text.splitlines()), text
    assert "| macro | " in text and f"{mul_macro:.4f}" in text

    from sentence_transformers import SentenceTransformer

    from engine.models.encoders import load_encoder

    st = SentenceTransformer(str(dest), device="cpu")
    ours = load_encoder(str(runs / str(exp.id) / "model"), max_length=64)  # the run's own model
    texts = mlqa_texts(3)
    for kind in ("query", "passage"):
        a = st.encode(texts, prompt_name=kind, convert_to_numpy=True, normalize_embeddings=True)
        b = ours.embed(texts, kind, max_length=64).numpy()
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() >= 0.9999, (kind, cosine.min())
    # Without the prompt the embeddings differ: the prompts are what makes them ours.
    plain = st.encode(texts, convert_to_numpy=True)
    assert ((plain * ours.embed(texts, "query", max_length=64).numpy()).sum(1)).min() < 0.9999


def test_the_table_is_the_full_benchmark_when_it_ran_else_the_quick_subset_at_the_selected_step(
    
) -> None:
    config = {"eval": {"langs": ["en", "hi"], "settings": ["mul"], "high": ["en"], "low": ["hi"]},
              "data": {"train_langs": ["en"]}}
    key = {s: metric_key(s, Setting.MUL, MACRO, MetricName.MAP) for s in (Split.QUICK, Split.FULL)}
    values = {(key[Split.QUICK], 3): 0.3, (key[Split.QUICK], 6): 0.6}
    scope, step, table = mlqa_table(config, values, selected_step=3)
    assert (scope.startswith("MLQA-R, quick"), step, table.rows[-1].values[0]) == (True, 3, 0.3)
    scope, step, table = mlqa_table(config, {**values, (key[Split.FULL], 6): 0.65}, selected_step=3)
    assert (scope, step, table.rows[-1].values[0]) == ("MLQA-R, full benchmark", 6, 0.65)
    assert [r.label for r in table.rows] == ["en", "hi*", "high (en)", "low (hi)", "macro"]
    assert mlqa_table(config, {}, None) is None


def test_base_models_and_data_sets() -> None:
    assert base_model("embedded:multilingual-e5-small") == ("intfloat/multilingual-e5-small", "mit")
    assert base_model("BAAI/bge-m3") == ("BAAI/bge-m3", None)
    assert base_model("/models/mine") == (None, None) and base_model("./a/b") == (None, None)
    hub, _ = training_data({"ot": {"weight": 1.0, "bitext": "both"}, "data": {}})
    assert hub == ["google-research-datasets/xquad_r", "mteb/tatoeba-bitext-mining"]
    hub, text = training_data({"ot": {"weight": 0.0, "bitext": "tatoeba"},
                               "data": {"train_file": "qa.jsonl"}})
    assert hub == [] and "qa.jsonl" in text[0]

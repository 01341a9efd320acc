"""A run's saved model (train.save_model, engine/models/export.py): it reloads in transformers and
sentence-transformers with the run's embeddings, `optical eval --model DIR` reproduces the run's
numbers, `optical export ID DIR` finds it through the store, and checkpoint clean-up keeps it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.config import load_config
from engine.data.loaders import load_lareqa
from engine.models.encoders import load_encoder
from engine.models.export import INFO_FILE, export_encoder, find_model, read_info
from engine.run_dirs import remove_checkpoints
from engine.train import ListReporter, run_training
from optical_tui.cli import app

REPO = Path(__file__).resolve().parents[3]
SMOKE = REPO / "configs" / "smoke.toml"
OPTICAL = Path(sys.executable).parent / "optical"

pytestmark = pytest.mark.usefixtures("data_dir", "one_torch_thread")



def mlqa_texts(n: int = 6) -> list[str]:
    """A few questions and sentences of every MLQA-R language (scripts, diacritics, long ones)."""
    out: list[str] = []
    for s in load_lareqa("mlqa-r").values():
        out += [q.text for q in s.questions[:n]] + [c.text for c in s.candidates[:n]]
    return out


def test_saved_model_reloads_with_the_runs_embeddings_and_numbers(tmp_path: Path) -> None:
    cfg = load_config(SMOKE, ["train.steps=2", "train.save_model=true", "eval.every=0"])
    rep = ListReporter()
    assert run_training(cfg, tmp_path / "run", rep) == "done"
    model_dir = tmp_path / "run" / "model"
    info = read_info(model_dir)
    assert info is not None and info["selected_step"] == 2 and info["select"] == "last"
    assert (info["query_prefix"], info["passage_prefix"], info["max_length"]) == ("query: ",
                                                                                  "passage: ", 64)

    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    _model, loading = AutoModel.from_pretrained(str(model_dir), output_loading_info=True)
    assert not any(loading.values()), loading  # every weight is in the folder, none made up
    st = SentenceTransformer(str(model_dir), device="cpu")
    assert (st.max_seq_length == 64 and st.prompts["query"] == "query: "
            and st.prompts["passage"] == "passage: ")
    ours = load_encoder(str(model_dir), max_length=64)
    texts = mlqa_texts()
    for kind in ("query", "passage"):
        a = st.encode(texts, prompt_name=kind, convert_to_numpy=True)
        b = ours.embed(texts, kind, max_length=64).numpy()
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-5, (kind, np.abs(a - b).max())

    # The run's final quick evaluation, reproduced from the folder alone (prefixes and max length
    # come from optical_model.json).
    result = CliRunner().invoke(app,
                                ["eval", "--model", str(model_dir), "--subset", "10", "--device",
                                 "cpu",
                                      "--json"])
    assert result.exit_code == 0, result.output
    reproduced = json.loads(result.stdout)
    final = {k: v for s, k, v in rep.rows if s == 2 and k.startswith("eval/")}
    assert final.keys() == reproduced.keys()
    worst = max(abs(final[k] - reproduced[k]) for k in final)
    assert worst < 1e-4, worst

    # Clean-up of a finished run removes checkpoints, never the model.
    assert (tmp_path / "run" / "checkpoints").is_dir()
    remove_checkpoints(tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert find_model(tmp_path / "run") == model_dir


def test_export_replaces_atomically_and_reads_only_complete_folders(tmp_path: Path,
                                                                    tiny_encoder) -> None:
    out = tmp_path / "m"
    export_encoder(tiny_encoder, out, max_length=32, info={"selected_step": 1})
    # replaces the first
    export_encoder(tiny_encoder, out, max_length=48, info={"selected_step": 2})
    assert read_info(out)["selected_step"] == 2 and read_info(out)["max_length"] == 48
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary or old folder left
    (out / INFO_FILE).unlink()
    assert read_info(out) is None and find_model(tmp_path) is None


def optical(db: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OPTICAL), "--db", str(db), *args], capture_output=True, text=True,
                          check=False,
                          timeout=timeout, cwd=REPO, env={**os.environ, "COLUMNS": "250"})


# One training process through a real worker (~10 s on an idle 2-core CPU).
@pytest.mark.slow
def test_optical_export_finds_the_workers_model_after_cleanup(tmp_path: Path) -> None:
    db = tmp_path / "experiments.db"
    for extra in (["--set", "train.save_model=true", "--set", "data.dev_questions=10", "--set",
                   "train.select=best-dev"],
                  ["--priority", "-1"],  # never run: save_model = false
                  ["--priority", "-1", "--set", "train.save_model=true"]):  # never run: not done
        res = optical(db, "queue", "add", "-c", str(SMOKE), "-r", "1:1", "--set", "train.steps=2",
                      *extra)
        assert res.returncode == 0, res.stderr
    res = optical(db, "worker", "--device", "cpu", "--once", "--poll", "0.2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(optical(db, "queue", "show", "1", "--json").stdout)["status"] == "done"
    # The worker deleted the finished run's checkpoints; the model it saved is still there.
    run_folder = tmp_path / "experiments.runs" / "1"
    assert not list(run_folder.rglob("step_*.pt"))
    saved = find_model(run_folder)
    assert saved is not None and saved.parent.name.startswith("attempt-")

    dest = tmp_path / "exported"
    res = optical(db, "export", "1", str(dest), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["path"] == str(dest.resolve()) and out["select"] == "best-dev"
    from engine.store import open_store

    with open_store(db) as store:
        (selected,) = store.metrics(1, keys=["train/selected_step"])
    assert read_info(dest)["selected_step"] == int(selected.value) == out["selected_step"]
    # The saved folder, plus its model card (tests/engine/models/test_model_card.py).
    assert sorted(p.name for p in dest.iterdir()) == sorted([p.name for p in saved.iterdir()]
                                                            + ["README.md"])

    for args, expected in (
        (("export", "2", str(tmp_path / "x")), "train.save_model = false"),
        (("export", "3", str(tmp_path / "x")), "it is queued"),
        (("export", "99", str(tmp_path / "x")), "99"),
        (("export", "1", str(dest)), "not an empty folder"),
    ):
        res = optical(db, *args)
        assert (res.returncode == 1 and res.stderr.startswith("error:")
                and expected in res.stderr), res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()


# The real encoder: 470 MB of weights written and read back.
@pytest.mark.slow
def test_embedded_e5_export_keeps_tokenizer_and_weights(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    enc = load_encoder("embedded:multilingual-e5-small", max_length=128)
    export_encoder(enc, tmp_path / "e5", max_length=128)
    st = SentenceTransformer(str(tmp_path / "e5"), device="cpu")
    texts = mlqa_texts(3)
    for kind in ("query", "passage"):
        a = st.encode(texts, prompt_name=kind, convert_to_numpy=True)
        b = enc.embed(texts, kind, max_length=128).numpy()
        assert np.abs(a - b).max() < 1e-5, (kind, np.abs(a - b).max())

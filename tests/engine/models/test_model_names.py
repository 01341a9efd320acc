"""Model names checked at queue time (issue 20, item 7: a bad model id was accepted by `queue add`
and failed only when its run started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.models.bundled import EMBEDDED
from engine.models.names import check_model_name
from engine.sweep import new_experiments


@pytest.mark.parametrize("name", ["embedded:multilingual-e5-small", "embedded:tiny-random"])
def test_bundled_models_pass_silently(name: str) -> None:
    assert check_model_name(name) is None
    assert name.removeprefix("embedded:") in EMBEDDED


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("embedded:tiny-randm", "no such bundled model; bundled: embedded:multilingual-e5-small"),
        ("./no-such-folder", "no model folder there"),
        ("/no/such/model", "no model folder there"),
        ("intfloat/e5 small", "not a local folder, a bundled model"),
        ("a--b/c", "not a local folder"),
        ("org/name/extra", "not a local folder"),
        ("-org/name", "not a local folder"),
    ],
)
def test_names_that_cannot_load_anywhere_are_refused(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match="model.name .*" + message.split(";")[0]):
        check_model_name(name)


def test_a_local_folder_must_hold_a_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config.json"):
        check_model_name(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert check_model_name(str(tmp_path)) is None


def test_a_hub_id_is_accepted_with_a_note_that_only_the_worker_can_check_it() -> None:
    note = check_model_name("intfloat/multilingual-e5-small", "model.teacher")
    assert note is not None and note.startswith(
        "model.teacher 'intfloat/multilingual-e5-small' is a Hugging Face id"
    )
    assert "worker's box" in note
    assert check_model_name("xlm-roberta-base") is not None  # a hub id without an org


def test_queue_time_validation_covers_swept_models_and_the_teacher() -> None:
    with pytest.raises(ConfigError, match="model.name './gone'"):
        new_experiments(["1:1"], [0], sweeps=["model.name=embedded:tiny-random,./gone"])
    with pytest.raises(ConfigError, match="model.teacher 'embedded:nope'"):
        new_experiments(["1:1"], [0], overrides=["model.teacher=embedded:nope"])

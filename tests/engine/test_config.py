import dataclasses
import math

import pytest

from engine.config import (
    Config,
    config_from_dict,
    load_config,
    parse_ratio,
    ratio_sort_key,
    valid_keys,
    with_run,
)
from engine.errors import ConfigError


@pytest.mark.parametrize(
    "text, mono, cross",
    [("1:3", 1, 3), ("1:0", 1, 0), ("0:1", 0, 1), ("0.5:0.5", 1, 1), (" 3 : 1 ", 3, 1),
     ("0.25:0.75", 1, 3), ("2:6", 1, 3), ("0.1:0.2", 1, 2), ("1e308:1e308", 1, 1), ("5:0", 1, 0),
     ("0.333:0.667", 333, 667)],
)
def test_parse_ratio_valid_in_lowest_integer_terms(text, mono, cross):
    # The stored label is exactly the mixture that trains: 1e308:1e308 no longer overflows to an
    # all cross-lingual run labelled with a 309-digit ratio, it is 1:1.
    r = parse_ratio(text)
    assert (r.mono, r.cross) == (mono, cross)
    assert math.isclose(r.mono_fraction, mono / (mono + cross))
    assert parse_ratio(str(r)) == r


@pytest.mark.parametrize("text", ["1:3:5", "a:b", "-1:2", "0:0", "nan:1", "inf:1", "", "1:", ":1",
                                  "13", "1e308:1", "1:1e-10", "1e309:1", "1" * 70 + ":1"])
def test_parse_ratio_invalid(text):
    with pytest.raises(ConfigError, match="ratio"):
        parse_ratio(text)


def test_ratio_canonical_form_and_order():
    assert str(parse_ratio("1.0:3")) == "1:3"
    assert str(parse_ratio("0.5:0.5")) == "1:1"
    ordered = sorted(["0:1", "1:1", "1:0", "1:3", "3:1"], key=ratio_sort_key)
    assert ordered == ["1:0", "3:1", "1:1", "1:3", "0:1"]


def test_toml_overrides_only_what_it_names(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[train]\nlr = 3e-5\n[eval]\nlangs = ["en", "hi"]\n')
    cfg = load_config(p)
    default = Config()
    assert cfg.train.lr == 3e-5
    assert cfg.eval.langs == ("en", "hi")
    assert cfg.train.batch_size == default.train.batch_size
    assert cfg.model == default.model


def test_set_overrides_are_typed_and_win_over_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[train]\nlr = 3e-5\nsteps = 10\n")
    cfg = load_config(p, ["train.lr=1e-4", "model.name=xlm-roberta-base", "train.bf16=false",
                          "data.train_langs=en,de", "ot.weight=0"])
    assert cfg.train.lr == 1e-4 and cfg.train.steps == 10
    assert cfg.model.name == "xlm-roberta-base"
    assert cfg.train.bf16 is False
    assert cfg.data.train_langs == ("en", "de")
    assert cfg.ot.weight == 0.0


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["train.lrr=1"], r"unknown key; valid keys in \[train\]: ratio, mixing"),
        (["trian.lr=1"], "unknown section 'trian'"),
        (["train.lr=abc"], "cannot parse"),
        (["train.steps=1.5"], "train.steps: expected an integer"),
        (["train.steps=0"], "must be positive"),
        (["train.bf16=1"], "expected true or false"),
        (["train.mixing=sometimes"], "train.mixing: 'sometimes' is not one of batch, within"),
        (["train.ratio=0:0"], "ratio"),
        (["eval.langs=en,xx"], "unknown language"),
        (["lr=1"], "section.key"),
        (["train.lr"], "expected section.key=value"),
        # Values that used to pass validation and fail at run time (or overflow the store)
        (["train.seed=-1"], r"train.seed: must be between 0 and 4294967295"),
        (["train.seed=4294967296"], r"train.seed: must be between 0 and 4294967295"),
        (["eval.subset_seed=4294967296"], "eval.subset_seed: must be between"),
        (["train.steps=99999999999999999999999"],
         "train.steps: 99999999999999999999999 is out of range"),
        (["ot.max_iter=-99999999999999999999999"], "ot.max_iter: .* is out of range"),
        (["data.train_langs=en,de,en"], "data.train_langs: en given more than once"),
        (["eval.langs=[\"ar\", \"ar\"]"], "eval.langs: ar given more than once"),
        (["eval.high=en,de,de"], "eval.high: de given more than once"),
        (["eval.settings=mo,mo"], "eval.settings: a setting is given more than once"),
    ],
)
def test_bad_overrides_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not a file"):
        load_config(tmp_path)


@pytest.mark.parametrize(("content", "match"), [
    (b"[train\nlr = ", "not valid TOML"),
    (b"\xff\xfe\x00garbage", "TOML"),
    (b"[optimizer]\nlr = 1\n", "unknown section \\[optimizer\\]; valid sections: model, data"),
    (b'[train]\nsteps = "ten"\n', "train.steps: expected an integer"),
])
def test_bad_file_contents(tmp_path, content, match):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_round_trip_and_with_run():
    cfg = load_config(None, ["train.lr=3e-5"])
    assert config_from_dict(cfg.to_dict()) == cfg
    run = with_run(cfg, "0.5:1.5", 7)
    assert run.train.ratio == "1:3" and run.train.seed == 7 and run.train.lr == 3e-5
    assert cfg.train.seed == 0  # frozen: the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0  # type: ignore[misc]


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[2] / "configs").glob("*.toml"))
    # The configs the README documents are there: an empty glob must not pass vacuously.
    assert {"smoke", "demo", "paper"} <= {p.stem for p in configs}
    for p in configs:
        load_config(p)


def test_valid_keys_lists_every_section():
    keys = valid_keys()
    assert "train.lr" in keys and "ot.epsilon" in keys and "eval.subset_questions" in keys


def test_largest_valid_integers_pass():
    cfg = load_config(None, ["train.seed=4294967295", "train.steps=9223372036854775807"])
    assert cfg.train.seed == 2**32 - 1 and cfg.train.steps == 2**63 - 1


def test_toml_file_integers_are_bounded_too(tmp_path):
    p = tmp_path / "big.toml"
    p.write_text("[train]\nseed = 18446744073709551616\n")
    with pytest.raises(ConfigError, match="train.seed"):
        load_config(p)

"""Loaders on the real shared data (published counts), error paths on tmp files, `optical data`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.data import jsonl
from engine.data import loaders as data
from engine.data.download import CHECKSUMS, download, planned_files, sha256_file
from engine.errors import ConfigError, DataMissing

MLQA_R_COUNTS = {  # LAReQA / hybrid-batch paper: questions, candidate sentences
    "ar": (517, 2545), "de": (512, 2362), "en": (1148, 6264), "es": (500, 1787),
    "hi": (507, 2426), "vi": (511, 2828), "zh": (504, 2322),
}
LANGS = tuple(MLQA_R_COUNTS)


# --------------------------------------------------------------------------- real data


def test_mlqa_r_counts_match_published(data_dir: Path) -> None:
    sets = data.load_lareqa("mlqa-r", data_dir=data_dir)
    assert {lang: (len(s.questions), len(s.candidates))
            for lang, s in sets.items()} == MLQA_R_COUNTS
    assert sum(len(s.questions) for s in sets.values()) == 4199
    assert sum(len(s.candidates) for s in sets.values()) == 20534


def test_xquad_r_is_fully_parallel(data_dir: Path) -> None:
    sets = data.load_lareqa("xquad-r", data_dir=data_dir)
    ids = {lang: [q.id for q in s.questions] for lang, s in sets.items()}
    assert all(len(v) == 1190 for v in ids.values())
    assert all(set(v) == set(ids["en"]) for v in ids.values())


@pytest.mark.parametrize("dataset", ["mlqa-r", "xquad-r"])
def test_answer_is_the_sentence_containing_answer_start(data_dir: Path, dataset: str) -> None:
    """Re-derive every relevant sentence from the raw JSON, independently of the loader."""
    for lang, s in data.load_lareqa(dataset, data_dir=data_dir).items():
        raw = json.loads((data_dir / dataset / f"{lang}.json").read_text(encoding="utf-8"))
        expected = {}
        for article in raw["data"]:
            for p in article["paragraphs"]:
                for qa in p["qas"]:
                    start = qa["answers"][0]["answer_start"]
                    hits = [i for i, (b, e) in enumerate(p["sentence_breaks"]) if b <= start < e]
                    assert len(hits) == 1
                    expected[qa["id"]] = (p["sentences"][hits[0]], p["context"],
                                          qa["answers"][0]["text"])
        assert set(s.answer) == set(expected) == {q.id for q in s.questions}
        contained = 0
        for q in s.questions:
            cand = s.candidates[s.answer[q.id]]
            sentence, context, answer_text = expected[q.id]
            assert (cand.lang, cand.text, cand.context) == (lang, sentence, context)
            contained += answer_text in cand.text
        # A few gold answers run across a sentence boundary; nearly all sit inside one sentence.
        assert contained / len(s.questions) > 0.97


def test_first_arabic_question_by_hand(data_dir: Path) -> None:
    ar = data.load_lareqa("mlqa-r", ["ar"], data_dir)["ar"]
    q = ar.questions[0]
    assert q == data.Question("569666f4dc3983dab5624e989212c1d9d0cd1798", "ar",
                              "هل تزول الإصابة بمرض ذبابة الرمال عبر الوقت؟")
    cand = ar.candidates[ar.answer[q.id]]
    assert (cand.paragraph, cand.sentence) == (0, 1)  # answer_start 248 lies in span [143, 280)
    assert "وتبقى مصابة بالفيروس مدى حياتها" in cand.text


def test_mlqa_ids_link_languages(data_dir: Path) -> None:
    sets = data.load_lareqa("mlqa-r", data_dir=data_dir)
    en_ids = {q.id for q in sets["en"].questions}
    for lang in LANGS:
        assert {q.id for q in sets[lang].questions} <= en_ids  # every MLQA question has English
    shared = {q.id for q in sets["de"].questions} & {q.id for q in sets["zh"].questions}
    assert 0 < len(shared) < 512  # only 2-4-way parallel: some pairs have no answer


def test_parallel_qa(data_dir: Path) -> None:
    pairs = data.load_parallel_qa("xquad-r", ("en", "de", "es", "zh"), data_dir)
    assert len(pairs) == 1190 and len({p.id for p in pairs}) == 1190
    sets = data.load_lareqa("xquad-r", ("en", "zh"), data_dir)
    first = pairs[0]
    assert set(first.question) == set(first.answer) == {"en", "de", "es", "zh"}
    assert first.question["zh"] == next(q.text for q in sets["zh"].questions if q.id == first.id)
    assert first.answer["en"] == sets["en"].candidates[sets["en"].answer[first.id]].text
    assert "308" in first.answer["en"] and "308" in first.answer["zh"]
    # file order, deterministic
    assert [p.id for p in pairs] == [q.id for q in sets["en"].questions]
    # MLQA-R is only partly parallel: the intersection is smaller than either language.
    assert 0 < len(data.load_parallel_qa("mlqa-r", ("de", "zh"), data_dir)) < 504


def test_xquad_squad_loader(data_dir: Path) -> None:
    xq = data.load_xquad(data_dir=data_dir)
    assert {lang: len(v) for lang, v in xq.items()} == {lang: 1190 for lang in LANGS}
    for qa in xq["en"]:
        assert qa.context[qa.answer_start: qa.answer_start + len(qa.answer_text)] == qa.answer_text
    assert {q.id for q in xq["hi"]} == {q.id for q in xq["en"]}


def test_bitext_maps_mlqa_codes(data_dir: Path) -> None:
    pairs = data.load_bitext(["ar", "zh", "en"], data_dir)  # "en" is the source side: no pairs
    assert len(pairs) == 2000
    assert {p.tgt_lang for p in pairs} == {"ar", "zh"} and {p.src_lang for p in pairs} == {"en"}
    zh = [p for p in pairs if p.tgt_lang == "zh"]
    tatoeba = data_dir / "tatoeba-laser"
    lines = (tatoeba / "tatoeba.cmn-eng.cmn").read_text(encoding="utf-8").split("\n")
    eng = (tatoeba / "tatoeba.cmn-eng.eng").read_text(encoding="utf-8").split("\n")
    assert (zh[7].tgt, zh[7].src) == (lines[7].strip(), eng[7].strip())
    assert all(len(data.load_bitext([lang], data_dir)) == 1000 for lang in ("de", "es", "hi", "vi"))
    with pytest.raises(ConfigError, match="fr"):
        data.load_bitext(["fr"], data_dir)


def test_unknown_dataset_and_language_are_config_errors(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="mlqa"):
        data.load_lareqa("mlqa", data_dir=data_dir)
    with pytest.raises(ConfigError, match="xx"):
        data.load_lareqa("mlqa-r", ["en", "xx"], data_dir)


def test_data_status_on_real_data(data_dir: Path) -> None:
    rows = data.data_status(data_dir)
    assert len(rows) == 2 * 7 + 7 + 6
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    row = next(r for r in rows if (r["dataset"], r["lang"]) == ("mlqa-r", "hi"))
    assert (row["questions"], row["candidates"]) == (507, 2426)


def test_checksum_table_matches_shared_files(data_dir: Path) -> None:
    for rel, digest in CHECKSUMS.items():
        assert sha256_file(data_dir / rel) == digest, rel
    # The download layout is exactly what the loaders read. The loaders resolve symlinks, so
    # compare against the resolved folder (CI may reach shared/ through a link).
    data_dir = data_dir.resolve()
    expected = {str(data.lareqa_path(ds, lang, data_dir).relative_to(data_dir))
                for ds in data.LAREQA_DATASETS for lang in LANGS}
    expected |= {str(data.xquad_path(lang, data_dir).relative_to(data_dir)) for lang in LANGS}
    expected |= {str(p.relative_to(data_dir)) for lang in data.TATOEBA_CODES
                 for p in data.tatoeba_paths(lang, data_dir)}
    assert set(CHECKSUMS) == expected
    for rel, url, _ in planned_files():
        assert url.startswith("https://raw.githubusercontent.com/") and url.endswith(rel.split("/",
                                                                                               1)[1])


def test_download_keeps_verified_files_without_network(data_dir: Path) -> None:
    states: list[tuple[str, str]] = []
    assert download(data_dir, on_file=lambda rel, state: states.append((rel, state))) == []
    assert sorted(states) == sorted((rel, "skipped") for rel in CHECKSUMS)


# --------------------------------------------------------------------------- resolution, errors


def test_resolve_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPTICAL_DATA", str(tmp_path / "env"))
    assert data.resolve_data_dir(str(tmp_path / "set")) == tmp_path / "set"
    assert data.resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("OPTICAL_DATA")
    assert data.resolve_data_dir() == tmp_path / "data"


def test_missing_file_names_path_and_remedy(tmp_path: Path) -> None:
    with pytest.raises(DataMissing) as err:
        data.load_lareqa("mlqa-r", ["de"], tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "mlqa-r" / "de.json") in msg
    assert "optical data download" in msg and "OPTICAL_DATA" in msg


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _lareqa_doc(**para_overrides: object) -> str:
    para = {
        "context": "One two. Three four.",
        "sentences": ["One two.", "Three four."],
        "sentence_breaks": [[0, 8], [9, 20]],
        "qas": [{"id": "q1", "question": "Which?",
                 "answers": [{"text": "four", "answer_start": 15}]},
                {"id": "q2", "question": "Gap?",
                 "answers": [{"text": "Three", "answer_start": 8}]}],
    }
    para.update(para_overrides)
    return json.dumps({"version": "1", "data": [{"title": "t", "paragraphs": [para]}]})


def test_small_lareqa_file_by_hand(tmp_path: Path) -> None:
    _write(tmp_path / "xquad-r" / "de.json", _lareqa_doc())
    s = data.load_lareqa("xquad-r", ["de"], tmp_path)["de"]
    assert [c.text for c in s.candidates] == ["One two.", "Three four."]
    assert dict(s.answer) == {"q1": 1, "q2": 1}  # q2 starts on the space between the sentences


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "'data' list"),
        (json.dumps({"data": [{"title": "no paragraphs"}]}), "paragraphs"),
        (_lareqa_doc(sentences=None), "sentence_breaks"),
        (_lareqa_doc(sentence_breaks=[[0, 8]]), "sentence_breaks"),
        (_lareqa_doc(sentence_breaks=[0, 8]), "pairs"),
        (_lareqa_doc(qas=[{"id": "q", "question": "?"}]), "answers"),
        (_lareqa_doc(qas=[{"id": "q", "question": "?",
                           "answers": [{"text": "x", "answer_start": 99}]}]),
         "outside"),
    ],
)
def test_malformed_lareqa_file(tmp_path: Path, text: str, why: str) -> None:
    path = _write(tmp_path / "mlqa-r" / "en.json", text)
    with pytest.raises(DataMissing, match=why) as err:
        data.load_lareqa("mlqa-r", ["en"], tmp_path)
    assert str(path) in str(err.value) and "optical data download" in str(err.value)


def test_non_utf8_file_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "xquad" / "xquad.en.json"
    path.parent.mkdir()
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataMissing, match="malformed"):
        data.load_xquad(["en"], tmp_path)


def test_misaligned_bitext_is_malformed(tmp_path: Path) -> None:
    _write(tmp_path / "tatoeba-laser" / "tatoeba.deu-eng.eng", "a\nb\nc\n")
    _write(tmp_path / "tatoeba-laser" / "tatoeba.deu-eng.deu", "A\nB\n")
    with pytest.raises(DataMissing, match="line-aligned"):
        data.load_bitext(["de"], tmp_path)
    # A U+2028 inside a line must not split it (str.splitlines would).
    _write(tmp_path / "tatoeba-laser" / "tatoeba.deu-eng.deu", "A\u2028x\nB\nC")
    assert [p.tgt for p in data.load_bitext(["de"], tmp_path)] == ["A\u2028x", "B", "C"]


def test_cache_rereads_an_edited_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "xquad-r" / "es.json", _lareqa_doc())
    assert len(data.load_lareqa("xquad-r", ["es"], tmp_path)["es"].questions) == 2
    _write(path, _lareqa_doc(qas=[]))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert len(data.load_lareqa("xquad-r", ["es"], tmp_path)["es"].questions) == 0


def test_data_status_reports_missing_and_malformed(tmp_path: Path) -> None:
    _write(tmp_path / "mlqa-r" / "en.json", "{broken")
    _write(tmp_path / "xquad-r" / "en.json", _lareqa_doc())
    rows = {(r["dataset"], r["lang"]): r for r in data.data_status(tmp_path)}
    assert rows[("mlqa-r", "en")]["status"] == "malformed"
    assert rows[("mlqa-r", "de")]["status"] == "missing"
    assert rows[("xquad-r", "en")]["status"] == "unexpected counts"
    assert rows[("xquad-r", "en")]["questions"] == 2
    assert rows[("tatoeba", "zh")]["path"].endswith("tatoeba.cmn-eng.eng")


# --------------------------------------------------------------------------- a JSONL train file


def _record(qid: str, langs: tuple[str, ...] = ("en", "de")) -> str:
    return json.dumps({"id": qid, "question": {lg: f"{qid} question {lg}?" for lg in langs},
                       "answer": {lg: f"{qid} answer {lg}." for lg in langs}})


def test_jsonl_records_in_file_order_restricted_to_the_languages(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.jsonl", "\n".join([
        _record("b", ("en", "de", "zh")), "", _record("a"), _record("only-en", ("en",)), "  "])
                  + "\n")
    recs = jsonl.load_parallel_jsonl(path, ("en", "de"))
    assert [r.id for r in recs] == ["b", "a"]  # file order; blank lines and partial records skipped
    assert dict(recs[0].question) == {"en": "b question en?", "de": "b question de?"}
    assert dict(recs[1].answer) == {"en": "a answer en.", "de": "a answer de."}
    # Relative paths are resolved against the data folder (data.train_file).
    assert jsonl.train_file_path("train.jsonl", tmp_path) == tmp_path / "train.jsonl"
    assert jsonl.train_file_path(str(path), "/elsewhere") == path
    assert [r.id
            for r in jsonl.load_training_qa("xquad-r", "train.jsonl", ("en",), tmp_path)] == ["b",
                                                                                             "a",
                                                                                             "only-en"]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("{not json", "line 2: not valid JSON"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
        (json.dumps({"question": {"en": "q"}, "answer": {"en": "a"}}),
         "line 2: 'id' must be a non-empty string"),
        (json.dumps({"id": 7, "question": {"en": "q"}, "answer": {"en": "a"}}),
         "line 2: 'id' must be"),
        (json.dumps({"id": "x", "question": "q", "answer": {"en": "a"}}),
         "line 2: 'question' must be an object"),
        (json.dumps({"id": "x", "question": {"en": "q"}}), "line 2: 'answer' must be an object"),
        (json.dumps({"id": "x", "question": {"en": "q"}, "answer": {"en": " "}}),
         "line 2: 'answer' text for 'en' must be a non-empty string"),
        (_record("a"), "line 2: duplicate id 'a' (first on line 1)"),
    ],
)
def test_malformed_jsonl_line_is_named(tmp_path: Path, line: str, why: str) -> None:
    path = _write(tmp_path / "train.jsonl", _record("a") + "\n" + line + "\n" + _record("c") + "\n")
    with pytest.raises(DataMissing) as err:
        jsonl.load_parallel_jsonl(path, ("en",))
    assert (why in str(err.value) and str(path) in str(err.value)
            and "1 malformed line(s)" in str(err.value))


def test_jsonl_errors_are_listed_up_to_five(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.jsonl", "\n".join(["{"] * 8 + [_record("ok")]))
    with pytest.raises(DataMissing) as err:
        jsonl.load_parallel_jsonl(path, ("en",))
    msg = str(err.value)
    assert ("8 malformed line(s)" in msg and "line 5:" in msg and "line 6:" not in msg
            and "and 3 more" in msg)


def test_jsonl_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(DataMissing, match="training file not found"):
        jsonl.load_parallel_jsonl(tmp_path / "nope.jsonl", ("en",))
    with pytest.raises(DataMissing, match="holds no records"):
        jsonl.load_parallel_jsonl(_write(tmp_path / "empty.jsonl", "\n\n"), ("en",))
    path = _write(tmp_path / "en-de.jsonl", _record("a") + "\n" + _record("b", ("en",)) + "\n")
    with pytest.raises(DataMissing,
                       match=r"every training language \(en, zh\); records per language: de \(1\), "
                             r"en \(2\)"):
        jsonl.load_parallel_jsonl(path, ("en", "zh"))
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"id": "\xe9"}\n')
    with pytest.raises(DataMissing, match="not UTF-8"):
        jsonl.load_parallel_jsonl(bad, ("en",))


def test_mmarco_conversion_on_a_small_tree(tmp_path: Path) -> None:
    # The dataset's layout with three queries; query 3 lacks its German translation.
    from engine.data.mmarco import main as mmarco_main

    root = tmp_path / "data"
    _write(root / "triples.train.ids.small.tsv", "1\t10\t99\n1\t11\t98\n2\t20\t97\n3\t30\t96\n")
    for name, tag, queries in (("english", "en", "1\tq one\n2\tq two\n3\tq three\n"),
                               ("german", "de", "1\tq eins\n2\tq zwei\n")):
        _write(root / "google" / "queries" / "train" / f"{name}_queries.train.tsv", queries)
        _write(root / "google" / "collections" / f"{name}_collection.tsv",
               f"10\tp10 {tag}\n11\tp11 {tag}\n20\tp20 {tag}\n30\tp30 {tag}\n99\tp99 {tag}\n")
    out = tmp_path / "mmarco.jsonl"
    assert mmarco_main(["--root", str(root), "--langs", "en,de", "--out", str(out)]) == 0
    recs = jsonl.load_parallel_jsonl(out, ("en", "de"))
    assert [r.id for r in recs] == ["mmarco-1", "mmarco-2"]  # the first positive per query id
    assert dict(recs[0].question) == {"en": "q one", "de": "q eins"}
    assert dict(recs[0].answer) == {"en": "p10 en", "de": "p10 de"}
    # The triple's own negative passage, per language (the paper's d-), and the positive as group.
    assert {lg: list(v) for lg, v in recs[0].negatives.items()} == {"en": ["p99 en"],
                                                                    "de": ["p99 de"]}
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["group"] for line in lines] == ["mmarco-p10", "mmarco-p20"]
    assert recs[0].group != recs[1].group
    assert mmarco_main(["--root", str(root), "--langs", "en,xx", "--out", str(out)]) == 1
    assert mmarco_main(["--root", str(tmp_path / "nope"), "--out", str(out)]) == 1


def test_bad_train_file_fails_the_cli_in_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.jsonl", _record("a") + "\n{oops\n")
    smoke = Path(__file__).parents[3] / "configs" / "smoke.toml"
    result = CliRunner().invoke(_cli(), ["run", "--config", str(smoke),
                                          "--set", f"data.train_file={path}", "--out",
                                         str(tmp_path / "run"), "--json"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error:") and "line 2: not valid JSON" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


# --------------------------------------------------------------------------- CLI


def _cli():
    from optical_tui.cli import app

    return app


def test_cli_data_check_json(data_dir: Path) -> None:
    result = CliRunner().invoke(_cli(), ["data", "check", "--json", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["data_dir"] == str(data_dir.resolve())
    en = next(r for r in report["datasets"] if (r["dataset"], r["lang"]) == ("mlqa-r", "en"))
    assert (en["status"], en["questions"], en["candidates"]) == ("ok", 1148, 6264)


def test_cli_data_check_table_and_missing(tmp_path: Path, data_dir: Path) -> None:
    ok = CliRunner().invoke(_cli(), ["data", "check", "--data-dir", str(data_dir)])
    assert ok.exit_code == 0 and "mlqa-r" in ok.stdout and "6264" in ok.stdout
    bad = CliRunner().invoke(_cli(), ["data", "check", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 1
    assert "missing" in bad.stdout and "optical data download" in bad.stdout
    as_json = CliRunner().invoke(_cli(), ["data", "check", "--json", "--data-dir", str(tmp_path)])
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["ok"] is False


def test_cli_data_download_help() -> None:
    result = CliRunner().invoke(_cli(), ["data", "download", "--help"])
    assert result.exit_code == 0 and "--dest" in result.stdout and "SHA-256" in result.stdout


# --------------------------------------------------------------------------- issue 18: training
# signal


def test_xquad_r_groups_questions_that_share_an_answer_sentence(data_dir: Path) -> None:
    recs = data.load_parallel_qa("xquad-r", ("en", "de", "es", "zh"), data_dir)
    sets = data.load_lareqa("xquad-r", ("en",), data_dir)["en"]
    by_group: dict[str, list[str]] = {}
    for r in recs:
        by_group.setdefault(r.group, []).append(r.id)
    # Every pair with the same English answer sentence (same candidate index) has one group.
    by_sentence: dict[int, set[str]] = {}
    for q in sets.questions:
        by_sentence.setdefault(sets.answer[q.id], set()).add(q.id)
    group_of = {r.id: r.group for r in recs}
    for ids in by_sentence.values():
        assert len({group_of[i] for i in ids}) == 1
    shared = sum(len(ids) for ids in by_group.values() if len(ids) > 1)
    assert shared >= 656  # the count in one language; other languages can only add
    assert max(len(ids) for ids in by_group.values()) >= 12


def test_hard_negative_candidates_are_the_answers_paragraph_in_its_language(data_dir: Path) -> None:
    recs = data.load_parallel_qa("xquad-r", ("en", "de"), data_dir)
    sets = data.load_lareqa("xquad-r", ("en", "de"), data_dir)
    for rec in recs[:200]:
        for lang in ("en", "de"):
            s = sets[lang]
            ans = s.candidates[s.answer[rec.id]]
            paragraph = [c.text for c in s.candidates if c.paragraph == ans.paragraph]
            assert rec.answer[lang] == ans.text
            assert len(rec.negatives[lang]) == len(paragraph) - 1
            assert set(rec.negatives[lang]) <= set(paragraph)


def test_zh_cleaning_touches_training_text_only(data_dir: Path) -> None:
    raw = data.load_lareqa("xquad-r", ("zh",), data_dir)["zh"]
    raw_answers = {raw.candidates[i].text for i in raw.answer.values()}
    assert sum(data.cjk_spaces(a) > 0 for a in raw_answers) == 570  # the count, of 784
    assert len(raw_answers) == 784
    train = data.load_parallel_qa("xquad-r", ("en", "zh"), data_dir)
    assert sum(data.cjk_spaces(r.answer["zh"]) > 0 for r in train) == 0
    assert sum(data.cjk_spaces(q) > 0 for r in train
               for q in (r.question["zh"], *r.negatives["zh"])) == 0
    # Only the inserted spaces go: the text is otherwise the raw sentence.
    by_id = {q.id: raw.candidates[raw.answer[q.id]].text for q in raw.questions}
    for r in train:
        assert r.answer["zh"] == data.clean_training_text(by_id[r.id], "zh")
        assert r.answer["zh"].replace(" ", "") == by_id[r.id].replace(" ", "")
    assert data.clean_training_text("在 1995 年", "zh") == "在 1995 年"  # a number is not CJK
    assert data.clean_training_text("的 北京 是", "zh") == "的北京是"
    assert data.clean_training_text("的 北京 是", "de") == "的 北京 是"  # other languages untouched
    # Evaluation text is never cleaned: MLQA-R zh is read as is (and has no such spaces).
    mlqa = data.load_lareqa("mlqa-r", ("zh",), data_dir)["zh"]
    doc = json.loads((data_dir / "mlqa-r" / "zh.json").read_text(encoding="utf-8"))
    first = doc["data"][0]["paragraphs"][0]["sentences"]
    assert [c.text for c in mlqa.candidates[: len(first)]] == first
    assert sum(data.cjk_spaces(mlqa.candidates[i].text) > 0 for i in set(mlqa.answer.values())) == 0
    rows = {(r["dataset"], r["lang"]): r for r in data.data_status(data_dir)}
    assert (rows["xquad-r", "zh"]["cjk_spaced_answers"], rows["xquad-r", "zh"]["answers"]) == (570,
                                                                                               784)
    assert rows["mlqa-r", "zh"]["cjk_spaced_answers"] == 0


def test_jsonl_group_and_negatives(tmp_path: Path) -> None:
    lines = [
        {"id": "a", "question": {"en": "qa"}, "answer": {"en": "Same  answer."},
         "negatives": {"en": ["n1", "n2"]}},
        # same text: grouped
        {"id": "b", "question": {"en": "qb"}, "answer": {"en": "same answer."}},
        {"id": "c", "question": {"en": "qc"}, "answer": {"en": "other"}, "group": "g1"},
        {"id": "d", "question": {"en": "qd"}, "answer": {"en": "different"}, "group": "g1"},
        {"id": "e", "question": {"en": "qe"}, "answer": {"en": "alone"}},
    ]
    path = _write(tmp_path / "t.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    recs = {r.id: r for r in jsonl.load_parallel_jsonl(path, ("en",))}
    assert recs["a"].group == recs["b"].group != recs["e"].group
    assert recs["c"].group == recs["d"].group
    assert list(recs["a"].negatives["en"]) == ["n1", "n2"] and list(recs["e"].negatives["en"]) == []
    bad = _write(tmp_path / "bad.jsonl", json.dumps({**lines[0], "negatives": {"en": "n1"}}) + "\n")
    with pytest.raises(DataMissing, match="'negatives' for 'en' must be a list"):
        jsonl.load_parallel_jsonl(bad, ("en",))

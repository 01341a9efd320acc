"""MLQA-R evaluation on a hand-built three-language fixture with a fake encoder, plus the subset."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from engine.data.loaders import Candidate, LangSet, Question, load_lareqa
from engine.errors import ConfigError
from engine.evaluate import distinct_texts, evaluate, select_subset

# Candidate sentences are one-hot vectors (one dimension each); a question's vector is the row of
# scores it gives the 7 sentences, in the order E0 E1 E2 D0 D1 A0 A1. Evaluation L2-normalises,
# which rescales a row but keeps its ranking, so every rank below can be read off these rows.
CANDS = ["E0", "E1", "E2", "D0", "D1", "A0", "A1"]
QUERY_SCORES = {
    "Qa-en": [0.5, 0.9, 0.1, 0.3, 0.7, 0.2, 0.05],
    "Qb-en": [0.2, 0.3, 0.8, 0.5, 0.1, 0.4, 0.6],
    "Qa-de": [0.9, 0.1, 0.2, 0.6, 0.4, 0.3, 0.7],
    "Qb-ar": [0.8, 0.7, 0.6, 0.5, 0.4, 0.2, 0.9],
}


class FakeEncoder:
    """Exposes `embed` like engine.models.encoders.Encoder and records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def embed(
        self,
        texts: Sequence[str],
        kind: str,
        batch_size: int = 64,
        max_length: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        self.calls.append((kind, list(texts)))
        if kind == "query":
            rows = [QUERY_SCORES[t] for t in texts]
        else:
            rows = [np.eye(len(CANDS))[CANDS.index(t)] for t in texts]
        if progress is not None:
            progress(len(texts), len(texts))
        return np.array(rows, dtype=np.float32).reshape(len(texts), len(CANDS))


def _set(lang: str, questions: list[tuple[str, str]], cands: list[str],
         answer: dict[str, int]) -> LangSet:
    return LangSet(
        lang,
        tuple(Question(qid, lang, text) for qid, text in questions),
        tuple(Candidate(lang, 0, i, text, " ".join(cands)) for i, text in enumerate(cands)),
        MappingProxyType(answer),
    )


@pytest.fixture()
def sets() -> dict[str, LangSet]:
    # Question id "a" exists in en and de, "b" in en and ar (MLQA is only partly parallel).
    return {
        "en": _set("en", [("a", "Qa-en"), ("b", "Qb-en")], ["E0", "E1", "E2"], {"a": 0, "b": 2}),
        "de": _set("de", [("a", "Qa-de")], ["D0", "D1"], {"a": 1}),
        "ar": _set("ar", [("b", "Qb-ar")], ["A0", "A1"], {"b": 0}),
    }


L3, L4, L5, L8 = math.log2(3), math.log2(4), math.log2(5), math.log2(8)
IDEAL2 = 1 + 1 / L3  # ideal DCG with two relevant sentences


def test_mo_hand_counted(sets: dict[str, LangSet]) -> None:
    m = evaluate(FakeEncoder(), sets, settings=("mo",), prefix="t")
    # en: Qa-en ranks E0 (.5) 2nd after E1 (.9) -> AP 1/2; Qb-en ranks E2 (.8) 1st -> AP 1.
    assert m["t/mo/en/map"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["t/mo/en/r@1"] == pytest.approx(0.5)
    assert m["t/mo/en/mrr@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["t/mo/en/ndcg@10"] == pytest.approx((1 / L3 + 1) / 2)
    assert m["t/mo/de/map"] == pytest.approx(1 / 2)  # D1 (.4) after D0 (.6)
    assert m["t/mo/ar/map"] == pytest.approx(1 / 2)  # A0 (.2) after A1 (.9)
    assert m["t/macro/mo/map"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert m["t/group/high/mo/map"] == pytest.approx((0.75 + 0.5) / 2)  # en, de (es/vi/zh absent)
    assert m["t/group/low/mo/map"] == pytest.approx(0.5)  # ar (hi absent)
    assert m["t/mo/en/skipped"] == 0.0
    assert not any("/cr/" in k or "/mul/" in k for k in m)
    assert m["t/n_questions"] == 4 and m["t/n_candidates"] == 7


def test_cr_pairs_skips_and_macro(sets: dict[str, LangSet]) -> None:
    m = evaluate(FakeEncoder(), sets, settings=("cr",), prefix="t")
    # en->de: only Qa-en has a de answer (D1 .7 > D0 .3 -> rank 1); Qb-en skipped.
    assert m["t/cr/en->de/map"] == 1.0 and m["t/cr/en->de/skipped"] == 1.0
    # en->ar: only Qb-en; A0 (.4) after A1 (.6) -> AP 1/2; Qa-en skipped.
    assert m["t/cr/en->ar/map"] == pytest.approx(0.5) and m["t/cr/en->ar/skipped"] == 1.0
    assert m["t/cr/en->ar/ndcg@10"] == pytest.approx(1 / L3)
    # de->en: E0 (.9) first -> 1.  de->ar: no answer in ar -> no metrics, 1 skipped.
    assert m["t/cr/de->en/map"] == 1.0
    assert "t/cr/de->ar/map" not in m and m["t/cr/de->ar/skipped"] == 1.0
    # ar->en: E2 (.6) after E0 (.8), E1 (.7) -> rank 3.
    assert m["t/cr/ar->en/map"] == pytest.approx(1 / 3)
    assert m["t/cr/ar->en/mrr@10"] == pytest.approx(1 / 3)
    assert m["t/cr/ar->en/ndcg@10"] == pytest.approx(1 / L4)
    assert m["t/cr/ar->de/skipped"] == 1.0
    # Per query language: macro mean over the pairs that have queries.
    assert m["t/cr/en/map"] == pytest.approx((1 + 0.5) / 2)
    assert m["t/cr/de/map"] == 1.0
    assert m["t/cr/ar/map"] == pytest.approx(1 / 3)
    assert m["t/macro/cr/map"] == pytest.approx((0.75 + 1 + 1 / 3) / 3)
    assert not any("/mo/" in k for k in m)


def test_mul_hand_counted(sets: dict[str, LangSet]) -> None:
    m = evaluate(FakeEncoder(), sets, settings=("mul",), prefix="t")
    # Qa-en, relevant E0 + D1: E1 .9, D1 .7, E0 .5 ... -> ranks 2, 3: AP (1/2 + 2/3)/2 = 7/12.
    # Qb-en, relevant E2 + A0: E2 .8, A1 .6, D0 .5, A0 .4 -> ranks 1, 4: AP (1 + 2/4)/2 = 3/4.
    assert m["t/mul/en/map"] == pytest.approx((7 / 12 + 3 / 4) / 2)
    assert m["t/mul/en/r@1"] == pytest.approx((0 + 1 / 2) / 2)  # recall of the 2 relevant at 1
    assert m["t/mul/en/ndcg@10"] == pytest.approx(((1 / L3 + 1 / L4) / IDEAL2
                                                   + (1 + 1 / L5) / IDEAL2) / 2)
    assert m["t/mul/en/rank_distance"] == pytest.approx((1 + 3) / 2)
    # Qa-de, relevant E0 + D1: E0 .9, A1 .7, D0 .6, D1 .4 -> ranks 1, 4.
    assert m["t/mul/de/map"] == pytest.approx(3 / 4)
    assert m["t/mul/de/rank_distance"] == 3.0
    # Qb-ar, relevant E2 + A0: A1 .9, E0 .8, E1 .7, E2 .6, D0 .5, D1 .4, A0 .2 -> ranks 4, 7.
    assert m["t/mul/ar/map"] == pytest.approx((1 / 4 + 2 / 7) / 2)
    assert m["t/mul/ar/mrr@10"] == pytest.approx(1 / 4)
    assert m["t/mul/ar/ndcg@10"] == pytest.approx((1 / L5 + 1 / L8) / IDEAL2)
    assert m["t/mul/ar/rank_distance"] == 3.0
    assert m["t/macro/mul/map"] == pytest.approx(((7 / 12 + 3 / 4) / 2 + 3 / 4 + 15 / 56) / 3)
    assert m["t/macro/mul/rank_distance"] == pytest.approx((2 + 3 + 3) / 3)
    assert m["t/group/low/mul/rank_distance"] == 3.0
    assert m["t/group/high/mul/rank_distance"] == pytest.approx((2 + 3) / 2)
    assert all(m[f"t/mul/{lang}/skipped"] == 0.0 for lang in sets)


def test_groups_are_configurable(sets: dict[str, LangSet]) -> None:
    m = evaluate(FakeEncoder(), sets, settings=("mo",), groups={"g": ("de", "ar"), "none": ("hi",)},
                 prefix="t")
    assert m["t/group/g/mo/map"] == pytest.approx(0.5)
    assert not any("group/none" in k or "group/high" in k for k in m)


def test_each_distinct_text_is_encoded_once(sets: dict[str, LangSet]) -> None:
    enc = FakeEncoder()
    ticks: list[tuple[int, int]] = []
    evaluate(enc, sets, progress=lambda done, total: ticks.append((done, total)))
    # All three settings from exactly two embed calls: 4 questions, 7 sentences, each once.
    assert [kind for kind, _ in enc.calls] == ["query", "passage"]
    assert sorted(enc.calls[0][1]) == sorted(QUERY_SCORES)
    assert sorted(enc.calls[1][1]) == sorted(CANDS)
    assert ticks[-1] == (11, 11)


def test_duplicate_texts_are_deduped_by_kind() -> None:
    # The same string as a question in two languages and as a sentence: one query + one passage.
    s1 = _set("en", [("a", "Same")], ["Same", "E1"], {"a": 0})
    s2 = _set("de", [("a", "Same")], ["E1"], {"a": 0})
    q_texts, p_texts, q_rows, c_rows = distinct_texts({"en": s1, "de": s2})
    assert q_texts == ("Same",) and p_texts == ("Same", "E1")
    assert q_rows["de"].tolist() == [0] and c_rows["de"].tolist() == [1]


def test_rejects_unknown_setting(sets: dict[str, LangSet]) -> None:
    with pytest.raises(ConfigError, match="settings"):
        evaluate(FakeEncoder(), sets, settings=("mo", "xx"))


def test_subset_on_fixture_keeps_relevance(sets: dict[str, LangSet]) -> None:
    sub = select_subset(sets, 1, seed=0)
    assert all(len(s.questions) == 1 for s in sub.values())
    for lang, s in sub.items():
        for qid, idx in s.answer.items():  # answers still point at the same sentence text
            assert s.candidates[idx].text == sets[lang].candidates[sets[lang].answer[qid]].text
    m = evaluate(FakeEncoder(), sets, subset_questions=1, subset_seed=0, prefix="q")
    assert m["q/n_questions"] == 3.0


def test_subset_of_mlqa_is_fixed_and_complete(data_dir: Path) -> None:
    full = load_lareqa("mlqa-r", data_dir=data_dir)
    sub = select_subset(full, 20, seed=0)
    again = select_subset(full, 20, seed=0)
    other = select_subset(full, 20, seed=1)
    assert {k: [q.id for q in s.questions] for k, s in sub.items()} == {
        k: [q.id for q in s.questions] for k, s in again.items()
    }
    assert [q.id for q in sub["en"].questions] != [q.id for q in other["en"].questions]
    selected = {q.id for s in sub.values() for q in s.questions}
    for lang, s in sub.items():
        assert len(s.questions) == 20
        # Every selected id with an answer in this language keeps it, pointing at the same text.
        expected = {qid for qid in selected if qid in full[lang].answer}
        assert set(s.answer) == expected
        for qid in expected:
            whole = full[lang]
            assert s.candidates[s.answer[qid]].text == whole.candidates[whole.answer[qid]].text
        # Whole paragraphs are kept, and there are more of them than answer paragraphs
        # (distractors).
        paras = {c.paragraph for c in s.candidates}
        answer_paras = {s.candidates[i].paragraph for i in s.answer.values()}
        assert paras > answer_paras
        n_sents = sum(1 for c in full[lang].candidates if c.paragraph in paras)
        assert len(s.candidates) == n_sents
    # Shared shuffled order: languages pick overlapping ids, so the union stays small.
    assert len(selected) < 7 * 20 * 0.8
    assert select_subset(full, 0, seed=0) == full


def test_subset_sizes_are_unchanged(data_dir: Path) -> None:
    # The documented sizes (select_subset's docstring, README): what every stored quick curve used.
    full = load_lareqa("mlqa-r", data_dir=data_dir)
    for n, (questions, candidates) in {5: (35, 384), 10: (70, 751), 20: (140, 1330)}.items():
        sub = select_subset(full, n, seed=0)
        assert (sum(len(s.questions) for s in sub.values()),
                sum(len(s.candidates) for s in sub.values())) == \
            (questions, candidates)


# --------------------------------------------------------------------------- the dev split


def test_xquad_r_dev_sets_hold_exactly_the_held_out_questions(data_dir: Path) -> None:
    from engine.data.loaders import clean_training_text, load_parallel_qa
    from engine.data.splits import dev_sets, split_dev

    langs = ("en", "de", "es", "zh")
    train, dev = split_dev(load_parallel_qa("xquad-r", langs, data_dir), 30)
    sets = dev_sets(dev, langs, train_source="xquad-r", train_file="", data_dir=data_dir)
    xq = load_lareqa("xquad-r", langs, data_dir)
    dev_ids = {r.id for r in dev}
    assert list(sets) == list(langs)
    for lang, s in sets.items():
        assert {q.id for q in s.questions} == dev_ids  # every dev question, in every language
        assert set(s.answer) == dev_ids
        # each answer is the same sentence as in XQuAD-R, cleaned as training text
        for qid in dev_ids:
            raw = xq[lang].candidates[xq[lang].answer[qid]].text
            assert s.candidates[s.answer[qid]].text == clean_training_text(raw, lang)
        # Whole paragraphs: the answer paragraphs plus max(1, 30 // 4) = 7 distractors.
        answer_paras = {s.candidates[i].paragraph for i in s.answer.values()}
        assert len({c.paragraph for c in s.candidates} - answer_paras) == 7
    assert not dev_ids & {r.id for r in train}
    assert dev_sets([], langs, train_source="xquad-r", train_file="", data_dir=data_dir) == {}


def test_parallel_sets_score_each_question_against_the_records_answers() -> None:
    from engine.data.loaders import ParallelQA
    from engine.data.splits import parallel_sets

    def rec(qid: str, answer: str) -> ParallelQA:
        return ParallelQA(qid, MappingProxyType({"en": f"{qid}?", "de": f"{qid} de?"}),
                          MappingProxyType({"en": answer, "de": answer + " (de)"}))

    sets = parallel_sets([rec("a", "A."), rec("b", "B."), rec("c", "A.")], ("en", "de"))
    en = sets["en"]
    assert [c.text for c in en.candidates] == ["A.", "B."]  # equal answers: one candidate
    assert dict(en.answer) == {"a": 0, "b": 1, "c": 0}
    assert [q.text for q in sets["de"].questions] == ["a de?", "b de?", "c de?"]
    m = evaluate(PerfectEncoder(sets), sets, prefix="dev")
    assert m["dev/macro/mo/map"] == 1.0 and m["dev/macro/mul/map"] == 1.0


class PerfectEncoder:
    """Embeds a question as the sum of its answers' one-hot vectors (in every language): every
    ranking is perfect, so each mAP is 1."""

    def __init__(self, sets: dict[str, LangSet]) -> None:
        self.dims = {c.text: i
                     for i, c in enumerate(c for s in sets.values() for c in s.candidates)}
        self.answers = {q.text: [t.candidates[t.answer[q.id]].text for t in sets.values()
                                 if q.id in t.answer]
                        for s in sets.values() for q in s.questions}

    def embed(self, texts: Sequence[str], kind: str, batch_size: int = 64,
              max_length: int | None = None,
              progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        eye = np.eye(len(self.dims), dtype=np.float32)
        if kind == "query":
            return np.array([sum(eye[self.dims[a]] for a in self.answers[t]) for t in texts])
        return np.array([eye[self.dims[t]] for t in texts])


# --------------------------------------------------------------------------- `optical eval`


def _cli() -> typer.Typer:
    """A root group like optical_tui.cli's, with only `eval` registered (independent of the
    list)."""
    from optical_tui.cli import OpticalGroup
    from optical_tui.commands import eval as eval_cmd

    app = typer.Typer(cls=OpticalGroup)

    @app.callback()
    def _root() -> None:  # a callback keeps `eval` a subcommand
        pass

    eval_cmd.register(app)
    return app


def test_cli_rejects_unknown_language_in_one_line() -> None:
    result = CliRunner().invoke(_cli(), ["eval", "--langs", "en,xx"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: --langs: xx invalid; valid: ar,de,en,es,hi,vi,zh"
    ]


def test_cli_tiny_model_json_and_table(data_dir: Path, tiny_encoder: object) -> None:
    # tiny_encoder builds (and caches) embedded:tiny-random once, so the CLI only loads it.
    args = ["eval", "--model", "embedded:tiny-random", "--subset", "5", "--device", "cpu",
            "--batch-size", "32"]
    result = CliRunner().invoke(_cli(), [*args, "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)
    assert m["eval/n_questions"] == 35.0  # 5 per language x 7
    for setting in ("mo", "cr", "mul"):
        assert 0.0 < m[f"eval/macro/{setting}/map"] <= 1.0
    assert m["eval/macro/mul/rank_distance"] >= 0.0
    assert "eval/cr/ar->de/skipped" in m and "eval/group/low/mo/map" in m

    table = CliRunner().invoke(_cli(), [*args, "--langs", "en,de,hi", "--settings", "mo,mul"])
    assert table.exit_code == 0, table.stderr
    out = table.stdout
    assert "Mo mAP" in out and "Mul mAP" in out and "Cr mAP" not in out
    assert "macro" in out and "high (en, de)" in out and "low (hi)" in out
    assert "rank dist." in out

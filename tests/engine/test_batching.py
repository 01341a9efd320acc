"""Hybrid sampler: ratio frequencies, exact `within` counts, no duplicate ids, bit-for-bit
resume."""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.batching import BitextSampler, HybridSampler, ot_pairs_from_batch, split_holdout
from engine.errors import ConfigError

LANGS = ("en", "de", "es", "zh")
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class Rec:
    id: str
    question: dict
    answer: dict


def records(n: int = 60, langs=LANGS) -> list[Rec]:
    return [Rec(f"q{i}", {lg: f"Q{i}-{lg}" for lg in langs}, {lg: f"A{i}-{lg}" for lg in langs})
            for i in range(n)]


def check_row(row) -> None:
    # Texts match their declared languages and the id: the row is a real positive pair.
    assert row.question == f"Q{row.id[1:]}-{row.q_lang}"
    assert row.answer == f"A{row.id[1:]}-{row.a_lang}"
    assert row.is_cross == (row.q_lang != row.a_lang)


@pytest.mark.parametrize("ratio", ["1:1", "1:3", "3:1", "0.4:0.6"])
def test_batch_mixing_frequency_matches_ratio(ratio: str) -> None:
    s = HybridSampler(records(), LANGS, ratio, batch_size=8, mixing="batch", seed=123)
    n = 4000
    mono = 0
    for _ in range(n):
        b = s.next_batch()
        frac = b.cross_fraction
        assert frac in (0.0, 1.0)  # wholly one type
        mono += frac == 0.0
        if frac == 0.0:
            assert len({(r.q_lang, r.a_lang) for r in b.rows}) == 1  # one language throughout
    p = s.ratio.mono_fraction
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(mono / n - p) < 4 * sd  # binomial, 4 standard deviations


def test_mono_language_uniform_and_cross_pairs_cover_all() -> None:
    s = HybridSampler(records(), LANGS, "1:1", batch_size=4, mixing="batch", seed=7)
    mono_langs: dict[str, int] = {}
    pairs: set[tuple[str, str]] = set()
    for _ in range(4000):
        b = s.next_batch()
        for r in b.rows:
            check_row(r)
            if r.is_cross:
                pairs.add((r.q_lang, r.a_lang))
        if b.cross_fraction == 0.0:
            mono_langs[b.rows[0].q_lang] = mono_langs.get(b.rows[0].q_lang, 0) + 1
    total = sum(mono_langs.values())
    assert set(mono_langs) == set(LANGS)
    for count in mono_langs.values():
        assert abs(count / total - 0.25) < 0.04
    assert pairs == {(x, y) for x in LANGS for y in LANGS if x != y}


@pytest.mark.parametrize(("ratio", "bsz", "n_mono"),
                         [("1:1", 8, 4), ("1:3", 8, 2), ("1:2", 10, 3), ("1:0", 6, 6),
                          ("0:1", 6, 0)])
def test_within_counts_exact(ratio: str, bsz: int, n_mono: int) -> None:
    s = HybridSampler(records(), LANGS, ratio, batch_size=bsz, mixing="within", seed=1)
    for _ in range(200):
        b = s.next_batch()
        assert sum(not r.is_cross for r in b.rows) == n_mono
        assert b.cross_fraction == pytest.approx((bsz - n_mono) / bsz)


@pytest.mark.parametrize("mixing", ["batch", "within"])
def test_no_duplicate_ids_in_a_batch_and_full_coverage(mixing: str) -> None:
    # 60 records, batch 7: permutations do not divide evenly, so epoch boundaries are exercised.
    s = HybridSampler(records(60), LANGS, "1:1", batch_size=7, mixing=mixing, seed=3)
    seen: set[str] = set()
    for _ in range(300):
        ids = [r.id for r in s.next_batch().rows]
        assert len(ids) == len(set(ids))
        seen.update(ids)
    assert len(seen) == 60


def test_seeded_and_resumable_bit_for_bit() -> None:
    a = HybridSampler(records(), LANGS, "1:2", batch_size=5, seed=11)
    b = HybridSampler(records(), LANGS, "1:2", batch_size=5, seed=11)
    c = HybridSampler(records(), LANGS, "1:2", batch_size=5, seed=12)
    first = [a.next_batch() for _ in range(30)]
    assert first == [b.next_batch() for _ in range(30)]
    assert first != [c.next_batch() for _ in range(30)]
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(40)]
    fresh = HybridSampler(records(), LANGS, "1:2", batch_size=5, seed=999)
    fresh.load_state_dict(state)
    assert [fresh.next_batch() for _ in range(40)] == expected


def test_training_languages_respected_and_records_missing_a_language_dropped() -> None:
    recs = records(30) + [Rec("partial", {"en": "x"}, {"en": "y"})]
    s = HybridSampler(recs, ("de", "zh"), "1:1", batch_size=4, seed=0)
    assert len(s.records) == 30
    for _ in range(100):
        for r in s.next_batch().rows:
            assert {r.q_lang, r.a_lang} <= {"de", "zh"}


def test_invalid_setups_rejected() -> None:
    with pytest.raises(ConfigError):
        HybridSampler(records(5), LANGS, "1:1", batch_size=6)
    with pytest.raises(ConfigError):
        HybridSampler(records(), ("en",), "1:1", batch_size=4)
    with pytest.raises(ConfigError):
        HybridSampler(records(), LANGS, "0:0", batch_size=4)
    HybridSampler(records(), ("en",), "1:0", batch_size=4)  # mono only needs one language


def test_ot_pairs_use_teacher_language_twins() -> None:
    recs = records(20)
    s = HybridSampler(recs, LANGS, "0:1", batch_size=6, seed=5)
    batch = s.next_batch()
    by_id = {r.id: r for r in recs}
    pairs = ot_pairs_from_batch(batch, by_id, "en", n=100)
    expected = sum((r.q_lang != "en") + (r.a_lang != "en") for r in batch.rows)
    assert len(pairs) == expected
    for p in pairs:
        row = batch.rows[p.row]
        student_text = row.question if p.side == "question" else row.answer
        assert student_text.endswith(row.q_lang if p.side == "question" else row.a_lang)
        assert p.teacher_text == student_text.rsplit("-", 1)[0] + "-en"
    assert len(ot_pairs_from_batch(batch, by_id, "en", n=3)) == 3


def test_bitext_sampler_and_holdout() -> None:
    bt = BitextSampler(list(range(50)), n=8, seed=2)
    draws = [bt.next() for _ in range(5)]
    assert all(len(set(d)) == 8 for d in draws)
    state = bt.state_dict()
    nxt = bt.next()
    bt2 = BitextSampler(list(range(50)), n=8, seed=0)
    bt2.load_state_dict(state)
    assert bt2.next() == nxt
    train, held = split_holdout(records(40), 10)
    assert len(held) == 10 and len(train) == 30
    assert not {r.id for r in train} & {r.id for r in held}
    assert {r.id for r in split_holdout(list(reversed(records(40))), 10)[1]} == {r.id for r in held}


# --------------------------------------------------------------------------- issue 18


@dataclass(frozen=True)
class GRec:
    id: str
    question: dict
    answer: dict
    group: str
    negatives: dict


def grouped_records(n: int = 60, group_size: int = 3) -> list[GRec]:
    """Records whose answers repeat in groups of `group_size` (the same sentence for each), with
    three paragraph sentences per language as hard-negative candidates, one of which is another
    record's answer."""
    out = []
    for i in range(n):
        g = i // group_size
        negs = {lg: [f"N{g}a-{lg}", f"N{g}b-{lg}", f"A{(g + 1) * group_size}-{lg}"] for lg in LANGS}
        out.append(GRec(f"q{i}", {lg: f"Q{i}-{lg}" for lg in LANGS},
                        {lg: f"A{g * group_size}-{lg}" for lg in LANGS}, f"g{g}", negs))
    return out


@pytest.mark.parametrize("mixing", ["batch", "within"])
@pytest.mark.parametrize("cross_pairs", ["row", "batch"])
def test_no_two_rows_of_a_batch_share_an_answer(mixing: str, cross_pairs: str) -> None:
    recs = grouped_records()
    s = HybridSampler(recs, LANGS, "1:1", batch_size=16, mixing=mixing, seed=3,
                      cross_pairs=cross_pairs)
    group = {r.id: r.group for r in recs}
    seen: set[str] = set()
    for _ in range(300):
        b = s.next_batch()
        groups = [group[r.id] for r in b.rows]
        assert len(set(groups)) == len(groups) == 16
        seen.update(r.id for r in b.rows)
    assert seen == {r.id for r in recs}  # deferring a duplicate never starves a record


def test_batch_size_above_the_distinct_answers_is_refused() -> None:
    with pytest.raises(ConfigError, match="20 distinct answer sentences"):
        HybridSampler(grouped_records(60, 3), LANGS, "1:1", batch_size=21)


def test_cross_pairs_batch_draws_one_language_pair_per_batch() -> None:
    s = HybridSampler(records(), LANGS, "0:1", batch_size=8, seed=1, cross_pairs="batch")
    pairs = set()
    for _ in range(300):
        b = s.next_batch()
        assert len({(r.q_lang, r.a_lang) for r in b.rows}) == 1
        pairs.add((b.rows[0].q_lang, b.rows[0].a_lang))
    assert len(pairs) == 12  # every ordered pair of 4 languages still occurs
    within = HybridSampler(records(), LANGS, "1:1", batch_size=8, mixing="within", seed=1,
                           cross_pairs="batch")
    b = within.next_batch()
    assert len({(r.q_lang, r.a_lang) for r in b.rows if r.is_cross}) == 1
    assert sum(r.is_cross for r in b.rows) == 4
    row_mode = HybridSampler(records(), LANGS, "0:1", batch_size=8, seed=1)
    assert any(len({(r.q_lang, r.a_lang) for r in row_mode.next_batch().rows}) > 1
               for _ in range(5))


def test_hard_negatives_right_paragraph_and_language_never_a_positive() -> None:
    recs = grouped_records()
    by_id = {r.id: r for r in recs}
    s = HybridSampler(recs, LANGS, "1:1", batch_size=12, seed=5, hard_negatives=2)
    hit_other_positive_candidate = False
    for _ in range(200):
        b = s.next_batch()
        positives = {r.answer for r in b.rows}
        assert b.negatives == [n for r in b.rows for n in r.hard_negatives]
        for r in b.rows:
            pool = by_id[r.id].negatives[r.a_lang]
            assert set(r.hard_negatives) <= set(pool)  # own paragraph, the answer's language
            assert all(n.endswith(f"-{r.a_lang}") for n in r.hard_negatives)
            assert not set(r.hard_negatives) & positives  # never any row's positive
            assert r.answer not in r.hard_negatives
            expected = len([t for t in pool if t not in positives])
            assert len(r.hard_negatives) == min(2, expected)
            hit_other_positive_candidate |= any(t in positives for t in pool)
    assert hit_other_positive_candidate  # the exclusion was exercised


def test_hard_negatives_off_keeps_rows_bare() -> None:
    s = HybridSampler(grouped_records(), LANGS, "1:1", batch_size=8, seed=5)
    assert all(r.hard_negatives == () for _ in range(20) for r in s.next_batch().rows)


@pytest.mark.parametrize("mixing", ["batch", "within"])
def test_resume_draws_the_same_batches_with_groups_and_negatives(mixing: str) -> None:
    kw = {"batch_size": 10, "mixing": mixing, "seed": 11, "cross_pairs": "batch",
          "hard_negatives": 1}
    full = HybridSampler(grouped_records(), LANGS, "1:1", **kw)
    expected = [full.next_batch() for _ in range(40)]
    first = HybridSampler(grouped_records(), LANGS, "1:1", **kw)
    head = [first.next_batch() for _ in range(17)]
    state = pickle.loads(pickle.dumps(first.state_dict()))  # as a checkpoint stores it
    second = HybridSampler(grouped_records(), LANGS, "1:1", **kw)
    second.load_state_dict(state)
    assert head + [second.next_batch() for _ in range(23)] == expected


def test_real_paper_config_has_no_false_negatives(data_dir) -> None:
    from engine.batch_preview import preview_batches
    from engine.config import load_config

    for ratio in ("1:0", "1:1", "0:1"):
        for cross_pairs in ("row", "batch"):
            cfg = load_config(CONFIGS / "paper.toml",
                              [f"train.ratio={ratio}", f"train.cross_pairs={cross_pairs}",
                                                       "train.hard_negatives=1",
                               f"data.data_dir={data_dir}"])
            totals = preview_batches(cfg, 60)["totals"]
            assert totals["false_negatives"] == 0 and totals["rows"] == 6000
            assert totals["hard_negatives"] > 5000


def test_false_negative_counter_finds_shared_answers() -> None:
    # The preview's counter is independent of the sampler's groups: it sees a shared answer.
    from engine.batch_preview import false_negatives
    from engine.batching import Batch, Row

    recs = {r.id: r for r in grouped_records()}
    rows = (Row("Q0-en", "A0-de", "en", "de", "q0", True),
            Row("Q1-de", "A0-es", "de", "es", "q1", True),
            Row("Q3-en", "A3-en", "en", "en", "q3", False))
    assert false_negatives(Batch(rows), recs, LANGS) == 2

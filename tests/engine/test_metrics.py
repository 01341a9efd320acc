"""Ranking metrics: hand-counted cases, the tie policy, and cross-checks against
sklearn/pytrec_eval."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytrec_eval
from sklearn.metrics import average_precision_score

from engine.metrics import (
    average_precision,
    embedding_metrics,
    mrr_at_k,
    ndcg_at_k,
    rank_distance,
    ranking_metrics,
    recall_at_k,
)

L2, L3, L4, L5 = math.log2(2), math.log2(3), math.log2(4), math.log2(5)


def test_two_relevant_hand_counted() -> None:
    # Ranking by score: c0 .9, c1 .8, c2 .7, c3 .6, c4 .5; relevant c1 (rank 2) and c3 (rank 4).
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    rel = np.array([[False, True, False, True, False]])
    m = ranking_metrics(scores, rel)
    # precisions at the hits: 1/2, 2/4 -> 0.5
    assert m["map"][0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert m["r@1"][0] == 0.0  # nothing relevant at rank 1
    assert m["r@10"][0] == 1.0  # both relevant in the top 10
    assert m["mrr@10"][0] == pytest.approx(1 / 2)  # first hit at rank 2
    # DCG = 1/log2(3) + 1/log2(5) = 1.0616; ideal (2 relevant) = 1/log2(2) + 1/log2(3) = 1.6309 ->
    # 0.6509
    assert m["ndcg@10"][0] == pytest.approx((1 / L3 + 1 / L5) / (1 / L2 + 1 / L3))
    assert m["rank_distance"][0] == 4 - 2


def test_single_relevant_outside_top10() -> None:
    # 15 candidates in descending order; the only relevant one is the 12th.
    scores = np.linspace(1.0, 0.0, 15)[None, :]
    rel = np.zeros((1, 15), dtype=bool)
    rel[0, 11] = True
    m = ranking_metrics(scores, rel)
    assert m["map"][0] == pytest.approx(1 / 12)
    assert (m["r@1"][0], m["r@10"][0], m["mrr@10"][0], m["ndcg@10"][0]) == (0.0, 0.0, 0.0, 0.0)
    assert m["rank_distance"][0] == 0.0  # one relevant item
    assert recall_at_k(scores, rel, 12)[0] == 1.0  # the cutoff is a parameter
    assert mrr_at_k(scores, rel, 12)[0] == pytest.approx(1 / 12)


def test_perfect_and_many_relevant_ndcg_ideal_is_capped_at_k() -> None:
    # 12 relevant candidates, all ranked first: ideal DCG uses min(10, 12) = 10 positions -> nDCG 1.
    scores = np.linspace(1.0, 0.0, 20)[None, :]
    rel = np.zeros((1, 20), dtype=bool)
    rel[0, :12] = True
    m = ranking_metrics(scores, rel)
    assert m["map"][0] == pytest.approx(1.0)
    assert m["ndcg@10"][0] == pytest.approx(1.0)
    assert m["r@10"][0] == pytest.approx(10 / 12)  # recall: 10 of the 12 relevant in the top 10
    assert m["r@1"][0] == pytest.approx(1 / 12)
    assert m["rank_distance"][0] == 12 - 1


def test_ties_are_pessimistic_for_ranks_and_sklearn_for_ap() -> None:
    # c0, c1, c2 tie at 0.5; only c1 relevant. sklearn: one threshold with precision 1/3 -> AP 1/3.
    # Pessimistic permutation: c0, c2 (non-relevant) first, then c1 at rank 3.
    scores = np.array([[0.5, 0.5, 0.5, 0.1]])
    rel = np.array([[False, True, False, False]])
    m = ranking_metrics(scores, rel)
    assert m["map"][0] == pytest.approx(1 / 3)
    assert m["map"][0] == pytest.approx(average_precision_score(rel[0], scores[0]))
    assert m["r@1"][0] == 0.0
    assert m["mrr@10"][0] == pytest.approx(1 / 3)
    assert m["ndcg@10"][0] == pytest.approx(1 / L4)  # rank 3 -> 1/log2(4) = 0.5; ideal 1


def test_ties_between_relevant_items_follow_index_order() -> None:
    # All three tie; c0 and c2 relevant. sklearn: precision 2/3 at the only threshold -> AP 2/3.
    # Pessimistic: c1 (non-relevant) rank 1, then c0 rank 2, c2 rank 3 -> distance 1, MRR 1/2.
    scores = np.array([[0.5, 0.5, 0.5]])
    rel = np.array([[True, False, True]])
    m = ranking_metrics(scores, rel)
    assert m["map"][0] == pytest.approx(2 / 3)
    assert m["rank_distance"][0] == 1.0
    assert m["mrr@10"][0] == pytest.approx(1 / 2)
    # DCG = 1/log2(3) + 1/log2(4); ideal = 1 + 1/log2(3)
    assert m["ndcg@10"][0] == pytest.approx((1 / L3 + 1 / L4) / (1 + 1 / L3))


def test_constant_scorer_gets_the_worst_rank() -> None:
    scores = np.zeros((1, 8))
    rel = np.zeros((1, 8), dtype=bool)
    rel[0, 0] = True
    assert mrr_at_k(scores, rel, 10)[0] == pytest.approx(1 / 8)  # rank 8 of 8
    assert average_precision(scores, rel)[0] == pytest.approx(1 / 8)


def test_single_metric_helpers_match_the_combined_call() -> None:
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((6, 30))
    rel = rng.random((6, 30)) < 0.2
    rel[:, 0] = True
    m = ranking_metrics(scores, rel)
    np.testing.assert_allclose(average_precision(scores, rel), m["map"])
    np.testing.assert_allclose(recall_at_k(scores, rel, 10), m["r@10"])
    np.testing.assert_allclose(mrr_at_k(scores, rel, 10), m["mrr@10"])
    np.testing.assert_allclose(ndcg_at_k(scores, rel, 10), m["ndcg@10"])
    np.testing.assert_allclose(rank_distance(scores, rel), m["rank_distance"])


def test_rejects_queries_without_relevant_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match="at least one relevant"):
        ranking_metrics(np.zeros((2, 3)), np.array([[True, False, False], [False] * 3]))
    with pytest.raises(ValueError, match="shapes"):
        ranking_metrics(np.zeros((2, 3)), np.ones((2, 4), dtype=bool))


def _random_case(seed: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q, n = int(rng.integers(1, 12)), int(rng.integers(2, 60))
    scores = rng.integers(0, 4, (q, n)).astype(float) if ties else rng.standard_normal((q, n))
    rel = rng.random((q, n)) < rng.uniform(0.02, 0.4)
    rel[np.arange(q), rng.integers(0, n, q)] = True  # at least one relevant per query
    return scores, rel


@pytest.mark.parametrize("ties", [False, True])
def test_ap_agrees_with_sklearn(ties: bool) -> None:
    for seed in range(60):
        scores, rel = _random_case(seed, ties)
        ours = average_precision(scores, rel)
        ref = [average_precision_score(rel[i], scores[i]) for i in range(len(scores))]
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_rank_metrics_agree_with_pytrec_eval() -> None:
    measures = {"recall.1", "recall.10", "ndcg_cut.10", "recip_rank", "map"}
    for seed in range(60):
        scores, rel = _random_case(seed, ties=False)
        m = ranking_metrics(scores, rel)
        qrels = {f"q{i}": {f"d{j}": 1 for j in np.flatnonzero(rel[i])} for i in range(len(scores))}
        run = {f"q{i}": {f"d{j}": float(s) for j, s in enumerate(row)}
               for i, row in enumerate(scores)}
        ref = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
        # MRR@10: trec_eval's recip_rank has no cutoff, so give it only each query's top 10.
        top10 = {q: dict(sorted(d.items(), key=lambda kv: -kv[1])[:10]) for q, d in run.items()}
        ref10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
        for i in range(len(scores)):
            r = ref[f"q{i}"]
            assert m["r@1"][i] == pytest.approx(r["recall_1"])
            assert m["r@10"][i] == pytest.approx(r["recall_10"])
            assert m["ndcg@10"][i] == pytest.approx(r["ndcg_cut_10"])
            assert m["map"][i] == pytest.approx(r["map"])
            assert m["mrr@10"][i] == pytest.approx(ref10[f"q{i}"]["recip_rank"])


def test_chunking_does_not_change_results() -> None:
    scores, rel = _random_case(7, ties=True)
    whole = ranking_metrics(scores, rel)
    tiny = ranking_metrics(scores, rel, chunk_cells=1)  # one query per chunk
    for name in whole:
        np.testing.assert_allclose(tiny[name], whole[name])


def test_embedding_metrics_equal_dense_scoring() -> None:
    rng = np.random.default_rng(11)
    queries, cands = rng.standard_normal((9, 5)), rng.standard_normal((40, 5))
    relevant = [rng.choice(40, size=int(rng.integers(1, 4)), replace=False) for _ in range(9)]
    dense = np.zeros((9, 40), dtype=bool)
    for i, cols in enumerate(relevant):
        dense[i, cols] = True
    ref = ranking_metrics(queries @ cands.T, dense)
    got = embedding_metrics(queries, cands, relevant, chunk_cells=100)  # 2 queries per chunk
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-6)
    assert all(len(v) == 0 for v in embedding_metrics(queries[:0], cands, []).values())

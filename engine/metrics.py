"""Ranking metrics on score matrices (queries × candidates), pure numpy.

Every metric here depends only on where each query's *relevant* candidates land in the ranking,
so instead of sorting whole rows we count, for each relevant candidate, how many candidates
score at least as high (O(queries × candidates × relevant-per-query), no sort). Rows are scored in
chunks so memory stays bounded even for the 4,199 × 20,534 multilingual (Mul) matrix.

Tie policy (deterministic; the same everywhere in the project):
- Average precision follows `sklearn.metrics.average_precision_score` exactly, including ties:
  candidates with equal scores form one threshold, so a relevant candidate i contributes the
  precision (#relevant with score >= s_i) / (#candidates with score >= s_i).
  Without ties this is the textbook AP over the full ranking.
- Rank-based metrics (R@k, MRR@k, nDCG@k, rank distance) use a *pessimistic* permutation:
  inside a group of tied scores, non-relevant candidates are ranked first, then the tied
  relevant ones in candidate-index order. So a tie never helps a model, and a constant scorer
  gets the worst possible rank. The 1-based rank of relevant candidate i is
  1 + #(candidates scoring > s_i) + #(non-relevant scoring == s_i) + #(relevant scoring == s_i
  with a lower index).
Without ties both reduce to the standard definitions used by trec_eval / pytrec_eval, against
which the tests cross-check them (R@k = pytrec `recall_k`, nDCG@k = `ndcg_cut_k`, MRR@k =
`recip_rank` over the top-k).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.metric_keys import ALL_METRICS, MetricName

#: Metric names reported per query (and averaged by engine.evaluate), at the default k = 10.
RANK_METRICS: tuple[str, ...] = ALL_METRICS

#: Bound on the number of score-matrix cells processed at once (~ 2M floats = 8 MB per chunk,
#: plus one boolean comparison matrix of the same shape per relevant column).
_CHUNK_CELLS = 2_000_000


def _relevant_positions(relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate indices of each row's relevant items, padded: (idx [q, m], valid [q, m])."""
    rows, cols = np.nonzero(relevant)  # row-major: cols ascending within each row
    n_rel = relevant.sum(axis=1)
    m = int(n_rel.max()) if n_rel.size else 0
    starts = np.concatenate([[0], np.cumsum(n_rel)[:-1]])
    slot = np.arange(rows.size) - starts[rows]
    idx = np.zeros((relevant.shape[0], max(m, 1)), dtype=np.int64)
    valid = np.zeros_like(idx, dtype=bool)
    idx[rows, slot] = cols
    valid[rows, slot] = True
    return idx, valid


def _chunk_stats(scores: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """Per relevant item: pessimistic 1-based rank, sklearn AP precision, validity mask."""
    idx, valid = _relevant_positions(relevant)
    rel_scores = np.take_along_axis(scores, idx, axis=1)  # [q, m]
    m = idx.shape[1]
    ge_all = np.empty(idx.shape, dtype=np.int64)  # candidates with score >= s_i (incl. itself)
    for j in range(m):  # m = max relevant per query (1 for Mo/Cr, <= #languages for Mul)
        ge_all[:, j] = np.count_nonzero(scores >= rel_scores[:, j : j + 1], axis=1)
    # Pairwise among the (few) relevant items of the same row.
    a = rel_scores[:, :, None]  # item i
    b = rel_scores[:, None, :]  # other relevant item j
    other_valid = valid[:, None, :]
    ge_rel = ((b >= a) & other_valid).sum(axis=2)  # relevant with score >= s_i (incl. itself)
    gt_rel = ((b > a) & other_valid).sum(axis=2)
    earlier = np.tril(np.ones((m, m), dtype=bool), k=-1)[None]  # j < i (index order)
    tied_before = ((b == a) & other_valid & earlier).sum(axis=2)
    nonrel_ge = ge_all - ge_rel  # non-relevant scoring >= s_i: all precede i pessimistically
    ranks = nonrel_ge + gt_rel + tied_before + 1
    precision = ge_rel / ge_all
    return np.where(valid, ranks, 0), np.where(valid, precision, 0.0), valid


def _from_stats(ranks: np.ndarray, precision: np.ndarray, valid: np.ndarray, k: int) -> dict[str,
                                                                                             np.ndarray]:
    n_rel = valid.sum(axis=1)
    best = np.where(valid, ranks, np.iinfo(np.int64).max).min(axis=1)
    worst = np.where(valid, ranks, 0).max(axis=1)
    in_k = valid & (ranks <= k)
    gains = np.where(in_k, 1.0 / np.log2(ranks.clip(min=1) + 1.0), 0.0)
    # Ideal DCG: min(k, #relevant) relevant candidates at ranks 1, 2, ...
    ideal = np.cumsum(1.0 / np.log2(np.arange(1, k + 1) + 1.0))[np.minimum(n_rel, k) - 1]
    return dict(zip(_names(k), (
        precision.sum(axis=1) / n_rel,  # AP
        (valid & (ranks <= 1)).sum(axis=1) / n_rel,  # R@1
        in_k.sum(axis=1) / n_rel,  # R@k
        np.where(best <= k, 1.0 / best, 0.0),  # MRR@k
        gains.sum(axis=1) / ideal,  # nDCG@k
        (worst - best).astype(np.float64),  # rank distance
    ), strict=True))


def _names(k: int) -> tuple[str, ...]:
    """The metric names at cut-off k (k = 10 gives exactly RANK_METRICS)."""
    return (MetricName.MAP, MetricName.R1, f"r@{k}", f"mrr@{k}", f"ndcg@{k}",
            MetricName.RANK_DISTANCE)


def ranking_metrics(
    scores: np.ndarray, relevant: np.ndarray, k: int = 10, chunk_cells: int = _CHUNK_CELLS
) -> dict[str, np.ndarray]:
    """All per-query metrics of `RANK_METRICS` for a score matrix and a boolean relevance matrix.

    scores: [q, n] float; relevant: [q, n] bool with at least one True per row (a query without a
    relevant candidate is undefined here; engine.evaluate skips and counts those).
    Returns name -> [q] float64 array: map, r@1, r@{k}, mrr@{k}, ndcg@{k}, rank_distance.
    """
    scores = np.asarray(scores)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and relevant {relevant.shape} must be equal 2-D "
                         "shapes")
    if not relevant.any(axis=1).all():
        raise ValueError("every query needs at least one relevant candidate")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rows = max(1, chunk_cells // max(1, scores.shape[1]))
    parts = [
        _from_stats(*_chunk_stats(scores[i : i + rows], relevant[i : i + rows]), k=k)
        for i in range(0, scores.shape[0], rows)
    ]
    names = _names(k)
    if not parts:
        return {name: np.zeros(0) for name in names}
    return {name: np.concatenate([p[name] for p in parts]) for name in names}


def embedding_metrics(
    queries: np.ndarray,
    candidates: np.ndarray,
    relevant: Sequence[np.ndarray],
    chunk_cells: int = _CHUNK_CELLS,
) -> dict[str, np.ndarray]:
    """Per-query metrics for dot-product scoring, computing the score matrix chunk by chunk.

    queries: [q, d]; candidates: [n, d]; relevant[i]: candidate indices relevant to query i
    (sparse, so the dense q × n relevance matrix of Mul is never materialised).
    """
    q = queries.shape[0]
    if len(relevant) != q:
        raise ValueError(f"{q} queries but {len(relevant)} relevance lists")
    if q == 0:
        return {name: np.zeros(0) for name in RANK_METRICS}
    n = candidates.shape[0]
    rows = max(1, chunk_cells // max(1, n))
    cand_t = np.ascontiguousarray(candidates.T)  # [d, n], one transpose for all chunks
    parts = []
    for start in range(0, q, rows):
        stop = min(q, start + rows)
        scores = queries[start:stop] @ cand_t  # [c, n]
        rel = np.zeros(scores.shape, dtype=bool)
        for r, cols in enumerate(relevant[start:stop]):
            rel[r, cols] = True
        parts.append(ranking_metrics(scores, rel, chunk_cells=chunk_cells))
    return {name: np.concatenate([p[name] for p in parts]) for name in RANK_METRICS}


# Single-metric conveniences (each computes the shared ranks; use ranking_metrics for several).


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Per-query AP over the full ranking, identical to sklearn's average_precision_score."""
    return ranking_metrics(scores, relevant)[MetricName.MAP]


def recall_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """Fraction of a query's relevant candidates ranked in the top k (trec_eval recall_k)."""
    return ranking_metrics(scores, relevant, k=k)[f"r@{k}"]


def mrr_at_k(scores: np.ndarray, relevant: np.ndarray, k: int = 10) -> np.ndarray:
    """1 / rank of the first relevant candidate if it is in the top k, else 0."""
    return ranking_metrics(scores, relevant, k=k)[f"mrr@{k}"]


def ndcg_at_k(scores: np.ndarray, relevant: np.ndarray, k: int = 10) -> np.ndarray:
    """Binary-relevance nDCG@k: sum of 1/log2(rank+1) over the relevant candidates in the top k,
    divided by the ideal DCG of min(k, #relevant) relevant candidates at ranks 1, 2, ..."""
    return ranking_metrics(scores, relevant, k=k)[f"ndcg@{k}"]


def rank_distance(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Highest minus lowest 1-based rank among a query's relevant candidates (0 for one)."""
    return ranking_metrics(scores, relevant)[MetricName.RANK_DISTANCE]

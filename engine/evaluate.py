"""MLQA-R evaluation as in LAReQA and the hybrid-batch paper → flat, namespaced metrics.

Settings (LAReQA, Roy et al. 2020; the hybrid-batch paper scores MLQA-R the same way):
- mo:  questions of X against X's candidate sentences.
- cr:  questions of X against Y's sentences, for every Y ≠ X; a question whose id has no answer
       in Y is skipped for that pair and counted. Per query language: macro mean over its pairs.
- mul: questions of X against the union of every evaluated language's sentences; relevant = the
       answer sentence in every language where the question id has one.
A candidate is encoded as its sentence text alone (not its paragraph context), the dual-encoder
reading of LAReQA. Scores are cosine similarities of L2-normalised embeddings. Every distinct
text is encoded once per evaluation (questions with the query prefix, sentences with the passage
prefix) and reused by all settings; scoring runs in bounded chunks (engine.metrics).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.data.loaders import LangSet
from engine.errors import ConfigError
from engine.metric_keys import (
    MACRO,
    RANKING_METRICS,
    SETTINGS,
    MetricName,
    Setting,
    Split,
    group_unit,
    lang_unit,
    metric_key,
    pair_key,
    size_key,
    skipped_key,
)
from engine.metrics import embedding_metrics

if TYPE_CHECKING:  # a type only: evaluation never loads the OT solver
    from engine.ot_loss import Encoder

DEFAULT_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"high": ("en", "de", "es", "vi", "zh"), "low": ("ar", "hi")}
)
#: Rank distance is reported for Mul only (it is always 0 with a single relevant sentence).
MUL_METRICS: tuple[str, ...] = (*RANKING_METRICS, MetricName.RANK_DISTANCE)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EncodedSets:
    """Embeddings of the distinct texts of `sets`, and which row each question/sentence uses."""

    query_texts: tuple[str, ...]
    passage_texts: tuple[str, ...]
    query_vecs: np.ndarray  # [distinct questions, H], L2-normalised float32
    passage_vecs: np.ndarray  # [distinct sentences, H]
    query_rows: Mapping[str, np.ndarray]  # lang -> row per question of sets[lang].questions
    candidate_rows: Mapping[str, np.ndarray]  # lang -> row per sentence of sets[lang].candidates

    def queries(self, lang: str) -> np.ndarray:
        return self.query_vecs[self.query_rows[lang]]

    def candidates(self, lang: str) -> np.ndarray:
        return self.passage_vecs[self.candidate_rows[lang]]


def distinct_texts(
    sets: Mapping[str, LangSet],
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Dedupe by (kind, text): (query texts, passage texts, query rows, candidate rows)."""
    q_index: dict[str, int] = {}
    p_index: dict[str, int] = {}
    q_rows = {
        lang: np.array([q_index.setdefault(q.text, len(q_index)) for q in s.questions],
                       dtype=np.int64)
        for lang, s in sets.items()
    }
    c_rows = {
        lang: np.array([p_index.setdefault(c.text, len(p_index)) for c in s.candidates],
                       dtype=np.int64)
        for lang, s in sets.items()
    }
    return tuple(q_index), tuple(p_index), q_rows, c_rows


def _normalise(vecs: Any) -> np.ndarray:
    arr = np.asarray(vecs, dtype=np.float32)  # torch CPU tensors convert without a torch import
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(norms, 1e-12)


def encoded_from_vectors(sets: Mapping[str, LangSet], query_vecs: Any,
                         passage_vecs: Any) -> EncodedSets:
    """Wrap precomputed embeddings of `distinct_texts(sets)` (e.g. a benchmark's .npy cache)."""
    q_texts, p_texts, q_rows, c_rows = distinct_texts(sets)
    qv, pv = _normalise(query_vecs), _normalise(passage_vecs)
    if qv.shape[0] != len(q_texts) or pv.shape[0] != len(p_texts):
        raise ConfigError(
            f"embeddings do not match the texts: {qv.shape[0]}/{len(q_texts)} questions, "
            f"{pv.shape[0]}/{len(p_texts)} sentences"
        )
    return EncodedSets(q_texts, p_texts, qv, pv, MappingProxyType(q_rows), MappingProxyType(c_rows))


def encode_sets(
    encoder: Encoder,
    sets: Mapping[str, LangSet],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    progress: Progress | None = None,
) -> EncodedSets:
    """Two `encoder.embed` calls in all: distinct questions ("query"), distinct sentences
    ("passage")."""
    q_texts, p_texts, _, _ = distinct_texts(sets)
    total = len(q_texts) + len(p_texts)

    def run(texts: Sequence[str], kind: str, offset: int) -> Any:
        def report(done: int, _n: int) -> None:
            if progress is not None:
                progress(offset + done, total)

        vecs = encoder.embed(list(texts), kind, batch_size=batch_size, max_length=max_length,
                             progress=report)
        report(len(texts), len(texts))  # completes the bar even if embed reports nothing
        return vecs

    query_vecs = run(q_texts, "query", 0)
    passage_vecs = run(p_texts, "passage", len(q_texts))
    return encoded_from_vectors(sets, query_vecs, passage_vecs)


# --------------------------------------------------------------------------- scoring


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def score_encoded(
    sets: Mapping[str, LangSet],
    enc: EncodedSets,
    *,
    settings: Sequence[str] = SETTINGS,
    groups: Mapping[str, Sequence[str]] = DEFAULT_GROUPS,
    prefix: str = Split.QUICK,
) -> dict[str, float]:
    """Every metric of every requested setting from embeddings, keyed as engine.metric_keys says."""
    bad = [s for s in settings if s not in SETTINGS]
    if bad or not settings:
        raise ConfigError(f"settings {bad or '[]'} invalid; valid: {', '.join(SETTINGS)}")
    langs = list(sets)
    out: dict[str, float] = {
        size_key(prefix, "n_questions"): float(sum(len(s.questions) for s in sets.values())),
        size_key(prefix, "n_candidates"): float(sum(len(s.candidates) for s in sets.values())),
    }
    # per_lang[setting][lang][metric]: the per-query-language value that groups and macro average.
    per_lang: dict[str, dict[str, dict[str, float]]] = {s: {} for s in settings}

    def run_pair(x: str, targets: Sequence[str], cands: np.ndarray, offsets: Mapping[str, int]
    ) -> tuple[dict[str, float], int]:
        """Score x's questions against `cands`; relevant = their answers in every target lang."""
        rows, relevant = [], []
        for i, q in enumerate(sets[x].questions):
            rel = [offsets[y] + sets[y].answer[q.id] for y in targets if q.id in sets[y].answer]
            if rel:
                rows.append(i)
                relevant.append(np.array(rel, dtype=np.int64))
        skipped = len(sets[x].questions) - len(rows)
        if not rows:
            return {}, skipped
        metrics = embedding_metrics(enc.queries(x)[rows], cands, relevant)
        return {name: float(v.mean()) for name, v in metrics.items()}, skipped

    if Setting.MO in settings or Setting.CR in settings:
        for x in langs:
            pair_means: list[dict[str, float]] = []
            for y in langs:
                if (x == y and Setting.MO not in settings) or (x != y
                                                               and Setting.CR not in settings):
                    continue
                means, skipped = run_pair(x, [y], enc.candidates(y), {y: 0})
                if x == y:
                    out[skipped_key(prefix, Setting.MO, x)] = float(skipped)
                    if means:
                        per_lang[Setting.MO][x] = {n: means[n] for n in RANKING_METRICS}
                    continue
                out[skipped_key(prefix, Setting.CR, x, y)] = float(skipped)
                for name in RANKING_METRICS if means else ():
                    out[pair_key(prefix, x, y, name)] = means[name]
                if means:
                    pair_means.append(means)
            if Setting.CR in settings and pair_means:
                per_lang[Setting.CR][x] = {n: _mean([m[n] for m in pair_means])
                                           for n in RANKING_METRICS}
    if Setting.MUL in settings:
        pool = np.concatenate([enc.candidates(y) for y in langs])  # [all sentences, H]
        sizes = np.cumsum([0] + [len(sets[y].candidates) for y in langs])
        offsets = {y: int(sizes[i]) for i, y in enumerate(langs)}
        for x in langs:
            means, skipped = run_pair(x, langs, pool, offsets)
            out[skipped_key(prefix, Setting.MUL, x)] = float(skipped)
            if means:
                per_lang[Setting.MUL][x] = {n: means[n] for n in MUL_METRICS}

    for setting, by_lang in per_lang.items():
        names: tuple[str, ...] = MUL_METRICS if setting == Setting.MUL else RANKING_METRICS
        for lang, values in by_lang.items():
            for metric in names:
                out[metric_key(prefix, setting, lang_unit(lang), metric)] = values[metric]
        buckets = {group_unit(g): [lang for lang in members if lang in by_lang]
                   for g, members in groups.items()}
        buckets[MACRO] = list(by_lang)
        for unit, members in buckets.items():
            if members:
                for metric in names:
                    out[metric_key(prefix, setting, unit,
                                   metric)] = _mean([by_lang[m][metric] for m in members])
    return out


def evaluate(
    encoder: Encoder,
    sets: dict[str, LangSet],
    *,
    settings: Sequence[str] = SETTINGS,
    groups: Mapping[str, Sequence[str]] = DEFAULT_GROUPS,
    subset_questions: int = 0,
    subset_seed: int = 0,
    batch_size: int = 64,
    max_length: int = 128,
    prefix: str = Split.QUICK,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Encode once, score every requested setting; subset_questions > 0 uses `select_subset`."""
    if subset_questions > 0:
        sets = select_subset(sets, subset_questions, subset_seed)
    enc = encode_sets(encoder, sets, batch_size=batch_size, max_length=max_length,
                      progress=progress)
    return score_encoded(sets, enc, settings=settings, groups=groups, prefix=prefix)


# --------------------------------------------------------------------------- quick subset


def select_subset(sets: Mapping[str, LangSet], n_per_lang: int, seed: int) -> dict[str, LangSet]:
    """The fixed quick-curve subset of a LAReQA benchmark.

    1. Shuffle the union of all question ids with `numpy.random.default_rng(seed)` (ids sorted
       first, so the order depends only on the data and the seed).
    2. Queries of language X: the first `n_per_lang` ids of that shuffled order that X has (all
       of X's questions if it has fewer), kept in file order. Sharing one order across languages
       makes the languages pick overlapping ids, so cross-lingual pairs keep many queries while
       the candidate pool stays small.
    3. Candidates of language Y: every sentence of each Y paragraph that holds the answer to any
       selected id (selected in any language), so every selected question keeps its relevant
       sentence in every language where it has one, exactly as in the full benchmark; plus
       `max(1, n_per_lang // 4)` distractor paragraphs of Y drawn from the rest with
       `default_rng([seed, crc32(Y)])`. Sentences keep file order.
    Answers are re-indexed to the kept sentences (for every selected id, also those selected
    by another language, so cr/mul relevance matches the full benchmark).
    Sizes on MLQA-R, seed 0 (questions / candidate sentences / distinct ids): n=20: 140 / 1,330 /
    52; n=50: 350 / 3,129 / 120; n=100: 700 / 5,783 / 233 (full: 4,199 / 20,534 / 1,148).
    """
    if n_per_lang <= 0:
        return dict(sets)
    all_ids = sorted({q.id for s in sets.values() for q in s.questions})
    order = {str(qid): i for i, qid in enumerate(np.random.default_rng(seed).permutation(all_ids))}
    picked: dict[str, set[str]] = {}
    for lang, s in sets.items():
        ranked = sorted((q.id for q in s.questions), key=order.__getitem__)
        picked[lang] = set(ranked[:n_per_lang])
    return restrict_to_ids(sets, picked, max(1, n_per_lang // 4), seed)


def restrict_to_ids(sets: Mapping[str, LangSet], picked: Mapping[str, set[str]], n_distract: int,
                    seed: int) -> dict[str, LangSet]:
    """Keep the questions `picked[lang]` of each language and the candidates that score them:
    steps 2-3 of `select_subset` (answer paragraphs of every picked id in every language, plus
    `n_distract` seeded distractor paragraphs per language). Also builds the dev split's sets
    from held-out training ids (engine/data/splits.py)."""
    selected = set().union(*picked.values()) if picked else set()
    out: dict[str, LangSet] = {}
    for lang, s in sets.items():
        answer_paras = {s.candidates[s.answer[qid]].paragraph for qid in selected
                        if qid in s.answer}
        others = sorted({c.paragraph for c in s.candidates} - answer_paras)
        rng = np.random.default_rng([seed, zlib.crc32(lang.encode())])
        n = min(len(others), n_distract)
        distract = {int(p)
                    for p in rng.choice(others, size=n,
                                        replace=False)} if others and n > 0 else set()
        keep = [i for i, c in enumerate(s.candidates) if c.paragraph in answer_paras
                or c.paragraph in distract]
        new_index = {old: new for new, old in enumerate(keep)}
        answer = {qid: new_index[s.answer[qid]] for qid in sorted(selected) if qid in s.answer}
        questions = tuple(q for q in s.questions if q.id in picked.get(lang, set()))
        out[lang] = replace(
            s, questions=questions, candidates=tuple(s.candidates[i] for i in keep),
            answer=MappingProxyType(answer)
        )
    return out

"""The dev split: training questions held out by id for model selection, scored like MLQA-R.

`data.dev_questions` ids are drawn once, by a seeded draw over the sorted ids that does not depend
on `train.seed`, so every run of a sweep holds out the same questions (and shares one cached
zero-shot dev score, engine/baseline_cache.py). They are removed from training in every language
and scored Mo/Cr/Mul in the training languages only: never on MLQA-R, never in a zero-shot
language, so choosing a checkpoint by them tunes nothing on the benchmark.

Candidates:
- XQuAD-R (`data.train_source`): every sentence of the paragraphs holding a held-out answer, in
  each language, plus max(1, n/4) seeded distractor paragraphs per language — the quick MLQA-R
  subset's recipe (`engine.evaluate.restrict_to_ids`). Those paragraphs also hold answers of
  training questions: the dev questions are unseen, their candidate sentences may not be.
- a JSONL train file (`data.train_file`): the answers of the held-out records, one candidate per
  distinct answer text per language.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

from engine.batching import split_holdout
from engine.data.loaders import Candidate, LangSet, ParallelQA, Question, load_lareqa
from engine.evaluate import restrict_to_ids

#: Fixed: the dev split is a property of the data, the same for every run and seed.
DEV_SEED = 0
_DEV_STREAM = 3  # split_holdout's draw for data.holdout uses stream 2


def split_dev(records: Sequence[ParallelQA], n: int) -> tuple[list[ParallelQA], list[ParallelQA]]:
    """(training records, dev records): `n` ids held out; (all, []) when n = 0."""
    return split_holdout(records, n, DEV_SEED, stream=_DEV_STREAM, key="data.dev_questions")


def parallel_sets(records: Sequence[ParallelQA], langs: Sequence[str]) -> dict[str, LangSet]:
    """LAReQA-format sets from parallel QA records: per language, each record's question against
    the distinct answers of all the records (equal answer texts share one candidate)."""
    out: dict[str, LangSet] = {}
    for lang in langs:
        index: dict[str, int] = {}
        answer = {r.id: index.setdefault(r.answer[lang], len(index)) for r in records}
        candidates = tuple(Candidate(lang, i, 0, text, text) for text, i in index.items())
        questions = tuple(Question(r.id, lang, r.question[lang]) for r in records)
        out[lang] = LangSet(lang, questions, candidates, MappingProxyType(answer))
    return out


def dev_sets(dev: Sequence[ParallelQA], langs: Sequence[str], *, train_source: str, train_file: str,
             data_dir: str | Path | None = None) -> dict[str, LangSet]:
    """The dev split's sets in `langs` (see the module docstring); {} without dev records."""
    if not dev:
        return {}
    if train_file:
        return parallel_sets(dev, langs)
    ids = {r.id for r in dev}
    sets = load_lareqa(train_source, langs, data_dir)
    picked = {lang: ids & {q.id for q in s.questions} for lang, s in sets.items()}
    return restrict_to_ids(sets, picked, max(1, len(ids) // 4), DEV_SEED)

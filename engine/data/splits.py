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

from engine.batching import HybridSampler, split_holdout
from engine.config import Config
from engine.data.jsonl import load_training_qa
from engine.data.loaders import (
    Candidate,
    LangSet,
    ParallelQA,
    Question,
    clean_training_set,
    load_lareqa,
)
from engine.evaluate import restrict_to_ids

#: Fixed: the dev split is a property of the data, the same for every run and seed.
DEV_SEED = 0
_DEV_STREAM = 3  # split_holdout's draw for data.holdout uses stream 2


def split_dev(records: Sequence[ParallelQA], n: int) -> tuple[list[ParallelQA], list[ParallelQA]]:
    """(training records, dev records): `n` ids held out; (all, []) when n = 0."""
    return split_holdout(records, n, DEV_SEED, stream=_DEV_STREAM, key="data.dev_questions")


def training_records(cfg: Config, data_dir: str | Path) -> tuple[list[ParallelQA],
                                                                 list[ParallelQA]]:
    """(training records, dev records) exactly as a run of `cfg` uses them: its training data in
    the training languages (plus the OT teacher's when OT is on), minus the dev split and the
    `data.holdout` ids. `optical batches` previews the sampler over the same list."""
    use_ot = cfg.ot.weight > 0
    langs = tuple(dict.fromkeys((*cfg.data.train_langs,
                                 *((cfg.ot.teacher_lang,) if use_ot else ()))))
    records, dev = split_dev(load_training_qa(cfg.data.train_source, cfg.data.train_file, langs,
                                              data_dir),
                             cfg.data.dev_questions)
    records, _held_out = split_holdout(records, cfg.data.holdout)
    return records, dev


def sampler_for(cfg: Config, records: Sequence[ParallelQA]) -> HybridSampler:
    """The run's hybrid batch sampler over `records` (training_records)."""
    tc = cfg.train
    return HybridSampler(records, cfg.data.train_langs, tc.ratio, tc.batch_size, tc.mixing, tc.seed,
                         cross_pairs=tc.cross_pairs, hard_negatives=tc.hard_negatives)


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
    # Cleaned like the training text (zh spacing): dev is training-side data, never MLQA-R.
    sets = {lang: clean_training_set(s)
            for lang, s in load_lareqa(train_source, langs, data_dir).items()}
    picked = {lang: ids & {q.id for q in s.questions} for lang, s in sets.items()}
    return restrict_to_ids(sets, picked, max(1, len(ids) // 4), DEV_SEED)

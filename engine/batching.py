"""Hybrid batch sampler (Elmahdy, Lin, Ahmad 2024) over parallel QA records.

A *monolingual* batch pairs every question with its answer in one language (drawn uniformly
from the training languages); a *cross-lingual* batch pairs a question in X with its answer in
Y != X. `ratio M:C` mixes them:

- mixing "batch": each batch is wholly monolingual with probability M/(M+C), else wholly
  cross-lingual (the paper's setup);
- mixing "within": every batch holds round(B*M/(M+C)) monolingual rows (all in one language,
  so they are each other's same-language negatives) and the rest cross-lingual.

How a cross-lingual row's (X, Y) is drawn is `train.cross_pairs` (docs/study.md has both
readings of the paper): "row" draws X and Y uniformly per row, so a row's positive is never in
its question's language while some negatives are (a language cue); "batch" draws one (X, Y) for
all the cross rows of a batch, so every candidate is in Y and only content separates them.

No false negatives: no two rows of a batch share an answer sentence in any language. Records
carry an answer-sentence group (engine/data/loaders.py: the answer's (paragraph, sentence) in
each language for XQuAD-R; a JSONL record's "group" or normalised answer text); a batch takes the
next records of a seeded permutation whose groups are new to it, and leaves the others in place
for the following batches. A batch never straddles two permutations. Avoiding such rows (rather
than masking their logits) keeps every batch at B useful rows and InfoNCE's denominator intact.

Hard negatives (`train.hard_negatives = k`): each row adds up to k other sentences of its
positive's own paragraph, in the positive's language, drawn seeded; never the row's answer and
never any row's positive. They join the candidate side of InfoNCE (the paper's d−).

The whole sampler state is a small picklable dict, so a resumed run draws exactly the batches
the uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from engine.config import CrossPairs, Mixing, Ratio, parse_ratio
from engine.errors import ConfigError


class ParallelRecord(Protocol):
    """What the sampler needs of `engine.data.ParallelQA`."""

    @property
    def id(self) -> str: ...
    @property
    def question(self) -> Mapping[str, str]: ...  # lang -> text
    @property
    def answer(self) -> Mapping[str, str]: ...
    @property
    def group(self) -> str: ...  # answer-sentence identity ("" = the id)
    @property
    def negatives(self) -> Mapping[str, Sequence[str]]: ...  # lang -> hard-negative candidates


class Row(NamedTuple):
    question: str
    answer: str
    q_lang: str
    a_lang: str
    id: str
    is_cross: bool
    hard_negatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class Batch:
    rows: tuple[Row, ...]

    @property
    def questions(self) -> list[str]:
        return [r.question for r in self.rows]

    @property
    def answers(self) -> list[str]:
        return [r.answer for r in self.rows]

    @property
    def negatives(self) -> list[str]:
        """Every row's hard negatives, in row order: candidates after the B answers."""
        return [n for r in self.rows for n in r.hard_negatives]

    @property
    def cross_fraction(self) -> float:
        """1.0 for a cross-lingual batch, 0.0 for a monolingual one, the fraction for `within`."""
        return sum(r.is_cross for r in self.rows) / len(self.rows)


def _rng_from_state(state: dict[str, Any]) -> np.random.Generator:
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = state
    return rng


def record_group(rec: ParallelRecord) -> str:
    return getattr(rec, "group", "") or rec.id


class HybridSampler:
    """Seeded, resumable stream of hybrid batches (see module docstring)."""

    def __init__(
        self,
        records: Sequence[ParallelRecord],
        langs: Sequence[str],
        ratio: str | Ratio,
        batch_size: int,
        mixing: str = Mixing.BATCH,
        seed: int = 0,
        *,
        cross_pairs: str = CrossPairs.ROW,
        hard_negatives: int = 0,
    ) -> None:
        self.ratio = parse_ratio(ratio) if isinstance(ratio, str) else ratio
        if mixing not in tuple(Mixing):
            raise ConfigError(f"train.mixing: {mixing!r} is not one of {', '.join(Mixing)}")
        if cross_pairs not in tuple(CrossPairs):
            raise ConfigError(f"train.cross_pairs: {cross_pairs!r} is not one of "
                              f"{', '.join(CrossPairs)}")
        if hard_negatives < 0:
            raise ConfigError(f"train.hard_negatives: must be 0 or more, got {hard_negatives}")
        self.mixing = Mixing(mixing)
        self.cross_pairs = CrossPairs(cross_pairs)
        self.hard_negatives = hard_negatives
        self.langs = tuple(dict.fromkeys(langs))
        if not self.langs:
            raise ConfigError("data.train_langs: at least one training language is needed")
        if self.ratio.cross > 0 and len(self.langs) < 2:
            raise ConfigError("data.train_langs: cross-lingual batches need at least two languages")
        # Keep only records present in every training language, one per id (first wins).
        seen: set[str] = set()
        kept = []
        for rec in records:
            if rec.id in seen:
                continue
            if all(lang in rec.question and lang in rec.answer for lang in self.langs):
                seen.add(rec.id)
                kept.append(rec)
        self.records = kept
        self._groups = [record_group(r) for r in kept]
        self._by_id = {r.id: r for r in kept}
        n_groups = len(set(self._groups))
        if batch_size > n_groups:
            raise ConfigError(
                f"train.batch_size: {batch_size} exceeds the {n_groups} distinct answer sentences "
                "of the "
                f"{len(self.records)} parallel QA records available in {', '.join(self.langs)} (a "
                "batch "
                "never holds two questions with the same answer)"
            )
        self.batch_size = batch_size
        self.n_mono_within = round(batch_size * self.ratio.mono_fraction)
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._perm: list[int] = []
        self._pos = 0
        self.batches_drawn = 0
        self.epoch = 0

    # ------------------------------------------------------------------ drawing

    def _pick(self, n: int) -> list[int] | None:
        """The first n records after the cursor with pairwise distinct groups, moved up to the
        cursor (the skipped ones keep their order, for later batches); None if there are fewer."""
        chosen: list[int] = []
        taken: set[str] = set()
        rest = self._perm[self._pos:]
        for i in rest:
            if self._groups[i] not in taken:
                taken.add(self._groups[i])
                chosen.append(i)
                if len(chosen) == n:
                    break
        if len(chosen) < n:
            return None
        picked = set(chosen)
        self._perm[self._pos:] = chosen + [i for i in rest if i not in picked]
        self._pos += n
        return chosen

    def _take(self, n: int) -> list[int]:
        """n record indices with distinct answer groups; a new permutation rather than straddle
        two."""
        out = self._pick(n)
        if out is None:
            self._perm = [int(i) for i in self._rng.permutation(len(self.records))]
            self._pos = 0
            self.epoch += 1
            out = self._pick(n)
            assert out is not None  # batch_size <= number of groups (checked in __init__)
        return out

    def _mono_lang(self) -> str:
        return self.langs[int(self._rng.integers(len(self.langs)))]

    def _cross_langs(self) -> tuple[str, str]:
        x = int(self._rng.integers(len(self.langs)))
        # Y uniform over the other languages: draw from n-1 and skip X.
        y = int(self._rng.integers(len(self.langs) - 1))
        y = y + 1 if y >= x else y
        return self.langs[x], self.langs[y]

    def _row(self, idx: int, q_lang: str, a_lang: str) -> Row:
        rec = self.records[idx]
        return Row(rec.question[q_lang], rec.answer[a_lang], q_lang, a_lang, rec.id,
                   q_lang != a_lang)

    def _with_negatives(self, rows: list[Row]) -> list[Row]:
        """Each row with up to k hard negatives: its paragraph's other sentences in its answer's
        language, never its own answer and never any row's positive (that would be a false one)."""
        if not self.hard_negatives:
            return rows
        positives = {r.answer for r in rows}
        out = []
        for row in rows:
            negatives = getattr(self._by_id[row.id], "negatives", {})
            pool = list(dict.fromkeys(t for t in negatives.get(row.a_lang, ())
                                      if t not in positives))
            order = self._rng.permutation(len(pool))[: self.hard_negatives] if pool else ()
            out.append(row._replace(hard_negatives=tuple(pool[int(i)] for i in order)))
        return out

    def next_batch(self) -> Batch:
        b = self.batch_size
        if self.mixing == Mixing.BATCH:
            mono = bool(self._rng.random() < self.ratio.mono_fraction)
            n_mono = b if mono else 0
        else:
            n_mono = self.n_mono_within
        idx = self._take(b)
        rows: list[Row] = []
        if n_mono:
            lang = self._mono_lang()
            rows += [self._row(i, lang, lang) for i in idx[:n_mono]]
        if n_mono < b and self.cross_pairs == CrossPairs.BATCH:
            x, y = self._cross_langs()
            rows += [self._row(i, x, y) for i in idx[n_mono:]]
        else:
            for i in idx[n_mono:]:
                x, y = self._cross_langs()
                rows.append(self._row(i, x, y))
        self.batches_drawn += 1
        return Batch(tuple(self._with_negatives(rows)))

    # ------------------------------------------------------------------ resume

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self._rng.bit_generator.state,
            "perm": list(self._perm),
            "pos": self._pos,
            "batches_drawn": self.batches_drawn,
            "epoch": self.epoch,
            "n_records": len(self.records),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["n_records"] != len(self.records):
            raise ConfigError(
                f"checkpoint sampler saw {state['n_records']} records, this run has "
                f"{len(self.records)}: "
                "the training data or languages changed since the checkpoint"
            )
        self._rng = _rng_from_state(state["rng"])
        self._perm = list(state["perm"])
        self._pos = int(state["pos"])
        self.batches_drawn = int(state["batches_drawn"])
        self.epoch = int(state["epoch"])


class BitextSampler:
    """Seeded, resumable draws of `n` distinct bitext pairs per step (Tatoeba for OT)."""

    def __init__(self, pairs: Sequence[Any], n: int, seed: int = 0) -> None:
        if not pairs:
            raise ConfigError("ot.bitext: no bitext pairs available for the training languages")
        self.pairs = list(pairs)
        self.n = min(n, len(self.pairs))
        # Offset the seed so bitext draws are not correlated with the batch sampler's.
        self._rng = np.random.Generator(np.random.PCG64([seed, 1]))

    def next(self) -> list[Any]:
        idx = self._rng.choice(len(self.pairs), size=self.n, replace=False)
        return [self.pairs[int(i)] for i in idx]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng = _rng_from_state(state["rng"])


def split_holdout(records: Sequence[ParallelRecord], n: int, seed: int = 0, *, stream: int = 2,
                  key: str = "data.holdout") -> tuple[list, list]:
    """(train, held out): `n` records chosen by a seeded draw over sorted ids, independent of order.

    `stream` separates independent draws with the same seed (the dev split uses its own), `key`
    names the setting in the error."""
    if n <= 0:
        return list(records), []
    if n >= len(records):
        raise ConfigError(f"{key}: {n} leaves no training records (have {len(records)})")
    ids = sorted(r.id for r in records)
    rng = np.random.Generator(np.random.PCG64([seed, stream]))
    held = {ids[int(i)] for i in rng.choice(len(ids), size=n, replace=False)}
    return [r for r in records if r.id not in held], [r for r in records if r.id in held]


class OTPair(NamedTuple):
    """A bitext pair drawn from a batch row: the row's text on `side` and its teacher-language
    twin."""

    row: int
    side: str  # "question" | "answer"
    teacher_text: str


def ot_pairs_from_batch(
    batch: Batch, records_by_id: Mapping[str, ParallelRecord], teacher_lang: str, n: int
) -> list[OTPair]:
    """Up to `n` translation pairs for OT distillation, reusing the batch's own texts.

    Every question or answer of the batch that is not in the teacher language has an exact
    translation in the teacher language in its parallel record: the student side is the batch
    text (already encoded for the task loss), the teacher side is that translation. Sides are
    taken in row order, question before answer; rows are in random order already.
    """
    out: list[OTPair] = []
    for i, row in enumerate(batch.rows):
        rec = records_by_id[row.id]
        if row.q_lang != teacher_lang:
            out.append(OTPair(i, "question", rec.question[teacher_lang]))
        if row.a_lang != teacher_lang:
            out.append(OTPair(i, "answer", rec.answer[teacher_lang]))
    return out[:n]

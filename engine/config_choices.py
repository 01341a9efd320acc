"""The choices of a config: every string choice of a stored config has one spelling, here.

The stored config keeps the plain strings (StrEnum members are str), so old runs and TOML files
read the same. engine/config.py declares which key takes which choice.
"""

from __future__ import annotations

from enum import StrEnum


class Mixing(StrEnum):
    """train.mixing: where monolingual and cross-lingual rows meet."""

    BATCH = "batch"  # each batch wholly mono or cross (the paper)
    WITHIN = "within"  # mixed inside every batch


class CrossPairs(StrEnum):
    """train.cross_pairs: how a cross-lingual batch draws its (question, answer) languages."""

    ROW = "row"  # (X, Y) per row
    BATCH = "batch"  # one (X, Y) for the whole cross-lingual part of a batch


class Select(StrEnum):
    """train.select: which weights are the run's result."""

    LAST = "last"
    BEST_DEV = "best-dev"


class OTGrad(StrEnum):
    """ot.grad: how the OT loss differentiates."""

    DETACH = "detach"
    ENVELOPE = "envelope"


class Bitext(StrEnum):
    """ot.bitext: where OT distillation's translation pairs come from."""

    PAIRS = "pairs"
    TATOEBA = "tatoeba"
    BOTH = "both"


class TrainSource(StrEnum):
    """data.train_source: the parallel QA dataset for hybrid batches."""

    XQUAD_R = "xquad-r"

"""Data: the benchmark loaders (`loaders`), your own JSONL training data (`jsonl`), dev splits
(`splits`), the mMARCO converter (`mmarco`) and the official downloads (`download`).

The loaders' public names are re-exported, so `from engine.data import load_lareqa` works."""

from engine.data.jsonl import load_parallel_jsonl, load_training_qa
from engine.data.loaders import (
    BitextPair,
    Candidate,
    LangSet,
    ParallelQA,
    Question,
    SquadQA,
    load_bitext,
    load_lareqa,
    load_parallel_qa,
    load_xquad,
    resolve_data_dir,
)

__all__ = ["BitextPair", "Candidate", "LangSet", "ParallelQA", "Question", "SquadQA", "load_bitext",
           "load_lareqa", "load_parallel_jsonl", "load_parallel_qa", "load_training_qa",
           "load_xquad",
           "resolve_data_dir"]

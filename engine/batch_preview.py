"""What a config's sampler actually draws (`optical batches`), without loading a model.

Uses the run's own record list and sampler (engine/data/splits.py `training_records`,
`sampler_for`), so the first N batches shown are the first N batches a run of the config trains
on. False negatives are counted independently of the sampler's groups: two rows whose records
have the same answer sentence (equal text) in any training language.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from engine.batching import Batch
from engine.config import Config
from engine.data.loaders import ParallelQA, resolve_data_dir
from engine.data.splits import sampler_for, training_records

ROW_MONO, ROW_CROSS = "mono", "cross"


def false_negatives(batch: Batch, by_id: dict[str, ParallelQA], langs: tuple[str, ...]) -> int:
    """Rows of `batch` that share an answer sentence, in any of `langs`, with another row."""
    owners: dict[tuple[str, str], set[int]] = {}
    for i, row in enumerate(batch.rows):
        rec = by_id[row.id]
        for lang in langs:
            if lang in rec.answer:
                owners.setdefault((lang, rec.answer[lang]), set()).add(i)
    return len({i for rows in owners.values() if len(rows) > 1 for i in rows})


def batch_summary(index: int, batch: Batch, by_id: dict[str, ParallelQA],
                  langs: tuple[str, ...]) -> dict[str, Any]:
    rows = [{"id": r.id, "q_lang": r.q_lang, "a_lang": r.a_lang,
             "kind": ROW_CROSS if r.is_cross else ROW_MONO,
             "hard_negatives": list(r.hard_negatives)} for r in batch.rows]
    pairs = Counter(f"{r.q_lang}->{r.a_lang}" for r in batch.rows)
    kinds = {row["kind"] for row in rows}
    return {"batch": index, "kind": kinds.pop() if len(kinds) == 1 else "mixed", "rows": rows,
            "pairs": dict(sorted(pairs.items())),
            "false_negatives": false_negatives(batch, by_id, langs),
            "hard_negatives": sum(len(r.hard_negatives) for r in batch.rows)}


def preview_batches(cfg: Config, n: int) -> dict[str, Any]:
    """The first `n` batches of `cfg`'s sampler, each summarised (see `batch_summary`), and
    totals."""
    records, _dev = training_records(cfg, resolve_data_dir(cfg.data.data_dir))
    sampler = sampler_for(cfg, records)
    by_id = {r.id: r for r in records}
    langs = tuple(cfg.data.train_langs)
    batches = [batch_summary(i, sampler.next_batch(), by_id, langs) for i in range(n)]
    tc = cfg.train
    return {
        "config": {"ratio": str(sampler.ratio), "mixing": str(tc.mixing),
                   "cross_pairs": str(tc.cross_pairs),
                   "batch_size": tc.batch_size, "hard_negatives": tc.hard_negatives,
                   "seed": tc.seed,
                   "train_langs": list(langs), "records": len(records)},
        "totals": {"batches": n, "rows": sum(len(b["rows"]) for b in batches),
                   "cross_rows": sum(r["kind"] == ROW_CROSS for b in batches for r in b["rows"]),
                   "false_negatives": sum(b["false_negatives"] for b in batches),
                   "hard_negatives": sum(b["hard_negatives"] for b in batches)},
        "batches": batches,
    }

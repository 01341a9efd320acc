"""Your own training data: a JSONL file of parallel QA records (`data.train_file`, e.g. mMARCO
converted by engine/data/mmarco.py), checked line by line, and the choice between it and a
bundled dataset (`load_training_qa`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.data.loaders import (
    ParallelQA,
    _check_langs,
    _root,
    _union_groups,
    load_parallel_qa,
    normalise_answer,
)
from engine.errors import DataMissing

#: Problems listed in one error before "… and N more" (the CLI prints one line).
_MAX_LISTED = 5


def train_file_path(setting: str, data_dir: str | Path | None = None) -> Path:
    """`data.train_file`: an absolute path, or one relative to the data folder."""
    path = Path(setting).expanduser()
    return path if path.is_absolute() else _root(data_dir) / path


def _record_problem(obj: Any) -> str | None:
    """Why one parsed JSONL line is not a parallel QA record (None when it is)."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    qid = obj.get("id")
    if not isinstance(qid, str) or not qid.strip():
        return "'id' must be a non-empty string"
    for side in ("question", "answer"):
        texts = obj.get(side)
        if not isinstance(texts, dict) or not texts:
            return f"'{side}' must be an object of language → text, e.g. {{\"en\": \"…\"}}"
        bad = [lang for lang, t in texts.items() if not isinstance(t, str) or not t.strip()]
        if bad:
            return f"'{side}' text for {', '.join(map(repr, bad))} must be a non-empty string"
    group = obj.get("group")
    if group is not None and (not isinstance(group, str) or not group.strip()):
        return "'group' (optional) must be a non-empty string"
    negatives = obj.get("negatives")
    if negatives is not None:
        if not isinstance(negatives, dict):
            return "'negatives' (optional) must be an object of language → list of texts"
        bad = [lang for lang, ts in negatives.items()
               if not isinstance(ts, list) or not all(isinstance(t, str) and t.strip() for t in ts)]
        if bad:
            return (f"'negatives' for {', '.join(map(repr, bad))} must be a list of non-empty "
                    "strings")
    return None


@lru_cache(maxsize=8)
def _parse_jsonl(path: str, _mtime: int, _size: int) -> tuple[ParallelQA, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataMissing(f"training file {path} is not UTF-8 text: {exc}") from None
    records: list[ParallelQA] = []
    first_line: dict[str, int] = {}
    problems: list[str] = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue  # blank lines (a trailing newline, spacing) carry nothing
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        why = _record_problem(obj)
        if why is None and obj["id"] in first_line:
            why = f"duplicate id {obj['id']!r} (first on line {first_line[obj['id']]})"
        if why is not None:
            problems.append(f"line {n}: {why}")
            continue
        first_line[obj["id"]] = n
        negatives = {lang: tuple(ts) for lang, ts in (obj.get("negatives") or {}).items()}
        records.append(ParallelQA(obj["id"], MappingProxyType(dict(obj["question"])),
                                  MappingProxyType(dict(obj["answer"])), obj.get("group") or "",
                                  MappingProxyType(negatives)))
    if problems:
        more = f"; … and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise DataMissing(f"training file {path}: {len(problems)} malformed line(s): "
                          + "; ".join(problems[:_MAX_LISTED]) + more
                          + ' (each line: {"id": "…", "question": {"en": "…"}, "answer": {"en": '
                            '"…"}})')
    if not records:
        raise DataMissing(f"training file {path} holds no records")
    return tuple(records)


def load_parallel_jsonl(path: str | Path, langs: Iterable[str]) -> list[ParallelQA]:
    """Parallel QA records from a JSONL file (one `{"id", "question": {lang: text}, "answer":
    {lang: text}}` object a line, e.g. mMARCO converted), checked line by line.

    Only records with a question and an answer in every language of `langs` are returned, each
    restricted to those languages, in file order (like `load_parallel_qa`)."""
    chosen = _check_langs(langs)
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise DataMissing(f"training file not found: {p} (data.train_file: an absolute path, or "
                          "one relative to the data folder)") from None
    if not p.is_file():
        raise DataMissing(f"training file is not a file: {p}")
    out = []
    seen: dict[str, int] = {}
    for rec in _parse_jsonl(str(p), st.st_mtime_ns, st.st_size):
        for lang in rec.question.keys() & rec.answer.keys():
            seen[lang] = seen.get(lang, 0) + 1
        if all(lang in rec.question and lang in rec.answer for lang in chosen):
            out.append(ParallelQA(rec.id, MappingProxyType({lg: rec.question[lg] for lg in chosen}),
                                  MappingProxyType({lg: rec.answer[lg] for lg in chosen}),
                                  rec.group,
                                  MappingProxyType({lg: rec.negatives.get(lg, ())
                                                    for lg in chosen})))
    # Records with the same "group", or else the same normalised answer text in some language,
    # share an answer: one group, so a batch never holds both (engine/batching.py).
    groups = _union_groups([r.id for r in out], [[("group", r.group)] if r.group else
                                                 [(lg, normalise_answer(r.answer[lg]))
                                                  for lg in chosen]
                                                 for r in out])
    out = [dataclasses.replace(r, group=groups[r.id]) for r in out]
    if not out:
        found = ", ".join(f"{lang} ({n})" for lang, n in sorted(seen.items())) or "none"
        raise DataMissing(f"training file {p}: no record has a question and an answer in every "
                          f"training language ({', '.join(chosen)}); records per language: {found}")
    return out


def load_training_qa(train_source: str, train_file: str, langs: Iterable[str],
                     data_dir: str | Path | None = None) -> list[ParallelQA]:
    """The parallel QA to train on: `data.train_file` when set, else the `data.train_source`
    dataset."""
    if train_file:
        return load_parallel_jsonl(train_file_path(train_file, data_dir), langs)
    return load_parallel_qa(train_source, langs, data_dir)

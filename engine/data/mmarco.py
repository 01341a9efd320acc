"""mMARCO (MS MARCO passage ranking machine-translated into 13 languages) → a `data.train_file`.

    python -m engine.data.mmarco --root mmarco/data --langs en,de,es,zh --limit 20000 --out mmarco.jsonl

`--root` is the dataset's `data/` folder as the Hugging Face dataset `unicamp-dl/mmarco` lays it
out (download recipe: /work/notes/training-readme.md, section "Bring your own training data"):

    triples.train.ids.small.tsv                          qid  positive pid  negative pid
    google/queries/train/{language}_queries.train.tsv    qid  query
    google/collections/{language}_collection.tsv         pid  passage

Every language is a translation of the same English query and passage, with the same ids, so a
query id and its positive passage make one parallel QA record: `{"id": "mmarco-<qid>",
"question": {lang: query}, "answer": {lang: passage}}` (engine/data/loaders.py `load_parallel_jsonl`).
The first `--limit` distinct query ids of the triples file are taken, in file order; a record
missing in any language is left out. The collections (3–8 GB each) are streamed once, keeping
only the passages needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from engine.errors import ConfigError, DataMissing

#: MLQA language code → mMARCO's file-name language.
MMARCO_NAMES = {"ar": "arabic", "de": "german", "en": "english", "es": "spanish", "hi": "hindi",
                "vi": "vietnamese", "zh": "chinese"}


def _tsv(path: Path) -> Iterator[tuple[str, str]]:
    """(id, text) per line of a two-column TSV, streamed."""
    if not path.is_file():
        raise DataMissing(f"mMARCO file not found: {path}")
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            key, sep, text = line.rstrip("\n").partition("\t")
            if sep:
                yield key.strip(), text.strip()


def positives(triples: Path, limit: int) -> dict[str, str]:
    """The first `limit` distinct query ids of the training triples and each one's positive passage."""
    out: dict[str, str] = {}
    if not triples.is_file():
        raise DataMissing(f"mMARCO file not found: {triples}")
    with open(triples, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split("\t")
            if len(parts) >= 2 and parts[0].strip() not in out:
                out[parts[0].strip()] = parts[1].strip()
                if len(out) >= limit:
                    break
    return out


def convert(root: Path, langs: Sequence[str], out: Path, limit: int, translation: str = "google") -> int:
    """Write the JSONL; returns the number of records written."""
    bad = [lang for lang in langs if lang not in MMARCO_NAMES]
    if bad or not langs:
        raise ConfigError(f"--langs: {', '.join(bad) or 'none given'}; valid: {', '.join(MMARCO_NAMES)}")
    pos = positives(root / "triples.train.ids.small.tsv", limit)
    wanted_pids = set(pos.values())
    questions: dict[str, dict[str, str]] = {}
    answers: dict[str, dict[str, str]] = {}
    for lang in langs:
        name = MMARCO_NAMES[lang]
        questions[lang] = {q: t for q, t in _tsv(root / translation / "queries" / "train" /
                                                  f"{name}_queries.train.tsv") if q in pos and t}
        answers[lang] = {p: t for p, t in _tsv(root / translation / "collections" / f"{name}_collection.tsv")
                         if p in wanted_pids and t}
    n = 0
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for qid, pid in pos.items():
            if all(qid in questions[lg] and pid in answers[lg] for lg in langs):
                fh.write(json.dumps({"id": f"mmarco-{qid}", "question": {lg: questions[lg][qid] for lg in langs},
                                     "answer": {lg: answers[lg][pid] for lg in langs}}, ensure_ascii=False) + "\n")
                n += 1
    tmp.replace(out)
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.data.mmarco", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="the dataset's data/ folder")
    p.add_argument("--langs", default="en,de,es,zh", help="comma-separated MLQA codes (default: en,de,es,zh)")
    p.add_argument("--limit", type=int, default=20000, help="query ids to take (default 20000)")
    p.add_argument("--translation", default="google", choices=("google", "helsinki"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        n = convert(args.root, [x.strip() for x in args.langs.split(",") if x.strip()], args.out, args.limit,
                    args.translation)
    except (ConfigError, DataMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{n} parallel QA records written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

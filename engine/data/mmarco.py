"""mMARCO (MS MARCO passage ranking machine-translated into 13 languages) → a `data.train_file`.

    python -m engine.data.mmarco --root mmarco/data --langs en,de,es,zh --limit 20000 \\
        --out mmarco.jsonl

`--root` is the dataset's `data/` folder as the Hugging Face dataset `unicamp-dl/mmarco` lays it
out (download recipe: /work/notes/training-readme.md, section "Bring your own training data"):

    triples.train.ids.small.tsv                          qid  positive pid  negative pid
    google/queries/train/{language}_queries.train.tsv    qid  query
    google/collections/{language}_collection.tsv         pid  passage

Every language is a translation of the same English query and passage, with the same ids, so a
query id and its positive passage make one parallel QA record: `{"id": "mmarco-<qid>",
"group": "mmarco-p<positive pid>", "question": {lang: query}, "answer": {lang: passage},
"negatives": {lang: [negative passage]}}` (engine/data/jsonl.py `load_parallel_jsonl`). The
group is the positive passage, so two queries with the same positive never share a batch; the
negative is the triple's own, as in the paper's mMARCO triples (train.hard_negatives uses it).
The first `--limit` distinct query ids of the triples file are taken, in file order (the first
triple of each gives its negative); a record missing in any language is left out. The collections
(3–8 GB each) are streamed once, keeping
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


def triples_of(triples: Path, limit: int) -> dict[str, tuple[str, str]]:
    """The first `limit` distinct query ids of the training triples: (positive pid, negative pid),
    from each query's first triple."""
    out: dict[str, tuple[str, str]] = {}
    if not triples.is_file():
        raise DataMissing(f"mMARCO file not found: {triples}")
    with open(triples, encoding="utf-8") as fh:
        for line in fh:
            parts = [p.strip() for p in line.split("\t")]
            if len(parts) >= 3 and parts[0] not in out:
                out[parts[0]] = (parts[1], parts[2])
                if len(out) >= limit:
                    break
    return out


def convert(root: Path, langs: Sequence[str], out: Path, limit: int,
            translation: str = "google") -> int:
    """Write the JSONL; returns the number of records written."""
    bad = [lang for lang in langs if lang not in MMARCO_NAMES]
    if bad or not langs:
        raise ConfigError(f"--langs: {', '.join(bad) or 'none given'}; valid: "
                          f"{', '.join(MMARCO_NAMES)}")
    triples = triples_of(root / "triples.train.ids.small.tsv", limit)
    wanted_pids = {pid for pair in triples.values() for pid in pair}
    questions: dict[str, dict[str, str]] = {}
    passages: dict[str, dict[str, str]] = {}
    for lang in langs:
        name = MMARCO_NAMES[lang]
        questions[lang] = {q: t for q, t in _tsv(root / translation / "queries" / "train" /
                                                  f"{name}_queries.train.tsv") if q in triples
                           and t}
        collection = root / translation / "collections" / f"{name}_collection.tsv"
        passages[lang] = {p: t for p, t in _tsv(collection) if p in wanted_pids and t}
    n = 0
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for qid, (pos, neg) in triples.items():
            if not all(qid in questions[lg] and pos in passages[lg] for lg in langs):
                continue
            record = {"id": f"mmarco-{qid}", "group": f"mmarco-p{pos}",
                      "question": {lg: questions[lg][qid] for lg in langs},
                      "answer": {lg: passages[lg][pos] for lg in langs},
                      "negatives": {lg: [passages[lg][neg]] for lg in langs if neg in passages[lg]}}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(out)
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.data.mmarco", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="the dataset's data/ folder")
    p.add_argument("--langs", default="en,de,es,zh",
                   help="comma-separated MLQA codes (default: en,de,es,zh)")
    p.add_argument("--limit", type=int, default=20000, help="query ids to take (default 20000)")
    p.add_argument("--translation", default="google", choices=("google", "helsinki"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        n = convert(args.root, [x.strip() for x in args.langs.split(",") if x.strip()], args.out,
                    args.limit,
                    args.translation)
    except (ConfigError, DataMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{n} parallel QA records written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark and training data: MLQA-R / XQuAD-R (LAReQA), XQuAD (SQuAD format), Tatoeba bitext.

Everything is read in place from one data folder (setting `data.data_dir`, else env
OPTICAL_DATA, else ./data) laid out as `optical data download` writes it:

    mlqa-r/{lang}.json   xquad-r/{lang}.json   xquad/xquad.{lang}.json
    tatoeba-laser/tatoeba.{xxx}-eng.{xxx,eng}

Parsed files are cached per (path, mtime, size), so repeated loads in one process (evaluation
every N steps, tests) cost nothing and an edited file is re-read.
"""

from __future__ import annotations

import bisect
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.config import MLQA_LANGS
from engine.errors import ConfigError, DataMissing

LAREQA_DATASETS: tuple[str, ...] = ("mlqa-r", "xquad-r")
# Tatoeba (LASER) names languages with ISO 639-3 codes; Mandarin is "cmn".
TATOEBA_CODES: Mapping[str, str] = MappingProxyType(
    {"ar": "ara", "de": "deu", "es": "spa", "hi": "hin", "vi": "vie", "zh": "cmn"}
)
# Published sizes (questions, candidate sentences); `optical data check` compares against them.
EXPECTED: Mapping[str, Mapping[str, tuple[int, int]]] = MappingProxyType({
    "mlqa-r": MappingProxyType({
        "ar": (517, 2545), "de": (512, 2362), "en": (1148, 6264), "es": (500, 1787),
        "hi": (507, 2426), "vi": (511, 2828), "zh": (504, 2322),
    }),
    "xquad-r": MappingProxyType({lang: (1190, 0) for lang in MLQA_LANGS}),  # 0: not published
    "xquad": MappingProxyType({lang: (1190, 0) for lang in MLQA_LANGS}),
})
TATOEBA_PAIRS = 1000
HINT = "run `optical data download` or set OPTICAL_DATA (data.data_dir) to the data folder"


@dataclass(frozen=True)
class Question:
    id: str
    lang: str
    text: str


@dataclass(frozen=True)
class Candidate:
    lang: str
    paragraph: int  # paragraph index in the file (running over all articles)
    sentence: int  # sentence index inside the paragraph
    text: str
    context: str


@dataclass(frozen=True)
class LangSet:
    """One language of a LAReQA file: its questions, all its sentences, and each answer."""

    lang: str
    questions: tuple[Question, ...]
    candidates: tuple[Candidate, ...]
    answer: Mapping[str, int]  # question id -> index into candidates (same language)


_NO_NEGATIVES: Mapping[str, tuple[str, ...]] = MappingProxyType({})


@dataclass(frozen=True)
class ParallelQA:
    id: str
    question: Mapping[str, str]  # lang -> question text
    answer: Mapping[str, str]  # lang -> answer sentence
    # The answer sentence's identity across translations: records with the same group share an
    # answer sentence in some language, so one is a false negative for the other in a batch
    # (engine/batching.py keeps them apart). Empty: the record's own id.
    group: str = ""
    # lang -> hard-negative candidates: the other sentences of the answer's own paragraph
    # (XQuAD-R), or a JSONL record's own "negatives" (e.g. mMARCO's negative passage).
    negatives: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _NO_NEGATIVES)


@dataclass(frozen=True)
class SquadQA:
    """One XQuAD question in plain SQuAD v1.1 form (answer span, no sentence breaks)."""

    id: str
    lang: str
    question: str
    context: str
    answer_text: str
    answer_start: int


@dataclass(frozen=True)
class BitextPair:
    src_lang: str  # always "en"
    tgt_lang: str  # MLQA code
    src: str
    tgt: str


# --------------------------------------------------------------------------- training text

# XQuAD-R zh sets the translated answer span off with spaces between CJK characters ("在 1995 年"
# is fine, "的 北京 是" is not): 570 of 784 answer sentences, against 0 of 499 in MLQA-R zh. A
# training-only cleaning removes them; evaluation text (MLQA-R) is never touched.
# Ideographs only: a space before CJK punctuation also occurs in MLQA-R zh (8 of 499 answers),
# a space between two ideographs does not.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_SPACE = re.compile(f"(?<=[{_CJK}])[ \u00a0]+(?=[{_CJK}])")
#: Training languages whose text the cleaning applies to.
CJK_SPACED_LANGS: tuple[str, ...] = ("zh",)


def cjk_spaces(text: str) -> int:
    """How many runs of spaces sit between two CJK characters."""
    return len(_CJK_SPACE.findall(text))


def clean_training_text(text: str, lang: str) -> str:
    """Training text as the model should see it: zh without spaces inserted between CJK
    characters."""
    return _CJK_SPACE.sub("", text) if lang in CJK_SPACED_LANGS else text


def clean_training_set(s: LangSet) -> LangSet:
    """A LAReQA language set (XQuAD-R, for training and dev only) with `clean_training_text`
    applied."""
    if s.lang not in CJK_SPACED_LANGS:
        return s
    return LangSet(s.lang,
                   tuple(Question(q.id, q.lang, clean_training_text(q.text, s.lang))
                         for q in s.questions),
                   tuple(Candidate(c.lang, c.paragraph, c.sentence,
                                   clean_training_text(c.text, s.lang), c.context)
                         for c in s.candidates), s.answer)


def _union_groups(ids: Sequence[str], keys: Sequence[Iterable[Any]]) -> dict[str, str]:
    """id -> group: records sharing any key (transitively) get one group, named by its first id."""
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[Any, int] = {}
    for i, ks in enumerate(keys):
        for k in ks:
            j = owner.setdefault(k, i)
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    return {qid: ids[find(i)] for i, qid in enumerate(ids)}


def normalise_answer(text: str) -> str:
    """The key two JSONL answers are the same sentence by: case-folded, whitespace collapsed."""
    return " ".join(text.casefold().split())


# --------------------------------------------------------------------------- paths


def resolve_data_dir(setting: str = "") -> Path:
    """`data.data_dir` if set, else env OPTICAL_DATA, else ./data (not checked here)."""
    chosen = setting or os.environ.get("OPTICAL_DATA") or "data"
    return Path(chosen).expanduser().resolve()


def _root(data_dir: str | Path | None) -> Path:
    return Path(data_dir).expanduser().resolve() if data_dir else resolve_data_dir()


def lareqa_path(dataset: str, lang: str, data_dir: str | Path | None = None) -> Path:
    return _root(data_dir) / dataset / f"{lang}.json"


def xquad_path(lang: str, data_dir: str | Path | None = None) -> Path:
    return _root(data_dir) / "xquad" / f"xquad.{lang}.json"


def tatoeba_paths(lang: str, data_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(English side, other side) of the en↔lang Tatoeba test set."""
    code = _tatoeba_code(lang)
    folder = _root(data_dir) / "tatoeba-laser"
    return folder / f"tatoeba.{code}-eng.eng", folder / f"tatoeba.{code}-eng.{code}"


def _check_langs(langs: Iterable[str] | None, valid: Sequence[str] = MLQA_LANGS) -> tuple[str, ...]:
    chosen = tuple(valid if langs is None else langs)
    bad = [lang for lang in chosen if lang not in valid]
    if bad:
        raise ConfigError(f"unknown language(s) {bad}; valid: {', '.join(valid)}")
    return chosen


def _tatoeba_code(lang: str) -> str:
    if lang not in TATOEBA_CODES:
        raise ConfigError(f"no Tatoeba bitext for {lang!r}; valid: {', '.join(TATOEBA_CODES)}")
    return TATOEBA_CODES[lang]


# --------------------------------------------------------------------------- file reading


def _stat(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataMissing(f"missing data file {path}; {HINT}") from None
    if not path.is_file():
        raise DataMissing(f"data path is not a file: {path}; {HINT}")
    return str(path), st.st_mtime_ns, st.st_size


def _malformed(path: str | Path, why: str) -> DataMissing:
    return DataMissing(f"malformed data file {path} ({why}); re-download it: {HINT}")


@lru_cache(maxsize=64)
def _read_json(path: str, _mtime: int, _size: int) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _malformed(path, f"not valid JSON: {exc}") from None


@lru_cache(maxsize=64)
def _read_lines(path: str, _mtime: int, _size: int) -> tuple[str, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed(path, f"not UTF-8 text: {exc}") from None
    # Split on "\n" only: str.splitlines() also breaks on U+2028 etc., which would misalign pairs.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return tuple(line.rstrip("\r") for line in lines)


def _paragraphs(doc: Any, path: str) -> list[dict[str, Any]]:
    """The paragraphs of a SQuAD-format document, structure-checked."""
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise _malformed(path, "expected a SQuAD JSON object with a 'data' list")
    out = []
    for a, article in enumerate(doc["data"]):
        paras = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paras, list):
            raise _malformed(path, f"article {a} has no 'paragraphs' list")
        for p in paras:
            ok = isinstance(p, dict) and isinstance(p.get("context"),
                                                    str) and isinstance(p.get("qas"), list)
            if not ok:
                raise _malformed(path, f"article {a}: a paragraph lacks 'context' or 'qas'")
            out.append(p)
    return out


def _qa_fields(qa: Any, path: str) -> tuple[str, str, str, int]:
    """(id, question, answer text, answer_start) of one SQuAD question, structure-checked."""
    try:
        ans = qa["answers"][0]
        qid, text, atext, start = qa["id"], qa["question"], ans["text"], ans["answer_start"]
    except (KeyError, IndexError, TypeError):
        raise _malformed(path, f"a question lacks id/question/answers: {str(qa)[:80]}") from None
    if not (isinstance(qid, str) and isinstance(text, str) and isinstance(start, int)):
        raise _malformed(path, f"question {qid!r}: wrong field types")
    return qid, text, str(atext), start


# --------------------------------------------------------------------------- LAReQA


@lru_cache(maxsize=64)
def _parse_lareqa(path: str, mtime: int, size: int, lang: str) -> LangSet:
    questions: list[Question] = []
    candidates: list[Candidate] = []
    answer: dict[str, int] = {}
    for pi, p in enumerate(_paragraphs(_read_json(path, mtime, size), path)):
        sents, breaks = p.get("sentences"), p.get("sentence_breaks")
        if not (isinstance(sents, list) and isinstance(breaks, list) and len(sents) == len(breaks)
                and sents):
            raise _malformed(path,
                             f"paragraph {pi}: 'sentences'/'sentence_breaks' missing or unequal")
        try:
            starts = [int(b[0]) for b in breaks]
            ends = [int(b[1]) for b in breaks]
        except (TypeError, ValueError, IndexError):
            raise _malformed(path,
                             f"paragraph {pi}: sentence_breaks must be [start, end] "
                             "pairs") from None
        first = len(candidates)
        for si, s in enumerate(sents):
            candidates.append(Candidate(lang, pi, si, str(s), p["context"]))
        for qa in p["qas"]:
            qid, text, _atext, start = _qa_fields(qa, path)
            if qid in answer:
                raise _malformed(path, f"duplicate question id {qid}")
            if not 0 <= start <= len(p["context"]):
                raise _malformed(path,
                                 f"question {qid}: answer_start {start} outside its paragraph")
            # The sentence whose span contains answer_start (the last one starting at or before it).
            si = max(0, bisect.bisect_right(starts, start) - 1)
            if start >= ends[si] and si + 1 < len(starts):
                si += 1  # answer_start on the whitespace between spans: the text is in the next one
            questions.append(Question(qid, lang, text))
            answer[qid] = first + si
    return LangSet(lang, tuple(questions), tuple(candidates), MappingProxyType(answer))


def load_lareqa(
    dataset: str, langs: Iterable[str] | None = None, data_dir: str | Path | None = None
) -> dict[str, LangSet]:
    """{lang: LangSet} for "mlqa-r" or "xquad-r" (default: all seven MLQA languages)."""
    if dataset not in LAREQA_DATASETS:
        raise ConfigError(f"unknown LAReQA dataset {dataset!r}; valid: "
                          f"{', '.join(LAREQA_DATASETS)}")
    chosen = _check_langs(langs)
    return {lang: _parse_lareqa(*_stat(lareqa_path(dataset, lang, data_dir)), lang)
            for lang in chosen}


def load_parallel_qa(
    dataset: str = "xquad-r",
    langs: Iterable[str] = ("en", "de", "es", "zh"),
    data_dir: str | Path | None = None,
) -> list[ParallelQA]:
    """Question + answer sentence in every language of `langs`, for ids present in all of them.

    Ordered as in the first language's file, so samplers seeded alike see the same list. Each
    record carries its answer-sentence group (the answer's (paragraph, sentence) in every
    language: questions sharing one are grouped) and, per language, the other sentences of the
    answer's paragraph as hard-negative candidates. Text is cleaned for training
    (`clean_training_text`).
    """
    chosen = _check_langs(langs)
    if not chosen:
        raise ConfigError("load_parallel_qa: name at least one language")
    sets = {lang: clean_training_set(s)
            for lang, s in load_lareqa(dataset, chosen, data_dir).items()}
    texts = {lang: {q.id: q.text for q in s.questions} for lang, s in sets.items()}
    paragraphs: dict[str, dict[int, list[int]]] = {}
    for lang, s in sets.items():
        by_para = paragraphs.setdefault(lang, {})
        for ci, c in enumerate(s.candidates):
            by_para.setdefault(c.paragraph, []).append(ci)
    kept = [q for q in sets[chosen[0]].questions if all(q.id in texts[lang] for lang in chosen)]
    # An answer sentence is (language, candidate index): the same index is the same sentence.
    groups = _union_groups([q.id for q in kept],
                           [[(lang, sets[lang].answer[q.id]) for lang in chosen]
                                                  for q in kept])
    out = []
    for q in kept:
        answers, negatives = {}, {}
        for lang in chosen:
            s, ai = sets[lang], sets[lang].answer[q.id]
            answers[lang] = s.candidates[ai].text
            negatives[lang] = tuple(s.candidates[ci].text
                                    for ci in paragraphs[lang][s.candidates[ai].paragraph]
                                    if ci != ai)
        questions = {lang: texts[lang][q.id] for lang in chosen}
        out.append(ParallelQA(q.id, MappingProxyType(questions), MappingProxyType(answers),
                              groups[q.id], MappingProxyType(negatives)))
    return out


# --------------------------------------------------------------------------- XQuAD, Tatoeba


@lru_cache(maxsize=64)
def _parse_squad(path: str, mtime: int, size: int, lang: str) -> tuple[SquadQA, ...]:
    out = []
    for p in _paragraphs(_read_json(path, mtime, size), path):
        for qa in p["qas"]:
            qid, text, atext, start = _qa_fields(qa, path)
            out.append(SquadQA(qid, lang, text, p["context"], atext, start))
    return tuple(out)


def load_xquad(
    langs: Iterable[str] | None = None, data_dir: str | Path | None = None
) -> dict[str, tuple[SquadQA, ...]]:
    """{lang: questions} from plain XQuAD (SQuAD v1.1 format; ids shared across languages)."""
    return {lang: _parse_squad(*_stat(xquad_path(lang, data_dir)), lang)
            for lang in _check_langs(langs)}


def load_bitext(langs: Iterable[str], data_dir: str | Path | None = None) -> list[BitextPair]:
    """English ↔ X Tatoeba pairs for MLQA languages; "en" is every pair's source and adds none."""
    out: list[BitextPair] = []
    for lang in _check_langs(langs):
        if lang == "en":
            continue
        eng_path, tgt_path = tatoeba_paths(lang, data_dir)
        eng, tgt = _read_lines(*_stat(eng_path)), _read_lines(*_stat(tgt_path))
        if len(eng) != len(tgt):
            why = (f"{len(tgt)} lines but {eng_path.name} has {len(eng)}; the files must be "
                   "line-aligned")
            raise _malformed(tgt_path, why)
        # An empty side carries no signal for distillation; the rest stay aligned.
        pairs = ((e.strip(), t.strip()) for e, t in zip(eng, tgt, strict=True))
        out.extend(BitextPair("en", lang, e, t) for e, t in pairs if e and t)
    return out


# --------------------------------------------------------------------------- status


def _status_row(dataset: str, lang: str, paths: Sequence[Path], count: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"dataset": dataset, "lang": lang, "path": str(paths[-1]), "status": "ok",
                           "questions": None, "candidates": None, "pairs": None, "error": None}
    missing = [p for p in paths if not p.is_file()]
    if missing:
        return row | {"status": "missing", "path": str(missing[0])}
    try:
        row |= count()
    except DataMissing as exc:
        return row | {"status": "malformed", "error": str(exc)}
    exp_q, exp_c = EXPECTED.get(dataset, {}).get(lang, (0, 0))
    if dataset == "tatoeba":
        bad = row["pairs"] != TATOEBA_PAIRS
    else:
        bad = row["questions"] != exp_q or (exp_c and row["candidates"] != exp_c)
    if bad:
        row["status"] = "unexpected counts"
    return row


def data_status(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per dataset and language: status ok|missing|malformed|unexpected counts, and
    counts."""
    root = _root(data_dir)
    rows = []
    for ds in LAREQA_DATASETS:
        for lang in MLQA_LANGS:
            def count(ds: str = ds, lang: str = lang) -> dict[str, Any]:
                s = load_lareqa(ds, [lang], root)[lang]
                out: dict[str, Any] = {"questions": len(s.questions),
                                       "candidates": len(s.candidates)}
                # the raw files' count; training removes them (XQuAD-R)
                if lang in CJK_SPACED_LANGS:
                    answers = {s.candidates[i].text for i in s.answer.values()}
                    out["cjk_spaced_answers"] = sum(cjk_spaces(a) > 0 for a in answers)
                    out["answers"] = len(answers)
                return out
            rows.append(_status_row(ds, lang, [lareqa_path(ds, lang, root)], count))
    for lang in MLQA_LANGS:
        rows.append(_status_row("xquad", lang, [xquad_path(lang, root)],
                                lambda lang=lang: {"questions": len(load_xquad([lang],
                                                                               root)[lang])}))
    for lang in TATOEBA_CODES:
        rows.append(_status_row("tatoeba", lang, list(tatoeba_paths(lang, root)),
                                lambda lang=lang: {"pairs": len(load_bitext([lang], root))}))
    return rows

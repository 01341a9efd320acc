"""A trained student as a folder anyone can load: transformers + sentence-transformers + ours.

    config.json, model.safetensors          AutoModel.from_pretrained(DIR): every weight, frozen
                                            ones included (the embedded e5's word embeddings)
    tokenizer.json, tokenizer_config.json   AutoTokenizer.from_pretrained(DIR)
    modules.json, sentence_bert_config.json SentenceTransformer(DIR): Transformer → mean pooling
    1_Pooling/config.json, 2_Normalize/     (padding excluded, special tokens included, as
    config_sentence_transformers.json       engine/models/encoders.py pools) → L2 norm; prompts
                                            {"query": query prefix, "passage": passage prefix}
    optical_model.json                      prefixes, pooling, max lengths, the run it came from
                                            and the selected step (`optical eval --model DIR`
                                            reads its prefixes and max length from here)
    README.md (`optical export` only)       the model card: Hub metadata, how it was trained, its
                                            MLQA-R table (engine/models/model_card.py)

The sentence-transformers files are the classic layout (modules `sentence_transformers.models.*`)
that every sentence-transformers release since 2.x loads. `max_seq_length` is the run's
evaluation max length, so `SentenceTransformer(DIR).encode(texts, prompt_name="query")` gives
the embeddings the run's MLQA-R numbers were computed from.

Folders are written atomically (a temporary sibling, then a rename): a crash never leaves a
half-written model where a complete one is expected. A run writes `<run dir>/model/`
(`train.save_model`); `optical export ID DIR` copies it out. Checkpoint clean-up deletes only
`checkpoints/` folders (engine/run_dirs.py), never `model/`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.errors import ModelError
from engine.files import read_json_object, replace_dir
from engine.run_dirs import attempt_dir, attempts_in

#: The saved model's folder inside a run (or attempt) folder.
MODEL_DIR = "model"
#: Our metadata file; its presence marks a complete export.
INFO_FILE = "optical_model.json"
_FORMAT = 1


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _sentence_transformers_files(folder: Path, *, dim: int, max_length: int, query_prefix: str,
                                 passage_prefix: str) -> None:
    _write_json(folder / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(folder / "sentence_bert_config.json",
                {"max_seq_length": max_length, "do_lower_case": False})
    (folder / "1_Pooling").mkdir()
    _write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": dim, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False,
        "include_prompt": True})
    (folder / "2_Normalize").mkdir()
    _write_json(folder / "config_sentence_transformers.json", {
        "prompts": {"query": query_prefix, "passage": passage_prefix}, "default_prompt_name": None,
        "similarity_fn_name": "cosine", "model_type": "SentenceTransformer"})


def export_encoder(encoder: Any, out: Path, *, max_length: int,
                   info: Mapping[str, Any] | None = None) -> Path:
    """Write `encoder` (engine.models.encoders.Encoder: its model, tokenizer and prefixes) to
    `out`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        encoder.model.save_pretrained(str(tmp))
        encoder.tokenizer.save_pretrained(str(tmp))
        _sentence_transformers_files(tmp, dim=int(encoder.model.config.hidden_size),
                                     max_length=max_length,
                                     query_prefix=encoder.query_prefix,
                                     passage_prefix=encoder.passage_prefix)
        _write_json(tmp / INFO_FILE, {
            "format": _FORMAT, "query_prefix": encoder.query_prefix,
            "passage_prefix": encoder.passage_prefix,
            "pooling": "mean", "normalize": True, "max_length": max_length, **dict(info or {})})
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_info(folder: Path) -> dict[str, Any] | None:
    """`optical_model.json` of an exported folder, or None for any other folder."""
    return read_json_object(Path(folder) / INFO_FILE)


def find_model(run_folder: Path) -> Path | None:
    """The saved model of a run: `<run>/model/`, else the newest `<run>/attempt-<n>/model/`
    (a worker attempt writes inside its own folder, engine/run_dirs.py)."""
    run_folder = Path(run_folder)
    candidates = [run_folder / MODEL_DIR]
    candidates += [attempt_dir(run_folder, n) / MODEL_DIR
                   for n in reversed(attempts_in(run_folder))]
    return next((c for c in candidates if read_info(c) is not None), None)


def copy_model(src: Path, dest: Path, extra_files: Mapping[str, str] | None = None) -> Path:
    """Copy a saved model folder to `dest` (which must not exist, or be an empty folder), adding
    `extra_files` (name → text, e.g. the model card README.md) before it appears."""
    src, dest = Path(src), Path(dest)
    if read_info(src) is None:
        raise ModelError(f"{src} is not a saved model (no {INFO_FILE})")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ModelError(f"{dest} already exists and is not an empty folder; choose a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        if dest.exists():
            dest.rmdir()  # the empty folder the user named
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest

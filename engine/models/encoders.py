"""Dual encoder over any Hugging Face model: mean pooling, prefixes, token states for OT.

`load_encoder` accepts a hub id, a local folder, or `embedded:<name>` (see
engine/models/bundled.py); all three go through the same `from_pretrained` path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.devices import resolve_device
from engine.errors import ModelError

KINDS = ("query", "passage", "plain")
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(eq=False)  # eq=False: two encoders are the same only if they are the same object
class Encoder:
    """A transformers AutoModel + tokenizer used as a mean-pooling sentence encoder."""

    model: torch.nn.Module
    tokenizer: Any
    device: torch.device
    _: KW_ONLY
    name: str = ""
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    max_length: int = 64
    # Ids to strip from OT marginals; computed once (the tokenizer call is slow per batch).
    _special_ids: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids = sorted(set(self.tokenizer.all_special_ids))
        self._special_ids = torch.tensor(ids, dtype=torch.long)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def _prefix(self, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return {"query": self.query_prefix, "passage": self.passage_prefix, "plain": ""}[kind]

    def tokenize(self, texts: Sequence[str], kind: str, max_length: int | None = None) -> dict[str,
                                                                                               Tensor]:
        """Prefix, tokenize, pad and truncate; tensors on the encoder's device."""
        prefix = self._prefix(kind)
        batch = self.tokenizer([prefix + t for t in texts], padding=True, truncation=True,
                               max_length=max_length or self.max_length, return_tensors="pt")
        out = {k: v.to(self.device) for k, v in batch.items()}
        out["prefix_mask"] = self._prefix_mask(batch["input_ids"], prefix).to(self.device)
        return out

    def _prefix_mask(self, input_ids: Tensor, prefix: str) -> Tensor:
        """[B, T] bool: the tokens that spell the prefix ("query: "), right after the leading
        special tokens. Matched token by token against the prefix's own tokens, so a tokenizer
        that merges the prefix's last piece into the text (SentencePiece's "▁") marks only what
        is really the prefix."""
        mask = torch.zeros(input_ids.shape, dtype=torch.bool)
        if not prefix:
            return mask
        want = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        special = set(self._special_ids.tolist())
        for row, ids in enumerate(input_ids.tolist()):
            start = 0
            while start < len(ids) and ids[start] in special:
                start += 1
            n = 0
            while n < len(want) and start + n < len(ids) and ids[start + n] == want[n]:
                n += 1
            mask[row, start:start + n] = True
        return mask

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()  # fp32 on CPU: bf16 matmuls are slow and lossy there

    def token_states(self, batch: dict[str, Tensor]) -> Tensor:
        """Last-layer token states [B, T, H] (with grad when grad is enabled)."""
        inputs = {k: batch[k] for k in _MODEL_INPUTS if k in batch}
        return self.model(**inputs).last_hidden_state

    def content_mask(self, batch: dict[str, Tensor]) -> Tensor:
        """[B, T] bool: the text's own tokens — no padding, no special tokens (<s>, </s>, ...),
        no prefix tokens ("query: ", "passage: "): OT mass goes to content only."""
        ids = batch["input_ids"]
        special = torch.isin(ids, self._special_ids.to(ids.device))
        mask = batch["attention_mask"].bool() & ~special
        if "prefix_mask" in batch:
            mask &= ~batch["prefix_mask"]
        return mask

    @staticmethod
    def pool(states: Tensor, attention_mask: Tensor) -> Tensor:
        """Mean over the attention mask (specials included, as e5 does), L2-normalised, [B, H]
        fp32."""
        mask = attention_mask.unsqueeze(-1).to(torch.float32)  # [B, T, 1]
        summed = (states.to(torch.float32) * mask).sum(dim=1)  # [B, H]
        mean = summed / mask.sum(dim=1).clamp(min=1.0)
        return F.normalize(mean, p=2, dim=-1)

    def encode_grad(self, texts: Sequence[str], kind: str, max_length: int | None = None) -> Tensor:
        """[B, H] normalised embeddings with grad (training; autocast is the caller's choice)."""
        batch = self.tokenize(texts, kind, max_length)
        return self.pool(self.token_states(batch), batch["attention_mask"])

    @torch.no_grad()
    def embed(self, texts: Sequence[str], kind: str, batch_size: int = 64,
              max_length: int | None = None,
              progress: Callable[[int, int], None] | None = None) -> Tensor:
        """[N, H] normalised float32 CPU embeddings in input order.

        Texts are tokenized once, sorted by token length and batched, so a batch pads only to
        its own longest text (several times faster than input-order batches on MLQA-R).
        """
        total = len(texts)
        out = torch.empty(total, self.dim, dtype=torch.float32)
        if total == 0:
            return out
        prefix = self._prefix(kind)
        ids = self.tokenizer([prefix + t for t in texts], truncation=True,
                             max_length=max_length or self.max_length)["input_ids"]
        order = sorted(range(total), key=lambda i: -len(ids[i]))
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, total, batch_size):
                chunk = order[start: start + batch_size]
                width = len(ids[chunk[0]])
                input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
                attention = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, i in enumerate(chunk):
                    input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                    attention[row, : len(ids[i])] = 1
                batch = {"input_ids": input_ids.to(self.device),
                         "attention_mask": attention.to(self.device)}
                with self._autocast():
                    states = self.token_states(batch)  # [b, T, H]
                out[torch.tensor(chunk)] = self.pool(states, batch["attention_mask"]).cpu()
                if progress is not None:
                    progress(min(start + batch_size, total), total)
        finally:
            self.model.train(was_training)
        return out


def _model_path(name: str) -> str:
    if name.startswith("embedded:"):
        from engine.models.bundled import embedded_model_dir

        return str(embedded_model_dir(name.split(":", 1)[1]))
    return name


def load_encoder(name: str, device: str = "cpu", query_prefix: str = "query: ",
                 passage_prefix: str = "passage: ", max_length: int = 64) -> Encoder:
    """Load any HF id, local folder or `embedded:<name>` as an Encoder (fp32 weights)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the CLI and TUI show their own progress; keep stderr clean
    path = _model_path(name)
    dev = torch.device(resolve_device(device))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - OSError, ValueError, hub errors...: one line for the user
        offline = " (HF_HUB_OFFLINE is set: only locally cached models load)" if os.environ.get(
            "HF_HUB_OFFLINE") else ""
        local = "" if Path(path).exists() else " It is not a local folder either."
        raise ModelError(
            f"cannot load model {name!r}{offline}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}."
            f"{local} Use a Hugging Face id, a folder with config.json and a tokenizer, or "
            "embedded:multilingual-e5-small / embedded:tiny-random."
        ) from None
    if tokenizer.pad_token_id is None:  # e.g. GPT-style tokenizers: padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model.to(dev)
    model.eval()
    return Encoder(model, tokenizer, dev, name=name, query_prefix=query_prefix,
                   passage_prefix=passage_prefix, max_length=max_length)

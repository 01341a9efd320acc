"""One training run: hybrid batches + OPTICAL-style OT distillation, top to bottom.

    loss = InfoNCE(question -> answer, in-batch negatives, temperature) + λ · OT(teacher ‖ student)

The task loss is one-directional (question → answer): retrieval ranks answers for a question,
which is exactly what MLQA-R scores; each question's positive is its answer and the other B-1
answers of the batch are the negatives. The OT term distils a frozen teacher's token states of
the teacher-language side (English) of translation pairs into the student's states of the other
side (engine.ot_loss). With `ot.bitext = "pairs"` those pairs come from the batch itself: each
non-English question/answer of the batch and its English twin in the parallel record, reusing
the student's token states from the task forward (only the teacher forward is extra); "tatoeba"
draws Tatoeba pairs instead (an extra student forward), "both" splits `ot.pairs` between them.

The loop knows nothing about storage: it reports metrics, events and progress to a `Reporter`
and checkpoints through `engine.checkpoint.Checkpoints` (default `run_dir/checkpoints`), resuming
from the latest usable checkpoint bit-for-bit.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.baseline_cache import baseline_key, load_baseline, save_baseline
from engine.batching import BitextSampler, HybridSampler, ot_pairs_from_batch
from engine.checkpoint import Checkpoints, rng_state, set_rng_state, trainable_state
from engine.config import Config
from engine.data.loaders import LangSet, ParallelQA, load_bitext, load_lareqa, resolve_data_dir
from engine.data.splits import dev_sets, sampler_for, training_records
from engine.devices import resolve_device
from engine.errors import ConfigError
from engine.evaluate import evaluate, select_subset
from engine.metric_keys import (
    DEV_SELECTION_KEY,
    MACRO,
    SETTINGS,
    MetricName,
    Setting,
    Split,
    TrainKey,
    metric_key,
)
from engine.model_selection import ModelSelection
from engine.models.encoders import Encoder, load_encoder
from engine.models.export import MODEL_DIR, export_encoder
from engine.ot_loss import distill_loss
from engine.reporting import ListReporter, Reporter
from engine.statuses import EventKind, RunOutcome

__all__ = ["ListReporter", "Reporter", "distill_loss", "lr_factor", "run_training",
           "seed_everything"]

Groups = Mapping[str, tuple[str, ...]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup to the peak over `warmup` steps, then linear decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


# ---------------------------------------------------------------- set-up: data and models


@dataclass
class Inputs:
    """A run's data: parallel QA for hybrid batches, bitext for OT, MLQA-R and dev for
    evaluation."""

    records: list[ParallelQA]
    dev_records: list[ParallelQA]
    by_id: dict[str, ParallelQA]
    sampler: HybridSampler
    bitext: BitextSampler | None
    n_batch_pairs: int  # OT pairs drawn from each batch itself (the rest come from `bitext`)
    eval_sets: dict[str, LangSet]  # the full MLQA-R benchmark
    quick_sets: dict[str, LangSet]  # its per-language subset, for the curve
    groups: dict[str, tuple[str, ...]]
    dev: dict[str, LangSet]  # held-out training questions in the training languages
    dev_groups: dict[str, tuple[str, ...]]


def load_inputs(cfg: Config, use_ot: bool) -> Inputs:
    tc, oc, ec = cfg.train, cfg.ot, cfg.eval
    data_dir = resolve_data_dir(cfg.data.data_dir)
    records, dev_records = training_records(cfg, data_dir)
    sampler = sampler_for(cfg, records)
    if not use_ot or oc.bitext == "pairs":
        n_tatoeba = 0
    else:
        n_tatoeba = oc.pairs if oc.bitext == "tatoeba" else max(1, oc.pairs // 2)
    bitext = None
    if n_tatoeba:
        if oc.teacher_lang != "en":
            raise ConfigError("ot.bitext: Tatoeba pairs are English-centred; "
                              "set ot.teacher_lang = \"en\"")
        bt_langs = [lg for lg in cfg.data.train_langs if lg != "en"]
        bitext = BitextSampler(load_bitext(bt_langs, data_dir), n_tatoeba, tc.seed)
    eval_sets = load_lareqa("mlqa-r", ec.langs, data_dir)
    quick_sets = select_subset(eval_sets, ec.subset_questions, ec.subset_seed)
    groups = {g: kept for g, members in (("high", ec.high), ("low", ec.low))
              if (kept := tuple(lg for lg in members if lg in ec.langs))}
    # The dev split: held-out training questions in the training languages (engine/data/splits.py).
    dev = dev_sets(dev_records, cfg.data.train_langs, train_source=cfg.data.train_source,
                   train_file=cfg.data.train_file, data_dir=data_dir)
    dev_groups = {g: kept for g, members in (("high", ec.high), ("low", ec.low))
                  if (kept := tuple(lg for lg in members if lg in dev))}
    return Inputs(records, dev_records, {r.id: r for r in records}, sampler, bitext,
                  oc.pairs - n_tatoeba if use_ot else 0, eval_sets, quick_sets, groups, dev,
                  dev_groups)


@dataclass
class Models:
    """The trainable student and its optimizer, and the frozen teacher (only when OT is on)."""

    student: Encoder
    teacher: Encoder | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR


def build_models(cfg: Config, device: str, use_ot: bool) -> Models:
    tc = cfg.train

    def encoder(name: str) -> Encoder:
        return load_encoder(name, device=device, query_prefix=cfg.model.query_prefix,
                            passage_prefix=cfg.model.passage_prefix,
                            max_length=cfg.model.max_length)

    student = encoder(cfg.model.name)
    teacher = None
    if use_ot and cfg.model.teacher not in ("", cfg.model.name):
        teacher = encoder(cfg.model.teacher)
    elif use_ot:  # the student's own starting weights: a copy takes a fraction of a second load
        teacher = dataclasses.replace(student, model=copy.deepcopy(student.model))
    if teacher is not None:
        teacher.model.requires_grad_(False).eval()
        h_t, h_s = teacher.model.config.hidden_size, student.model.config.hidden_size
        if h_t != h_s:
            raise ConfigError(f"model.teacher: hidden size {h_t} differs from the student's "
                              f"{h_s}; token-level OT needs the same width")
    if cfg.model.freeze_embeddings:
        student.model.get_input_embeddings().weight.requires_grad_(False)
    student.model.train()
    params = [(n, p) for n, p in student.model.named_parameters() if p.requires_grad]
    no_decay = [p for n, p in params if p.dim() < 2]  # biases and LayerNorm weights
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in params if p.dim() >= 2], "weight_decay": tc.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, tc.warmup_steps, tc.steps))
    return Models(student, teacher, optimizer, scheduler)


# ---------------------------------------------------------------- evaluation and selection


class Evaluations:
    """The run's evaluations: the quick MLQA-R curve, the dev split with model selection
    (train.select), and the full benchmark at the end; each reported as metrics and an event."""

    def __init__(self, cfg: Config, device: str, inputs: Inputs, student: Encoder,
                 reporter: Reporter) -> None:
        self.cfg, self.device, self.inputs = cfg, device, inputs
        self.student, self.reporter = student, reporter
        self.selection = ModelSelection(cfg.train.select)

    def run(self, step: int, prefix: str, sets: dict[str, LangSet], groups: Groups,
            settings: tuple[str, ...] | None = None) -> dict[str, float]:
        """Score `sets` under `prefix`/; step 0 (the untouched encoder) may come from the cache."""
        cfg, ec = self.cfg, self.cfg.eval
        settings = ec.settings if settings is None else settings
        t0 = time.perf_counter()
        # Step 0 scores the untouched encoder: the same numbers for every run of a sweep, so they
        # are computed once per box and reused (engine/baseline_cache.py).
        key = baseline_key(model=cfg.model.name, query_prefix=cfg.model.query_prefix,
                           passage_prefix=cfg.model.passage_prefix, split=prefix, sets=sets,
                           settings=settings, groups=groups, batch_size=ec.batch_size,
                           max_length=ec.max_length, device=self.device) if step == 0 else None
        values = load_baseline(key)
        source = "zero-shot baseline reused from cache" if values is not None else "metrics"
        if values is None:
            self.student.model.eval()
            values = evaluate(self.student, sets, settings=settings, groups=groups,
                              batch_size=ec.batch_size, max_length=ec.max_length, prefix=prefix)
            self.student.model.train()
            save_baseline(key, values)
        self.reporter.metrics(step, values)
        mul = values.get(metric_key(prefix, Setting.MUL, MACRO, MetricName.MAP), float("nan"))
        self.reporter.event(EventKind.EVAL, f"step {step}: {prefix}/ {source} in "
                                            f"{time.perf_counter() - t0:.1f}s "
                                            f"(macro mul mAP {mul:.4f})")
        return values

    def curve(self, step: int) -> None:
        """The quick MLQA-R curve point, then the dev split (and model selection) when there
        is one."""
        inputs = self.inputs
        self.run(step, Split.QUICK, inputs.quick_sets, inputs.groups)
        if inputs.dev:
            values = self.run(step, Split.DEV, inputs.dev, inputs.dev_groups,
                              settings=tuple(SETTINGS))
            if self.selection.offer(step, values, self.student.model):
                self.reporter.event(EventKind.INFO, f"step {step}: best dev so far (dev macro "
                                                    f"mul mAP {values[DEV_SELECTION_KEY]:.4f})")

    def select(self, step: int) -> int:
        """Put the selected model's weights back (train.select); returns its step."""
        selected = self.selection.selected_step(step)
        if self.selection.restore(self.student.model):
            self.reporter.event(EventKind.INFO, f"selected step {selected} by best-dev (dev macro "
                                                f"mul mAP {self.selection.value:.4f}): the final "
                                                "numbers and the saved model are its")
        return selected

    def full(self, step: int) -> None:
        self.run(step, Split.FULL, self.inputs.eval_sets, self.inputs.groups)


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(step: int, ckpts: Checkpoints, cfg: Config, models: Models, inputs: Inputs,
                    selection: ModelSelection, reporter: Reporter) -> None:
    reporter.before_checkpoint(step)  # make reported points durable first
    try:
        path = ckpts.save(step, {
            "model": trainable_state(models.student.model),
            "optimizer": models.optimizer.state_dict(),
            "scheduler": models.scheduler.state_dict(), "sampler": inputs.sampler.state_dict(),
            "bitext": inputs.bitext.state_dict() if inputs.bitext else None, "rng": rng_state(),
            "config": cfg.to_dict(), "selection": selection.state_dict()})
    except OSError as exc:  # a full or failing disk: keep training, the previous checkpoint stays
        reporter.event(EventKind.WARNING, f"checkpoint at step {step} not written: {exc}")
        return
    reporter.event(EventKind.CHECKPOINT, f"checkpoint saved at step {step}: {path.name}")


def resume(ckpts: Checkpoints, cfg: Config, models: Models, inputs: Inputs,
           selection: ModelSelection, reporter: Reporter) -> int | None:
    """Load the latest usable checkpoint into the run; its step, or None when there is none."""
    latest = ckpts.load_latest(lambda message: reporter.event(EventKind.WARNING, message))
    if latest is None:
        return None
    state, _ = latest
    # strict=False: frozen tensors are not in the checkpoint, they came from the source model
    models.student.model.load_state_dict(state["model"], strict=False)
    models.optimizer.load_state_dict(state["optimizer"])
    models.scheduler.load_state_dict(state["scheduler"])
    inputs.sampler.load_state_dict(state["sampler"])
    if inputs.bitext is not None and state["bitext"] is not None:
        inputs.bitext.load_state_dict(state["bitext"])
    set_rng_state(state["rng"])
    selection.load_state_dict(state.get("selection"))
    step = int(state["step"])
    if {k: v for k, v in state["config"].items() if k != "eval"} != \
            {k: v for k, v in cfg.to_dict().items() if k != "eval"}:
        reporter.event(EventKind.WARNING, "config differs from the checkpoint's; resuming anyway")
    reporter.event(EventKind.INFO, f"resumed from step {step}")
    return step


# ---------------------------------------------------------------- one step


@dataclass
class StepLosses:
    """What one optimizer step reports: the last micro-batch's losses, the step's cross share."""

    loss: torch.Tensor
    task: torch.Tensor
    ot: torch.Tensor | None
    ot_stats: dict[str, Any]
    cross: float
    grad_norm: torch.Tensor | None


def train_step(cfg: Config, models: Models, inputs: Inputs, amp: Any) -> StepLosses:
    """One optimizer step over train.grad_accum micro-batches: InfoNCE question -> answer, plus
    ot.weight x the OT term when OT is on."""
    tc, oc = cfg.train, cfg.ot
    student, optimizer = models.student, models.optimizer
    optimizer.zero_grad(set_to_none=True)
    cross = 0.0
    for _ in range(tc.grad_accum):
        batch = inputs.sampler.next_batch()
        cross += batch.cross_fraction / tc.grad_accum
        qb = student.tokenize(batch.questions, "query")  # input_ids [B,Tq]
        # Candidates: the B answers, then the rows' hard negatives (N >= 0 more).
        ab = student.tokenize(batch.answers + batch.negatives, "passage")  # input_ids [B+N,Ta]
        with amp:
            q_states = student.token_states(qb)  # [B,Tq,H]
            a_states = student.token_states(ab)  # [B+N,Ta,H]; rows < B are the answers
        q = student.pool(q_states.float(), qb["attention_mask"])  # [B,H] unit norm
        a = student.pool(a_states.float(), ab["attention_mask"])  # [B+N,H]
        logits = q @ a.T / tc.temperature  # [B,B+N]; column i of row i is its positive
        task = F.cross_entropy(logits, torch.arange(len(batch.rows), device=logits.device))
        ot: torch.Tensor | None = None
        ot_stats: dict[str, Any] = {}
        if models.teacher is not None:  # OT is on
            pairs = (ot_pairs_from_batch(batch, inputs.by_id, oc.teacher_lang, inputs.n_batch_pairs)
                     if inputs.n_batch_pairs else [])
            ot, ot_stats = distill_loss(student, models.teacher, pairs, (q_states, qb),
                                        (a_states, ab),
                                        inputs.bitext.next() if inputs.bitext else [], cfg, amp)
        loss = task + oc.weight * (ot if ot is not None else 0.0)
        (loss / tc.grad_accum).backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(student.model.parameters(), tc.grad_clip) \
        if tc.grad_clip > 0 else None
    optimizer.step()
    models.scheduler.step()
    return StepLosses(loss, task, ot, ot_stats, cross, grad_norm)


def step_metrics(losses: StepLosses, lr: float, examples_per_s: float,
                 step: int) -> dict[str, float]:
    values: dict[str, float] = {
        TrainKey.LOSS: losses.loss.item(), TrainKey.LOSS_TASK: losses.task.item(),
        TrainKey.LR: lr, TrainKey.BATCH_CROSS: losses.cross,
        TrainKey.EXAMPLES_PER_S: examples_per_s}
    if losses.grad_norm is not None:
        values[TrainKey.GRAD_NORM] = losses.grad_norm.item()
    if losses.ot is not None:
        values.update({TrainKey.LOSS_OT: losses.ot.item(),
                       TrainKey.OT_ITERS: float(losses.ot_stats["iters"]),
                       TrainKey.OT_MARGINAL_ERR: float(losses.ot_stats["marginal_err"])})
    if not all(math.isfinite(v) for v in values.values()):
        raise FloatingPointError(f"non-finite training metric at step {step}: {values}")
    return values


# ---------------------------------------------------------------- the run


def run_training(cfg: Config, run_dir: Path, reporter: Reporter,
                 checkpoints: Checkpoints | None = None, *,
                 model_dir: Path | None = None) -> RunOutcome:
    """Train (resuming if a checkpoint exists), evaluate, checkpoint; done, or stopped to resume.
    `checkpoints` says where to write and read them (a worker attempt's fenced folders); by
    default `run_dir/checkpoints`. With train.save_model the selected model goes to `model_dir`
    (default `run_dir/model`, engine/models/export.py)."""
    run_dir = Path(run_dir)
    ckpts = checkpoints or Checkpoints(run_dir / "checkpoints")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    tc, ec = cfg.train, cfg.eval
    device = resolve_device(tc.device)
    seed_everything(tc.seed)
    use_ot = cfg.ot.weight > 0
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") and tc.bf16
           else contextlib.nullcontext())
    inputs = load_inputs(cfg, use_ot)
    models = build_models(cfg, device, use_ot)
    evals = Evaluations(cfg, device, inputs, models.student, reporter)

    def checkpoint(step: int) -> None:
        save_checkpoint(step, ckpts, cfg, models, inputs, evals.selection, reporter)

    step = resume(ckpts, cfg, models, inputs, evals.selection, reporter)
    if step is None:  # a fresh start: the zero-shot evaluation
        step = 0
        reporter.event(EventKind.INFO, started_message(cfg, inputs, device))
        evals.curve(0)
    reporter.progress(step, tc.steps)

    step_time, examples = 0.0, 0
    while step < tc.steps:
        t0 = time.perf_counter()
        losses = train_step(cfg, models, inputs, amp)
        step += 1
        step_time += time.perf_counter() - t0
        examples += tc.batch_size * tc.grad_accum
        if step % tc.log_every == 0 or step == tc.steps:
            lr = models.scheduler.get_last_lr()[0]
            reporter.metrics(step, step_metrics(losses, lr, examples / max(step_time, 1e-9), step))
            step_time, examples = 0.0, 0
        reporter.progress(step, tc.steps)
        if ec.every and step % ec.every == 0 and step < tc.steps:
            evals.curve(step)
        stop = reporter.should_stop()
        if (tc.checkpoint_every and step % tc.checkpoint_every == 0) or stop or step == tc.steps:
            # the last one lets a run interrupted in its final evaluation skip training
            checkpoint(step)
        if stop and step < tc.steps:
            reporter.event(EventKind.INFO, f"stopped at step {step}; resumes from the checkpoint")
            return RunOutcome.STOPPED
    return finish(step, cfg, evals, reporter, model_dir or run_dir / MODEL_DIR)


def started_message(cfg: Config, inputs: Inputs, device: str) -> str:
    tc = cfg.train
    dev = (f"; dev split: {len(inputs.dev_records)} held-out questions"
           if inputs.dev_records else "")
    return (f"started: {len(inputs.records)} parallel QA records in "
            f"{', '.join(cfg.data.train_langs)}, ratio {tc.ratio} ({tc.mixing}), device {device}, "
            f"OT weight {cfg.ot.weight}{dev}")


def finish(step: int, cfg: Config, evals: Evaluations, reporter: Reporter,
           model_dir: Path) -> RunOutcome:
    """The final evaluations: the quick subset and dev (curve end points), then the selected
    model (train.select) on the full benchmark, and saved."""
    tc, ec = cfg.train, cfg.eval
    evals.curve(step)
    selected = evals.select(step)
    if ec.full_at_end:
        if reporter.should_stop():  # training is checkpointed; a resumed run only evaluates
            reporter.event(EventKind.INFO, f"stopped before the full evaluation at step {step}")
            return RunOutcome.STOPPED
        evals.full(step)
    reporter.metrics(step, {TrainKey.SELECTED_STEP: float(selected)})
    if tc.save_model:
        path = export_encoder(evals.student, model_dir, max_length=ec.max_length, info={
            "source_model": cfg.model.name, "select": tc.select, "selected_step": selected,
            "steps": tc.steps, "eval_batch_size": ec.batch_size, "config": cfg.to_dict()})
        reporter.event(EventKind.INFO, f"model of step {selected} saved to {path}")
    reporter.event(EventKind.INFO, f"done at step {step}")
    return RunOutcome.DONE

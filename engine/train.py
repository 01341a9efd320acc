"""One training run: hybrid batches + OPTICAL-style OT distillation, top to bottom.

    loss = InfoNCE(question -> answer, in-batch negatives, temperature)  +  λ · OT(teacher ‖ student)

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
import json
import math
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from engine.baseline_cache import baseline_key, load_baseline, save_baseline
from engine.batching import BitextSampler, ot_pairs_from_batch
from engine.checkpoint import Checkpoints, rng_state, set_rng_state, trainable_state
from engine.config import Config
from engine.data.loaders import load_bitext, load_lareqa, resolve_data_dir
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
from engine.ot_loss import ot_distill_loss
from engine.statuses import EventKind, RunOutcome


class Reporter(Protocol):
    """Where the loop's output goes. A reporter may also define `before_checkpoint(step)`, called
    right before a checkpoint is written (the store reporter flushes there, so no reported point
    can be lost behind a checkpoint)."""

    def metrics(self, step: int, values: Mapping[str, float]) -> None: ...
    def event(self, kind: str, message: str) -> None: ...
    def progress(self, step: int, total: int) -> None: ...
    def should_stop(self) -> bool: ...


class ListReporter:
    """Keeps everything in lists (tests, `optical run`); `stop_at` requests a stop at that step."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.rows: list[tuple[int, str, float]] = []  # (step, key, value)
        self.events: list[tuple[str, str]] = []
        self.step = 0
        self.total = 0
        self.stop_at = stop_at

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        self.rows.extend((step, k, float(v)) for k, v in values.items())

    def event(self, kind: str, message: str) -> None:
        self.events.append((kind, message))

    def progress(self, step: int, total: int) -> None:
        self.step, self.total = step, total

    def should_stop(self) -> bool:
        return self.stop_at is not None and self.step >= self.stop_at

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(s, v) for s, k, v in self.rows if k == key]

    def latest(self, prefix: str = "") -> dict[str, float]:
        return {k: v for _, k, v in self.rows if k.startswith(prefix)}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup to the peak over `warmup` steps, then linear decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _pad_time(x: torch.Tensor, t: int) -> torch.Tensor:
    """Right-pad dim 1 (tokens) of [P,T,...] to length t (zeros / False)."""
    pad = [0, 0] * (x.dim() - 2) + [0, t - x.shape[1]]
    return F.pad(x, pad)


def _stack_groups(groups: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate (states [P_i,T_i,H], mask [P_i,T_i]) groups of different lengths into one batch."""
    t = max(s.shape[1] for s, _ in groups)
    states = torch.cat([_pad_time(s, t) for s, _ in groups])  # [P,T,H]
    mask = torch.cat([_pad_time(m, t) for _, m in groups])  # [P,T]
    return states, mask


def distill_loss(student: Any, teacher: Any, pairs: list, q: tuple, a: tuple, tatoeba: list, cfg: Config,
                 amp: Any = None) -> tuple[torch.Tensor, dict]:
    """OT term for one micro-batch: batch pairs reuse the task forward's student states
    (q = (states [B,Tq,H], tokens), a likewise); Tatoeba pairs get their own student forward."""
    oc = cfg.ot
    amp = amp or contextlib.nullcontext()
    student_groups, teacher_batches = [], []
    for side, (states, tok), kind in (("question", q, "query"), ("answer", a, "passage")):
        rows = [p.row for p in pairs if p.side == side]
        if rows:
            idx = torch.tensor(rows, device=states.device)
            student_groups.append((states[idx], student.content_mask(tok)[idx]))  # [p,T,H], [p,T]
            teacher_batches.append(teacher.tokenize([p.teacher_text for p in pairs if p.side == side], kind))
    if tatoeba:
        sb = student.tokenize([p.tgt for p in tatoeba], "plain")
        with amp:
            student_groups.append((student.token_states(sb), student.content_mask(sb)))  # [n,T,H], [n,T]
        teacher_batches.append(teacher.tokenize([p.src for p in tatoeba], "plain"))
    if not student_groups:  # e.g. a monolingual batch in the teacher language: nothing to distil
        zero = q[0].sum() * 0.0
        return zero + 0.0, {"iters": 0, "marginal_err": torch.zeros(())}  # + 0.0: no "-0.0" in logs
    with torch.no_grad(), amp:
        teacher_groups = [(teacher.token_states(tb), teacher.content_mask(tb)) for tb in teacher_batches]
    s_states, s_mask = _stack_groups(student_groups)  # [P,Ts,H], [P,Ts]
    t_states, t_mask = _stack_groups(teacher_groups)  # [P,Tt,H], [P,Tt]
    keep = s_mask.any(1) & t_mask.any(1)  # a sentence with no real token has no distribution
    return ot_distill_loss(t_states[keep], t_mask[keep], s_states[keep], s_mask[keep],
                           epsilon=oc.epsilon, max_iter=oc.max_iter, tol=oc.tol, grad=oc.grad)


def run_training(cfg: Config, run_dir: Path, reporter: Reporter,
                 checkpoints: Checkpoints | None = None, *, model_dir: Path | None = None) -> RunOutcome:
    """Train (resuming if a checkpoint exists), evaluate, checkpoint; done, or stopped to resume.
    `checkpoints` says where to write and read them (a worker attempt's fenced folders); by
    default `run_dir/checkpoints`. With train.save_model the selected model goes to `model_dir`
    (default `run_dir/model`, engine/models/export.py)."""
    run_dir = Path(run_dir)
    ckpts = checkpoints or Checkpoints(run_dir / "checkpoints")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    tc, oc, ec = cfg.train, cfg.ot, cfg.eval
    device = resolve_device(tc.device)
    seed_everything(tc.seed)
    use_ot = oc.weight > 0
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") and tc.bf16
           else contextlib.nullcontext())

    # ---- data: parallel QA for hybrid batches, bitext for OT, MLQA-R for evaluation
    data_dir = resolve_data_dir(cfg.data.data_dir)
    records, dev_records = training_records(cfg, data_dir)
    by_id = {r.id: r for r in records}
    sampler = sampler_for(cfg, records)
    n_tatoeba = 0 if not use_ot or oc.bitext == "pairs" else (oc.pairs if oc.bitext == "tatoeba" else max(1, oc.pairs // 2))
    n_batch_pairs = oc.pairs - n_tatoeba if use_ot else 0
    bitext = None
    if n_tatoeba:
        if oc.teacher_lang != "en":
            raise ConfigError("ot.bitext: Tatoeba pairs are English-centred; set ot.teacher_lang = \"en\"")
        bt_langs = [lg for lg in cfg.data.train_langs if lg != "en"]
        bitext = BitextSampler(load_bitext(bt_langs, data_dir), n_tatoeba, tc.seed)
    eval_sets = load_lareqa("mlqa-r", ec.langs, data_dir)
    quick_sets = select_subset(eval_sets, ec.subset_questions, ec.subset_seed)
    groups = {g: tuple(lg for lg in langs_ if lg in ec.langs) for g, langs_ in (("high", ec.high), ("low", ec.low))}
    groups = {g: members for g, members in groups.items() if members}
    # The dev split: held-out training questions in the training languages (engine/data/splits.py).
    dev = dev_sets(dev_records, cfg.data.train_langs, train_source=cfg.data.train_source,
                   train_file=cfg.data.train_file, data_dir=data_dir)
    dev_groups = {g: kept for g, members in (("high", ec.high), ("low", ec.low))
                  if (kept := tuple(lg for lg in members if lg in dev))}
    selection = ModelSelection(tc.select)

    # ---- models: trainable student, frozen teacher (only when OT is on)
    def encoder(name: str) -> Any:
        return load_encoder(name, device=device, query_prefix=cfg.model.query_prefix,
                            passage_prefix=cfg.model.passage_prefix, max_length=cfg.model.max_length)

    student = encoder(cfg.model.name)
    teacher = None
    if use_ot and cfg.model.teacher not in ("", cfg.model.name):
        teacher = encoder(cfg.model.teacher)
    elif use_ot:  # the student's own starting weights: a copy takes a fraction of a second load
        teacher = Encoder(copy.deepcopy(student.model), student.tokenizer, student.device, name=student.name,
                          query_prefix=student.query_prefix, passage_prefix=student.passage_prefix,
                          max_length=student.max_length)
    if teacher is not None:
        teacher.model.requires_grad_(False).eval()
        h_t, h_s = teacher.model.config.hidden_size, student.model.config.hidden_size
        if h_t != h_s:
            raise ConfigError(f"model.teacher: hidden size {h_t} differs from the student's {h_s}; "
                              "token-level OT needs the same width")
    if cfg.model.freeze_embeddings:
        student.model.get_input_embeddings().weight.requires_grad_(False)
    student.model.train()
    params = [(n, p) for n, p in student.model.named_parameters() if p.requires_grad]
    no_decay = [p for n, p in params if p.dim() < 2]  # biases and LayerNorm weights
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in params if p.dim() >= 2], "weight_decay": tc.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, tc.warmup_steps, tc.steps))

    def run_eval(step: int, prefix: str, sets: dict, groups: Mapping[str, tuple[str, ...]],
                 settings: tuple[str, ...] = ec.settings) -> dict[str, float]:
        t0 = time.perf_counter()
        # Step 0 scores the untouched encoder: the same numbers for every run of a sweep, so they
        # are computed once per box and reused (engine/baseline_cache.py).
        key = baseline_key(model=cfg.model.name, query_prefix=cfg.model.query_prefix,
                           passage_prefix=cfg.model.passage_prefix, split=prefix, sets=sets, settings=settings,
                           groups=groups, batch_size=ec.batch_size, max_length=ec.max_length,
                           device=device) if step == 0 else None
        values = load_baseline(key)
        source = "zero-shot baseline reused from cache" if values is not None else "metrics"
        if values is None:
            student.model.eval()
            values = evaluate(student, sets, settings=settings, groups=groups, batch_size=ec.batch_size,
                              max_length=ec.max_length, prefix=prefix)
            student.model.train()
            save_baseline(key, values)
        reporter.metrics(step, values)
        mul = values.get(metric_key(prefix, Setting.MUL, MACRO, MetricName.MAP), float("nan"))
        reporter.event(EventKind.EVAL, f"step {step}: {prefix}/ {source} in {time.perf_counter() - t0:.1f}s "
                               f"(macro mul mAP {mul:.4f})")
        return values

    def evaluations(step: int) -> None:
        """The quick MLQA-R curve point, then the dev split (and model selection) when there is one."""
        run_eval(step, Split.QUICK, quick_sets, groups)
        if dev:
            values = run_eval(step, Split.DEV, dev, dev_groups, settings=tuple(SETTINGS))
            if selection.offer(step, values, student.model):
                reporter.event(EventKind.INFO, f"step {step}: best dev so far "
                                               f"(dev macro mul mAP {values[DEV_SELECTION_KEY]:.4f})")

    def checkpoint(step: int) -> None:
        if hasattr(reporter, "before_checkpoint"):  # optional hook: make reported points durable first
            reporter.before_checkpoint(step)
        try:
            path = ckpts.save(step, {
                "model": trainable_state(student.model), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "sampler": sampler.state_dict(),
                "bitext": bitext.state_dict() if bitext else None, "rng": rng_state(), "config": cfg.to_dict(),
                "selection": selection.state_dict()})
        except OSError as exc:  # a full or failing disk: keep training, the previous checkpoint stays
            reporter.event(EventKind.WARNING, f"checkpoint at step {step} not written: {exc}")
            return
        reporter.event(EventKind.CHECKPOINT, f"checkpoint saved at step {step}: {path.name}")

    # ---- resume from the latest checkpoint, or start with the zero-shot evaluation
    step = 0
    latest = ckpts.load_latest(lambda message: reporter.event(EventKind.WARNING, message))
    if latest is not None:
        state, _ = latest
        student.model.load_state_dict(state["model"], strict=False)  # frozen tensors came from the source
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        if bitext is not None and state["bitext"] is not None:
            bitext.load_state_dict(state["bitext"])
        set_rng_state(state["rng"])
        selection.load_state_dict(state.get("selection"))
        step = int(state["step"])
        if {k: v for k, v in state["config"].items() if k != "eval"} != \
                {k: v for k, v in cfg.to_dict().items() if k != "eval"}:
            reporter.event(EventKind.WARNING, "config differs from the checkpoint's; resuming anyway")
        reporter.event(EventKind.INFO, f"resumed from step {step}")
    else:
        reporter.event(EventKind.INFO, f"started: {len(records)} parallel QA records in {', '.join(cfg.data.train_langs)}, "
                               f"ratio {tc.ratio} ({tc.mixing}), device {device}, OT weight {oc.weight}"
                               + (f"; dev split: {len(dev_records)} held-out questions" if dev_records else ""))
        evaluations(0)
    reporter.progress(step, tc.steps)

    # ---- the loop
    step_time, examples = 0.0, 0
    while step < tc.steps:
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        cross = 0.0
        for _ in range(tc.grad_accum):
            batch = sampler.next_batch()
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
            losses = {"task": F.cross_entropy(logits, torch.arange(len(batch.rows), device=logits.device))}
            if use_ot:
                pairs = ot_pairs_from_batch(batch, by_id, oc.teacher_lang, n_batch_pairs) if n_batch_pairs else []
                losses["ot"], ot_stats = distill_loss(student, teacher, pairs, (q_states, qb), (a_states, ab),
                                                      bitext.next() if bitext else [], cfg, amp)
            loss = losses["task"] + oc.weight * losses.get("ot", 0.0)
            (loss / tc.grad_accum).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(student.model.parameters(), tc.grad_clip) \
            if tc.grad_clip > 0 else None
        optimizer.step()
        scheduler.step()
        step += 1
        step_time += time.perf_counter() - t0
        examples += tc.batch_size * tc.grad_accum

        if step % tc.log_every == 0 or step == tc.steps:
            values: dict[str, float] = {TrainKey.LOSS: loss.item(), TrainKey.LOSS_TASK: losses["task"].item(),
                      TrainKey.LR: scheduler.get_last_lr()[0], TrainKey.BATCH_CROSS: cross,
                      TrainKey.EXAMPLES_PER_S: examples / max(step_time, 1e-9)}
            if grad_norm is not None:
                values[TrainKey.GRAD_NORM] = grad_norm.item()
            if use_ot:
                values.update({TrainKey.LOSS_OT: losses["ot"].item(), TrainKey.OT_ITERS: float(ot_stats["iters"]),
                               TrainKey.OT_MARGINAL_ERR: float(ot_stats["marginal_err"])})
            if not all(math.isfinite(v) for v in values.values()):
                raise FloatingPointError(f"non-finite training metric at step {step}: {values}")
            reporter.metrics(step, values)
            step_time, examples = 0.0, 0
        reporter.progress(step, tc.steps)
        if ec.every and step % ec.every == 0 and step < tc.steps:
            evaluations(step)
        stop = reporter.should_stop()
        if (tc.checkpoint_every and step % tc.checkpoint_every == 0) or stop or step == tc.steps:
            checkpoint(step)  # the last one lets a run interrupted in its final evaluation skip training
        if stop and step < tc.steps:
            reporter.event(EventKind.INFO, f"stopped at step {step}; resumes from the checkpoint")
            return RunOutcome.STOPPED

    # ---- final evaluations: the quick subset and dev (curve end points), then the selected
    # model (train.select) on the full benchmark, and saved
    evaluations(step)
    selected = selection.selected_step(step)
    if selection.restore(student.model):
        reporter.event(EventKind.INFO, f"selected step {selected} by best-dev (dev macro mul mAP "
                                       f"{selection.value:.4f}): the final numbers and the saved model are its")
    if ec.full_at_end:
        if reporter.should_stop():  # training is checkpointed; a resumed run only evaluates
            reporter.event(EventKind.INFO, f"stopped before the full evaluation at step {step}")
            return RunOutcome.STOPPED
        run_eval(step, Split.FULL, eval_sets, groups)
    reporter.metrics(step, {TrainKey.SELECTED_STEP: float(selected)})
    if tc.save_model:
        path = export_encoder(student, model_dir or run_dir / MODEL_DIR, max_length=ec.max_length, info={
            "source_model": cfg.model.name, "select": tc.select, "selected_step": selected, "steps": tc.steps,
            "eval_batch_size": ec.batch_size, "config": cfg.to_dict()})
        reporter.event(EventKind.INFO, f"model of step {selected} saved to {path}")
    reporter.event(EventKind.INFO, f"done at step {step}")
    return RunOutcome.DONE

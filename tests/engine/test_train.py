"""Training loop on real XQuAD-R data with the tiny encoder: learning, gradients, resume, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.batching import HybridSampler, ot_pairs_from_batch
from engine.checkpoint import list_checkpoints
from engine.config import load_config
from engine.data.loaders import load_lareqa, load_parallel_qa
from engine.evaluate import evaluate, select_subset
from engine.models.encoders import load_encoder
from engine.train import ListReporter, distill_loss, run_training

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.toml"

# Missing data fail these tests with a message (tests/conftest.py), never skip them.
pytestmark = pytest.mark.usefixtures("data_dir", "one_torch_thread")



def smoke(*overrides: str):
    return load_config(SMOKE, list(overrides))


def comparable(rep: ListReporter) -> dict[tuple[int, str], float]:
    # Wall-clock throughput is the only legitimately different number between two runs.
    return {(s, k): v for s, k, v in rep.rows if k != "train/examples_per_s"}


def test_distillation_gradients_reach_student_never_teacher() -> None:
    cfg = smoke()
    student = load_encoder("embedded:tiny-random", max_length=32)
    teacher = load_encoder("embedded:tiny-random", max_length=32)
    teacher.model.requires_grad_(False).eval()
    records = load_parallel_qa("xquad-r", ("en", "de", "es", "zh"))
    batch = HybridSampler(records, ("en", "de", "es", "zh"), "0:1", 8, seed=0).next_batch()
    pairs = ot_pairs_from_batch(batch, {r.id: r for r in records}, "en", 8)
    assert pairs
    qb, ab = student.tokenize(batch.questions, "query"), student.tokenize(batch.answers, "passage")
    q, a = (student.token_states(qb), qb), (student.token_states(ab), ab)
    loss, stats = distill_loss(student, teacher, pairs, q, a, [], cfg)
    assert loss.item() > 0 and stats["iters"] >= 1
    loss.backward()
    student_grads = [p.grad for p in student.model.parameters() if p.grad is not None]
    assert student_grads and sum(g.abs().sum().item() for g in student_grads) > 0
    assert all(p.grad is None for p in teacher.model.parameters())


def test_short_run_lowers_the_loss(tmp_path: Path) -> None:
    # A fixed, learnable setting: 30 training questions (the rest held out) in batches of 10,
    # mixing "within" so every batch has the same mono/cross make-up; 40 steps are ~13 passes,
    # so the training loss must fall well below its chance level ln(10) = 2.3.
    cfg = smoke("train.steps=40", "train.mixing=within", "train.batch_size=10",
                "train.warmup_steps=4",
                "train.lr=3e-3", "data.holdout=1160", "train.checkpoint_every=0", "eval.every=0",
                "eval.subset_questions=3", "ot.weight=0")
    rep = ListReporter()
    assert run_training(cfg, tmp_path, rep) == "done"
    losses = [v for _, v in rep.series("train/loss_task")]
    assert len(losses) == 40
    k = 10
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    assert last < 0.75 * first, (first, last)
    lr = [v for _, v in rep.series("train/lr")]
    assert lr[0] < lr[3] and lr[-1] < lr[10]  # warmup, then decay
    assert {s for s, _ in rep.series("eval/macro/mul/map")} == {0, 40}
    assert "train/loss_ot" not in {k for _, k, _ in rep.rows}  # λ = 0: no teacher, no OT metrics


def test_metrics_events_and_checkpoints(tmp_path: Path) -> None:
    rep = ListReporter()
    assert run_training(smoke(), tmp_path, rep) == "done"
    keys = {k for _, k, _ in rep.rows}
    for key in ("train/loss", "train/loss_task", "train/loss_ot", "train/lr", "train/ot_iters",
                "train/ot_marginal_err", "train/batch_cross", "train/examples_per_s",
                "eval/macro/mul/map", "eval/cr/de->en/map"):
        assert key in keys, key
    assert not any(k.startswith("full/") for k in keys)  # smoke: full_at_end = false
    assert {s for s, _ in rep.series("eval/macro/mo/map")} == {0, 3, 6}
    assert {v for _, v in rep.series("train/batch_cross")} <= {0.0, 1.0}
    kinds = [k for k, _ in rep.events]
    assert kinds[0] == "info" and kinds.count("checkpoint") == 2 and "eval" in kinds
    # Only the latest checkpoint is kept, and no temporary file is left behind.
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [6]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000006.pt"]
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 6


@pytest.mark.parametrize("bitext", ["pairs", "both"])
def test_resume_after_interruption_reproduces_the_run(tmp_path: Path, bitext: str) -> None:
    cfg = smoke("train.steps=8", "train.checkpoint_every=0", "eval.every=4", f"ot.bitext={bitext}",
                "train.grad_accum=2")
    full = ListReporter()
    assert run_training(cfg, tmp_path / "a", full) == "done"

    first = ListReporter(stop_at=5)
    assert run_training(cfg, tmp_path / "b", first) == "stopped"
    assert first.step == 5
    assert [s for s, _ in list_checkpoints(tmp_path / "b" / "checkpoints")] == [5]
    second = ListReporter()
    assert run_training(cfg, tmp_path / "b", second) == "done"
    assert ("info", "resumed from step 5") in second.events
    assert min(s for s, _, _ in second.rows) == 6  # no step is reported twice

    resumed = {**comparable(first), **comparable(second)}
    assert resumed == comparable(full)  # bit-for-bit: every loss, lr and eval metric


def test_seeds_differ_and_repeat(tmp_path: Path) -> None:
    def losses(seed: int, d: str) -> list[float]:
        rep = ListReporter()
        run_training(smoke("train.steps=3", f"train.seed={seed}", "eval.subset_questions=3"),
                     tmp_path / d, rep)
        return [v for _, v in rep.series("train/loss")]

    assert losses(1, "x") == losses(1, "y")
    assert losses(1, "x2") != losses(2, "z")


def test_optical_run_cli_json(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from optical_tui.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--config", str(SMOKE), "--set", "train.steps=2",
                                      "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["status"] == "done" and payload["step"] == 2
    assert "eval/macro/mul/map" in payload["metrics"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert any(json.loads(line)["key"] == "train/loss" for line in lines)


def test_optical_run_rejects_bad_config(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from optical_tui.cli import app

    result = CliRunner().invoke(app, ["run", "--config", str(SMOKE), "--set", "train.ratio=0:0",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "invalid ratio" in result.stderr and "Traceback" not in result.output


def test_optical_run_with_a_missing_train_file_leaves_no_run_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from optical_tui.cli import app

    out = tmp_path / "runs" / "bad"
    result = CliRunner().invoke(app, ["run", "--config", str(SMOKE), "--set",
                                      f"data.train_file={tmp_path}/no.jsonl", "--out", str(out),
                                      "--json"])
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: training file not found:"), line
    assert list(tmp_path.iterdir()) == []  # neither the run folder nor the runs/ made for it


def test_batch_larger_than_the_data_is_a_config_error(tmp_path: Path) -> None:
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="batch_size"):
        run_training(smoke("train.batch_size=5000"), tmp_path, ListReporter())


@pytest.mark.slow
def test_default_encoder_demo_config_runs(tmp_path: Path) -> None:
    # The real multilingual-e5-small with OT, as configs/demo.toml, cut to 2 steps.
    cfg = load_config(ROOT / "configs" / "demo.toml", ["train.steps=2", "eval.subset_questions=5"])
    rep = ListReporter()
    assert run_training(cfg, tmp_path, rep) == "done"
    zero_shot = dict(rep.series("eval/macro/mul/map"))[0]
    assert zero_shot > 0.2  # a multilingual retriever, far above the tiny random model's ~0.05
    assert len(rep.series("train/loss_ot")) == 2 and len(rep.series("train/loss")) == 2


# --------------------------------------------------------------------------- model selection


# A seeded tiny-model run whose dev mAP peaks at step 10 of 30 and falls after (0.037 at step 0,
# 0.040 at 10, 0.036-0.038 later); Hindi only on MLQA-R keeps its full benchmark quick.
PEAK_AT_10 = ("data.dev_questions=40", "train.select=best-dev", "train.steps=30", "eval.every=5",
              "train.lr=1e-3", "ot.weight=0", "train.checkpoint_every=0", "train.warmup_steps=5",
              "train.batch_size=32", "train.ratio=1:0", "train.temperature=0.1",
              "eval.subset_questions=3",
              "eval.langs=hi")


def test_best_dev_selects_the_early_peak_and_evaluates_that_model(tmp_path: Path) -> None:
    # The full benchmark and the saved model must be step 10's, not the last step's.
    cfg = smoke(*PEAK_AT_10, "train.save_model=true", "eval.full_at_end=true")
    rep = ListReporter()
    assert run_training(cfg, tmp_path, rep) == "done"
    dev = rep.series("dev/macro/mul/map")
    assert [s for s, _ in dev] == [0, 5, 10, 15, 20, 25, 30]
    best = max(dev, key=lambda sv: sv[1])[0]
    assert best == 10, dev  # the premise: an early peak
    assert rep.series("train/selected_step") == [(30, 10.0)]
    assert any(m.startswith("selected step 10 by best-dev") for _, m in rep.events)
    # Dev is scored in the training languages only, on held-out XQuAD-R questions.
    assert {k.split("/")[2] for _, k, _ in rep.rows if k.startswith("dev/mo/")} == {"en", "de",
                                                                                    "es", "zh"}
    assert dict(rep.series("dev/n_questions"))[0] == 160.0

    # The saved model is step 10's: it reproduces step 10's quick numbers (not step 30's) and
    # the final full/ numbers.
    saved = load_encoder(str(tmp_path / "model"), max_length=cfg.eval.max_length)
    sets = load_lareqa("mlqa-r", ["hi"])
    groups = {"low": ("hi",)}
    quick = evaluate(saved, select_subset(sets, 3, 0), groups=groups,
                     max_length=cfg.eval.max_length)
    full = evaluate(saved, sets, groups=groups, max_length=cfg.eval.max_length, prefix="full")
    at = {(s, k): v for s, k, v in rep.rows}
    key = "eval/macro/mul/map"
    assert quick[key] == pytest.approx(at[(10, key)], abs=1e-6)
    assert abs(at[(30, key)] - at[(10, key)]) > 1e-3  # the last model really is another one
    assert max(abs(full[k] - at[(30, k)]) for k in full) < 1e-6


def test_best_dev_resumes_with_its_best_so_far(tmp_path: Path) -> None:
    # Interrupted after the peak: the kept weights travel in the checkpoint, so the resumed run
    # selects the peak and reports exactly the uninterrupted run's numbers.
    cfg = smoke(*PEAK_AT_10, "eval.full_at_end=true")
    full = ListReporter()
    assert run_training(cfg, tmp_path / "a", full) == "done"
    first = ListReporter(stop_at=12)
    assert run_training(cfg, tmp_path / "b", first) == "stopped"
    second = ListReporter()
    assert run_training(cfg, tmp_path / "b", second) == "done"
    assert ("info", "resumed from step 12") in second.events
    selected = full.series("train/selected_step")
    assert selected == second.series("train/selected_step") == [(30, 10.0)]
    assert {**comparable(first), **comparable(second)} == comparable(full)


def test_best_dev_needs_a_dev_split() -> None:
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="data.dev_questions"):
        smoke("train.select=best-dev")
    with pytest.raises(ConfigError, match="train.select"):
        smoke("train.select=best")


def test_dev_ids_never_reach_training(tmp_path: Path) -> None:
    from engine.data.splits import split_dev

    records = load_parallel_qa("xquad-r", ("en", "de", "es", "zh"))
    train, dev = split_dev(records, 40)
    assert len(dev) == 40 and not {r.id for r in train} & {r.id for r in dev}
    # order-free draw
    assert {r.id for r in split_dev(list(reversed(records)), 40)[1]} == {r.id for r in dev}
    sampler = HybridSampler(train, ("en", "de", "es", "zh"), "1:1", 32, seed=0)
    drawn = {row.id for _ in range(60) for row in sampler.next_batch().rows}
    assert drawn and not drawn & {r.id for r in dev}


# --------------------------------------------------------------------------- your own training data


def test_training_on_a_jsonl_file_with_its_own_dev_split(tmp_path: Path) -> None:
    # 120 XQuAD-R records written as the JSONL an mMARCO conversion produces, plus one record
    # lacking German (skipped: not parallel in every training language).
    records = load_parallel_qa("xquad-r", ("en", "de", "es", "zh"))[:120]
    lines = [json.dumps({"id": r.id, "question": dict(r.question), "answer": dict(r.answer)},
                        ensure_ascii=False)
             for r in records]
    lines.append(json.dumps({"id": "only-en", "question": {"en": "q?"}, "answer": {"en": "a."}}))
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = smoke(f"data.train_file={path}", "data.dev_questions=20", "train.steps=2", "eval.every=0")
    rep = ListReporter()
    assert run_training(cfg, tmp_path / "run", rep) == "done"
    assert rep.events[0][1].startswith("started: 100 parallel QA records")
    # Dev candidates are the held-out records' answers: 20 questions × 4 languages.
    assert dict(rep.series("dev/n_questions"))[0] == 80.0
    assert dict(rep.series("dev/n_candidates"))[0] <= 80.0


def _losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["value"] for r in rows if r["key"] == "train/loss"}


def test_killed_and_resumed_run_draws_the_same_batches(tmp_path: Path) -> None:
    # A real SIGKILL mid-run (issue 18): the resumed run must train on exactly the batches the
    # uninterrupted run drew -- groups deferred, hard negatives and one (X, Y) per cross batch
    # included -- so every step's loss is bit-for-bit the uninterrupted run's.
    sets = ["train.steps=40", "train.checkpoint_every=2", "train.hard_negatives=2",
            "train.cross_pairs=batch",
            "train.ratio=1:1", "train.mixing=within", "eval.every=0", "eval.subset_questions=2",
            "ot.weight=0"]
    args = [str(Path(sys.executable).parent / "optical"), "run", "-c", str(SMOKE), "--json"]
    for s in sets:
        args += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = subprocess.run(args + ["-o", str(tmp_path / "full")], env=env, capture_output=True,
                          text=True, check=False, timeout=600)
    assert full.returncode == 0, full.stderr
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(args + ["-o", str(killed_dir)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        done = [s for s, _ in list_checkpoints(killed_dir / "checkpoints") if s >= 6]
        if done:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    before = _losses(killed_dir)
    assert 6 <= max(before) < 40
    resumed = subprocess.run(args + ["-o", str(killed_dir)], env=env, capture_output=True,
                             text=True, check=False, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert _losses(killed_dir) == _losses(tmp_path / "full")

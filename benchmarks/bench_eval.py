"""Full MLQA-R benchmark: encoding throughput, and scoring+metrics time vs a per-query sklearn
baseline.

    OPTICAL_DATA=../shared/data .venv/bin/python benchmarks/bench_eval.py [--model M] [--reencode]

1. Encodes every distinct MLQA-R text once (4,199 questions + 20,496 distinct sentences of the
   20,534 candidates) with the model and reports texts/s. The embeddings are cached as .npy under
   $OPTICAL_CACHE/bench (default ~/.cache/optical-tui/bench), keyed by model, prefixes, max length
   and the texts, so step 2 can be re-benchmarked without re-encoding.
2. Times `engine.evaluate.score_encoded` (all of Mo, Cr, Mul: scoring + every metric + aggregates)
   from the cached embeddings, best of --repeats runs.
3. Times a straightforward baseline in the same run: per query, a numpy dot product against the
   candidates, `sklearn.metrics.average_precision_score`, `sklearn.metrics.ndcg_score` (k=10) and
   an argsort for R@1/R@10/MRR@10. It runs on every --baseline-stride-th query of each setting and
   pair and is extrapolated linearly to all queries (stated in the JSON); its AP values are
   checked against ours on the same queries.
Writes benchmarks/results/eval.json (and eval.md, the zero-shot table).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import MLQA_LANGS
from engine.data.loaders import load_lareqa
from engine.evaluate import (
    DEFAULT_GROUPS,
    EncodedSets,
    distinct_texts,
    encoded_from_vectors,
    score_encoded,
)
from engine.metric_keys import SETTINGS, MetricName, Split, lang_setting_table, size_key
from engine.models.bundled import build_version, cache_dir

RESULTS = Path(__file__).resolve().parent / "results"


def cache_paths(model: str, qp: str, pp: str, max_length: int, texts: tuple) -> tuple[Path, Path]:
    root = cache_dir() / "bench"
    # The conversion version too: embeddings of an embedded model expire when its conversion
    # changes.
    key = [model, build_version() if model.startswith("embedded:") else "", qp, pp, max_length,
           texts]
    h = hashlib.sha256(json.dumps(key, ensure_ascii=False).encode()).hexdigest()
    slug = model.replace("/", "_").replace(":", "_")
    return (root / f"mlqa-r_{slug}_{h[:12]}_queries.npy",
            root / f"mlqa-r_{slug}_{h[:12]}_passages.npy")


def encode(args: argparse.Namespace, sets: dict, q_texts: tuple,
           p_texts: tuple) -> tuple[np.ndarray, np.ndarray, dict]:
    from engine.models.encoders import load_encoder

    t0 = time.perf_counter()
    encoder = load_encoder(args.model, device=args.device, max_length=args.max_length)
    load_s = time.perf_counter() - t0
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"  {done}/{total} texts, {time.perf_counter() - t0 - load_s:.0f} s", flush=True)

    load_before = os.getloadavg()
    c1, t1 = time.process_time(), time.perf_counter()
    qv = np.asarray(encoder.embed(list(q_texts), "query", batch_size=args.batch_size,
                                  max_length=args.max_length, progress=progress), dtype=np.float32)
    t2 = time.perf_counter()
    pv = np.asarray(encoder.embed(list(p_texts), "passage", batch_size=args.batch_size,
                                  max_length=args.max_length, progress=progress), dtype=np.float32)
    c3, t3 = time.process_time(), time.perf_counter()
    n = len(q_texts) + len(p_texts)
    info = {
        "model_load_s": round(load_s, 2),
        "encode_s": round(t3 - t1, 2),
        "texts": n,
        "texts_per_s": round(n / (t3 - t1), 1),
        "queries_per_s": round(len(q_texts) / (t2 - t1), 1),
        "passages_per_s": round(len(p_texts) / (t3 - t2), 1),
        # The machine is shared: CPU time of this process and the load average put wall time in
        # context.
        "process_cpu_s": round(c3 - c1, 1),
        "texts_per_cpu_s": round(n / max(c3 - c1, 1e-9), 1),
        "torch_threads": __import__("torch").get_num_threads(),
        "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "device": str(encoder.device),
    }
    return qv, pv, info


def baseline(sets: dict, enc: EncodedSets, stride: int, all_metrics: bool) -> dict:
    """Per-query scikit-learn scoring of all three settings on every stride-th query.

    all_metrics=False times only the dot product + average_precision_score (mAP alone)."""
    from sklearn.metrics import average_precision_score, ndcg_score

    langs = list(sets)
    pool = np.concatenate([enc.candidates(y) for y in langs])
    offsets = dict(zip(langs, np.cumsum([0] + [len(sets[y].candidates) for y in langs]),
                       strict=False))
    jobs = []  # (setting, x, targets, candidate matrix, offsets)
    for x in langs:
        for y in langs:
            jobs.append(("mo" if x == y else "cr", x, [y], enc.candidates(y), {y: 0}))
        jobs.append(("mul", x, langs, pool, offsets))
    timed, cpu, total, aps = 0.0, 0.0, 0, []
    n_sampled = 0
    for _setting, x, targets, cands, offs in jobs:
        qvecs = enc.queries(x)
        items = []
        for i, q in enumerate(sets[x].questions):
            rel = [int(offs[y]) + sets[y].answer[q.id] for y in targets if q.id in sets[y].answer]
            if rel:
                items.append((i, rel))
        total += len(items)
        sample = items[::stride]
        n_sampled += len(sample)
        c0, t0 = time.process_time(), time.perf_counter()
        for i, rel in sample:
            scores = cands @ qvecs[i]
            y_true = np.zeros(len(scores), dtype=bool)
            y_true[rel] = True
            aps.append(average_precision_score(y_true, scores))
            if all_metrics:
                ndcg_score(y_true[None], scores[None], k=10)
                order = np.argsort(-scores)
                ranks = np.flatnonzero(y_true[order]) + 1
                _r1, _r10 = (ranks <= 1).mean(), (ranks <= 10).mean()
                _mrr = 1 / ranks[0] if ranks[0] <= 10 else 0.0
        timed += time.perf_counter() - t0
        cpu += time.process_time() - c0
    scale = total / max(1, n_sampled)
    return {"timed_s": timed, "sampled_queries": n_sampled, "total_queries": total,
            "extrapolated_s": timed * scale, "extrapolated_cpu_s": cpu * scale, "aps": aps}


def ours_sampled_aps(sets: dict, enc: EncodedSets, stride: int) -> list[float]:
    """Our AP on exactly the baseline's sampled queries, in the same order (for the agreement
    check)."""
    from engine.metrics import embedding_metrics

    langs = list(sets)
    pool = np.concatenate([enc.candidates(y) for y in langs])
    offsets = dict(zip(langs, np.cumsum([0] + [len(sets[y].candidates) for y in langs]),
                       strict=False))
    out: list[float] = []
    for x in langs:
        jobs = [([y], enc.candidates(y), {y: 0}) for y in langs] + [(langs, pool, offsets)]
        for targets, cands, offs in jobs:
            items = []
            for i, q in enumerate(sets[x].questions):
                rel = [int(offs[y]) + sets[y].answer[q.id] for y in targets
                       if q.id in sets[y].answer]
                if rel:
                    items.append((i, np.array(rel)))
            sample = items[::stride]
            if sample:
                m = embedding_metrics(enc.queries(x)[[i for i, _ in sample]], cands,
                                      [r for _, r in sample])
                out.extend(m[MetricName.MAP].tolist())
    return out


def markdown(metrics: dict, model: str, info: dict, score_s: float) -> str:
    table = lang_setting_table(metrics.get, Split.FULL, MLQA_LANGS, SETTINGS, DEFAULT_GROUPS)
    lines = ["| query lang | " + " | ".join(table.columns) + " |",
             "|---" * (len(table.columns) + 1) + "|"]
    for row in table.rows:
        cells = ["–" if v is None else f"{v:.1f}" if "rank" in col else f"{v:.3f}"
                 for v, col in zip(row.values, table.columns, strict=True)]
        label = (row.label if row.unit.kind == "lang"
                 else f"**{row.label}**" if row.unit.kind == "macro" else f"*{row.label}*")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"{model}, zero-shot; encoding {info.get('texts_per_s', '?')} texts/s "
                 f"({info.get('device', '?')}), scoring+metrics of all three settings "
                 f"{score_s:.2f} s.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:multilingual-e5-small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--reencode", action="store_true", help="ignore cached embeddings")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline-stride", type=int, default=10)
    ap.add_argument("--out", type=Path, default=RESULTS / "eval.json")
    args = ap.parse_args()

    sets = load_lareqa("mlqa-r")
    q_texts, p_texts, _, _ = distinct_texts(sets)
    qpath, ppath = cache_paths(args.model, "query: ", "passage: ", args.max_length,
                               (q_texts, p_texts))
    if qpath.exists() and ppath.exists() and not args.reencode:
        print(f"cached embeddings: {qpath.parent}", flush=True)
        qv, pv = np.load(qpath), np.load(ppath)
        previous = json.loads(args.out.read_text()) if args.out.exists() else {}
        info = previous.get("encoding", {}) | {"cached": True}
    else:
        print(f"encoding {len(q_texts) + len(p_texts)} distinct texts with {args.model} ...",
              flush=True)
        qv, pv, info = encode(args, sets, q_texts, p_texts)
        qpath.parent.mkdir(parents=True, exist_ok=True)
        np.save(qpath, qv)
        np.save(ppath, pv)
        print(f"encoded at {info['texts_per_s']} texts/s; cached in {qpath.parent}", flush=True)

    t0 = time.perf_counter()
    enc = encoded_from_vectors(sets, qv, pv)
    wrap_s = time.perf_counter() - t0
    score_load = os.getloadavg()[0]
    times, cpu_times, per_setting = [], [], {}
    for _ in range(args.repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        metrics = score_encoded(sets, enc, prefix=Split.FULL)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    for s in ("mo", "cr", "mul"):
        t0 = time.perf_counter()
        score_encoded(sets, enc, settings=(s,), prefix=Split.FULL)
        per_setting[s] = round(time.perf_counter() - t0, 3)
    score_s, score_cpu_s = min(times), min(cpu_times)
    print(f"scoring+metrics, all settings: best {score_s:.2f} s of {args.repeats}", flush=True)

    base = baseline(sets, enc, args.baseline_stride, all_metrics=True)
    base_ap = baseline(sets, enc, args.baseline_stride, all_metrics=False)
    ours = ours_sampled_aps(sets, enc, args.baseline_stride)
    ap_diff = float(np.max(np.abs(np.array(ours) - np.array(base["aps"]))))
    for name, b in (("all metrics", base), ("AP only", base_ap)):
        print(f"baseline ({name}): {b['timed_s']:.1f} s on "
              f"{b['sampled_queries']}/{b['total_queries']} queries "
              f"-> {b['extrapolated_s']:.1f} s ({b['extrapolated_cpu_s']:.1f} CPU s) extrapolated",
              flush=True)
    print(f"ours: {score_s:.2f} s wall, {score_cpu_s:.2f} CPU s", flush=True)
    print(f"max |AP diff| ours vs sklearn on the sampled queries: {ap_diff:.2e}", flush=True)

    result = {
        "benchmark": "MLQA-R full (dev), all of Mo/Cr/Mul",
        "model": args.model,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "n_questions": int(metrics[size_key(Split.FULL, "n_questions")]),
        "n_candidates": int(metrics[size_key(Split.FULL, "n_candidates")]),
        "distinct_texts": {"queries": len(q_texts), "passages": len(p_texts)},
        "encoding": info,
        "scoring": {
            "seconds_best": round(score_s, 3),
            "seconds_all_runs": [round(t, 3) for t in times],
            # CPU seconds of this process (all threads): less sensitive to other jobs on a shared
            # box.
            "cpu_seconds_best": round(score_cpu_s, 3),
            "seconds_per_setting": per_setting,
            "wrap_embeddings_s": round(wrap_s, 3),
            "target_s": 5.0,
            "loadavg_1min": round(score_load, 2),
        },
        "baseline_sklearn_per_query": {
            "description": "per query: numpy dot, sklearn average_precision_score + "
                           "ndcg_score(k=10), argsort "
                           "for R@1/R@10/MRR@10",
            "sampled_queries": base["sampled_queries"],
            "total_queries": base["total_queries"],
            "stride": args.baseline_stride,
            "timed_s": round(base["timed_s"], 2),
            "extrapolated_full_s": round(base["extrapolated_s"], 1),
            "ap_only_timed_s": round(base_ap["timed_s"], 2),
            "ap_only_extrapolated_full_s": round(base_ap["extrapolated_s"], 1),
            "extrapolated_full_cpu_s": round(base["extrapolated_cpu_s"], 1),
            "ap_only_extrapolated_full_cpu_s": round(base_ap["extrapolated_cpu_s"], 1),
            "extrapolated": args.baseline_stride > 1,
            "max_abs_ap_diff_vs_ours": ap_diff,
        },
        "speedup_vs_baseline": round(base["extrapolated_s"] / score_s, 1),
        "speedup_vs_ap_only_baseline": round(base_ap["extrapolated_s"] / score_s, 1),
        "speedup_vs_baseline_cpu": round(base["extrapolated_cpu_s"] / score_cpu_s, 1),
        "speedup_vs_ap_only_baseline_cpu": round(base_ap["extrapolated_cpu_s"] / score_cpu_s, 1),
        "metrics": metrics,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    args.out.with_suffix(".md").write_text(markdown(metrics, args.model, info, score_s))
    print(f"speedup vs per-query sklearn: {result['speedup_vs_baseline']}x (all metrics), "
          f"{result['speedup_vs_ap_only_baseline']}x (AP only); in CPU time "
          f"{result['speedup_vs_baseline_cpu']}x, "
          f"{result['speedup_vs_ap_only_baseline_cpu']}x; wrote {args.out}", flush=True)
    print(markdown(metrics, args.model, info, score_s))


if __name__ == "__main__":
    main()

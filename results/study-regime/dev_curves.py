"""Each stage-2 run's dev curve (100 held-out XQuAD-R questions, never MLQA-R), read from the
queue database through the tool's own store: the model-selection signal, and the only signal
for the seed-1 runs that did not reach their full-benchmark evaluation in the session.

    PYTHONPATH=. python results/study-regime/dev_curves.py /work/scratch/s2/stage2.db \
        > results/study-regime/dev_curves.md
"""

from __future__ import annotations

import sys

from engine.store import open_store

KEYS = ("dev/macro/mul/map", "dev/macro/cr/map", "dev/macro/mo/map")


def main(db: str) -> None:
    print("# Stage 2: dev macro mAP by step (held-out XQuAD-R questions)\n")
    print(f"Made by `dev_curves.py` from `{db}`.\n")
    with open_store(db) as store:
        runs = [e for e in store.list_experiments(name="study-regime") if e.started_at]
        for key in KEYS:
            print(f"## {key}\n")
            points = {e.id: {m.step: m.value for m in store.metrics(e.id) if m.key == key}
                      for e in runs}
            steps = sorted({s for p in points.values() for s in p})
            print("| run | ratio | seed | status | " + " | ".join(map(str, steps)) + " |")
            print("|---|---|---|---|" + "---:|" * len(steps))
            for e in runs:
                cells = [f"{points[e.id][s]:.3f}" if s in points[e.id] else "" for s in steps]
                print(f"| #{e.id} | {e.ratio} | {e.seed} | {e.status} | " + " | ".join(cells) + " |")
            print()


if __name__ == "__main__":
    main(sys.argv[1])

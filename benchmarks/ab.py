"""A benchmark before and after a change, in the same run: is the change slower?

    .venv/bin/python benchmarks/ab.py --ref REV [--runs 4] [--out FILE] \
        -- benchmarks/bench_store_backends.py --skip-tui

Checks REV out into a temporary git worktree, then runs the benchmark script from that tree and
from this one, alternating which goes first (ABBA…), so that neither side always follows the
other (the machine is shared and noisy, and a run can slow the next one). Each run writes its
JSON through the script's own `--out`; every numeric leaf of it is reported as the median of the
runs, with the ratio after / before. Each side runs with its own tree on PYTHONPATH, ahead of this
virtual environment's editable install (which points at this tree), so each measures its own code
with the same libraries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def numeric_leaves(value: Any, prefix: str = "") -> dict[str, float]:
    """`{"a": {"b": 1.5}, "c": [2]}` → `{"a.b": 1.5, "c.0": 2.0}` (booleans are not numbers)."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, int | float):
        return {prefix: float(value)}
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    found: dict[str, float] = {}
    for key, child in items:
        found |= numeric_leaves(child, f"{prefix}.{key}" if prefix else str(key))
    return found


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median of each key that every run reported."""
    keys = set.intersection(*(set(r) for r in runs)) if runs else set()
    return {k: statistics.median(r[k] for r in runs) for k in sorted(keys)}


def _run(tree: Path, script: list[str], out: Path) -> dict[str, float]:
    cmd = [sys.executable, str(tree / script[0]), *script[1:], "--out", str(out)]
    print(f"$ {shlex.join(cmd)}", flush=True)
    env = dict(os.environ, PYTHONPATH=str(tree))
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return numeric_leaves(json.loads(out.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="the 'before' commit (any git revision)")
    parser.add_argument("--runs", type=int, default=4, help="runs of each side")
    parser.add_argument("--out", type=Path, help="write the medians and ratios here as JSON")
    parser.add_argument("script", nargs="+",
                        help="the benchmark script (relative to the repo) and its arguments")
    args = parser.parse_args()
    before_rev = subprocess.run(["git", "rev-parse", "--short", args.ref], cwd=REPO, check=True,
                                capture_output=True, text=True).stdout.strip()
    after_rev = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, check=True,
                               capture_output=True, text=True).stdout.strip()
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="optical-ab-") as tmp:
        before_tree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(before_tree), before_rev],
                       cwd=REPO, check=True)
        trees = {"before": before_tree, "after": REPO}
        try:
            for i in range(args.runs):
                order = ("before", "after") if i % 2 == 0 else ("after", "before")
                for side in order:
                    runs[side].append(_run(trees[side], args.script,
                                           Path(tmp) / f"{side}-{i}.json"))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)], cwd=REPO,
                           check=False)
    before, after = medians(runs["before"]), medians(runs["after"])
    rows = {k: {"before": before[k], "after": after[k],
                "after_over_before": round(after[k] / before[k], 3) if before[k] else None}
            for k in sorted(set(before) & set(after))}
    width = max((len(k) for k in rows), default=10)
    print(f"\n{'median of ' + str(args.runs) + ' runs':{width}}  {before_rev:>12}  "
          f"{after_rev:>12}  after/before")
    for key, row in rows.items():
        ratio = row["after_over_before"]
        print(f"{key:{width}}  {row['before']:12.4g}  {row['after']:12.4g}  "
              f"{'' if ratio is None else f'{ratio:.3f}'}")
    if args.out:
        args.out.write_text(json.dumps({
            "command": shlex.join(["benchmarks/ab.py", "--ref", args.ref, "--runs",
                                   str(args.runs), "--", *args.script]),
            "before": before_rev, "after": after_rev, "runs_each": args.runs,
            "order": "alternating, before first in even runs",
            "setup": {"python": platform.python_version(), "machine": platform.machine(),
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
            "medians": rows, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()

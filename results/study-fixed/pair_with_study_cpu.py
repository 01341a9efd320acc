"""Pair stage 1 (the fixed sampler) with the committed study-cpu runs at λ = 0, seed by seed.

    python results/study-fixed/pair_with_study_cpu.py > results/study-fixed/pairing.md

Reads the per-run values that `optical report --format json` wrote (the `runs` list of
results/study-cpu/{mul,mo,cr}.json, keeping ot.weight = 0, and results/study-fixed/{…}.json) and
uses the tool's own paired statistics (engine/study/core.py `paired_difference`: mean, 95 %
t-interval over the seeds both have). Both stages score the same 150-questions-per-language
MLQA-R subset with the same config; only the code differs (no shared answers in a batch, zh
training text without inserted spaces).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from engine.study.core import paired_difference  # noqa: E402

RATIOS = ("1:0", "1:1", "0:1")
UNITS = ("macro:all", "group:high", "group:low")


def runs(path: Path, lam0_only: bool) -> dict[tuple[str, int], dict[str, float]]:
    out = {}
    for r in json.loads(path.read_text())["runs"]:
        if lam0_only and float(r["factors"].get("ot.weight", 0)) != 0.0:
            continue
        out[(r["ratio"], int(r["seed"]))] = r["values"]
    return out


def by_seed(table: dict, ratio: str, unit: str) -> dict[int, float]:
    return {seed: v[unit] for (rt, seed), v in table.items() if rt == ratio and unit in v}


def fmt(d) -> str:
    return f"{d.mean:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}]"


def main() -> None:
    print("# Stage 1 paired with the committed study-cpu runs (λ = 0)\n")
    print("Made by `python results/study-fixed/pair_with_study_cpu.py`; mean over seeds 0-2 of the")
    print("paired difference, [95 % t-interval]. MLQA-R mAP on the fixed 1,050-query subset.\n")
    payload: dict = {}
    for setting in ("mul", "cr", "mo"):
        old = runs(ROOT / "results" / "study-cpu" / f"{setting}.json", lam0_only=True)
        new = runs(HERE / f"{setting}.json", lam0_only=False)
        print(f"## {setting.capitalize()}\n")
        print("| unit | ratio | fixed − committed | 0:1 − 1:0, committed | 0:1 − 1:0, fixed | 1:1 "
              "− 1:0, committed "
              "| 1:1 − 1:0, fixed |")
        print("|---|---|---|---|---|---|---|")
        for unit in UNITS:
            for ratio in RATIOS:
                fix = paired_difference(by_seed(new, ratio, unit), by_seed(old, ratio, unit))
                cells = [fmt(fix)]
                if ratio == "1:0":
                    for other in ("0:1", "1:1"):
                        for table in (old, new):
                            d = paired_difference(by_seed(table, other, unit),
                                                  by_seed(table, "1:0", unit))
                            cells.append(fmt(d))
                            key = f"{other}-1:0/{'fixed' if table is new else 'committed'}"
                            payload.setdefault(setting, {}).setdefault(unit, {})[key] = d.__dict__
                    cells = [cells[0], cells[1], cells[2], cells[3], cells[4]]
                else:
                    cells += ["", "", "", ""]
                by_unit = payload.setdefault(setting, {}).setdefault(unit, {})
                by_unit[f"{ratio}/fixed-committed"] = fix.__dict__
                print(f"| {unit} | {ratio} | " + " | ".join(cells) + " |")
        print()
    (HERE / "pairing.json").write_text(json.dumps(payload, indent=1, default=list) + "\n")


if __name__ == "__main__":
    main()

"""The statistics a study reports: mean, sample sd and a 95% Student-t interval over seeds, and
paired differences by seed with their t-test. Plain numbers in, no study knowledge."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stat:
    """Mean, sample sd (ddof=1) and 95% t-interval of n values; sd/CI are NaN when n < 2."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class PairedDiff:
    """Mean of a − b over runs paired by seed, its 95% t-interval and paired t-test."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    t: float
    p_value: float
    seeds: tuple[int, ...]


def _t_quantile(df: int, level: float = 0.95) -> float:
    from scipy import stats  # lazy: only reports need it

    return float(stats.t.ppf(0.5 + level / 2, df))


def describe(values: Sequence[float], level: float = 0.95) -> Stat:
    n = len(values)
    if n == 0:
        nan = float("nan")
        return Stat(0, nan, nan, nan, nan)
    mean = math.fsum(values) / n
    if n < 2:
        nan = float("nan")
        return Stat(1, mean, nan, nan, nan)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = _t_quantile(n - 1, level) * sd / math.sqrt(n)
    return Stat(n, mean, sd, mean - half, mean + half)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float],
                      level: float = 0.95) -> PairedDiff:
    """a − b on the seeds both have. Two-sided p of the paired t-test (t = mean / (sd/√n))."""
    from scipy import stats

    seeds = tuple(sorted(set(a) & set(b)))
    diffs = [a[s] - b[s] for s in seeds]
    d = describe(diffs, level)
    t = p = float("nan")
    if d.n >= 2:
        se = d.sd / math.sqrt(d.n)
        if se > 0:
            t = d.mean / se
            p = float(2 * stats.t.sf(abs(t), d.n - 1))
        else:  # identical differences: no spread, the test is undefined unless they are all 0
            t, p = (0.0, 1.0) if d.mean == 0 else (math.copysign(math.inf, d.mean), 0.0)
    return PairedDiff(d.n, d.mean, d.sd, d.ci_low, d.ci_high, t, p, seeds)

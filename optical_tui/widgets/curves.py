"""Line plots drawn in the terminal (textual-plotext), fed plain series, redrawn only on change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from textual_plotext import PlotextPlot

# Fixed colours per series index, so the same language keeps its colour across redraws.
PALETTE = ("cyan", "orange", "green", "magenta", "red", "blue", "yellow", "white")


@dataclass(frozen=True)
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]
    yerr: Sequence[float] | None = None


class CurvePlot(PlotextPlot):
    """A plot that keeps its last series and redraws itself when they change."""

    def __init__(self, title: str = "", *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._title = title
        self._series: tuple[Series, ...] = ()
        self._xlabel = ""
        self._xticks: tuple[Sequence[float], Sequence[str]] | None = None
        self._empty = "no data yet"

    @property
    def series(self) -> tuple[Series, ...]:
        return self._series

    def show(self, series: Sequence[Series], title: str | None = None, xlabel: str = "step",
             xticks: tuple[Sequence[float], Sequence[str]] | None = None,
             empty: str = "no data yet") -> None:
        series = tuple(s for s in series if len(s.x))
        if (series, title or self._title, xlabel, xticks, empty) == (
                self._series, self._title, self._xlabel, self._xticks, self._empty):
            return
        self._series, self._xlabel, self._xticks, self._empty = series, xlabel, xticks, empty
        if title is not None:
            self._title = title
        self._draw()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self._title if self._series else f"{self._title} — {self._empty}")
        plt.xlabel(self._xlabel)
        # About one point per column: plotext joins points with lines at braille resolution,
        # so denser data cannot show and only costs build time.
        limit = max(self.size.width or 100, 50)
        for i, s in enumerate(self._series):
            colour = PALETTE[i % len(PALETTE)]
            x, y = thin(s.x, limit), thin(s.y, limit)
            plt.plot(x, y, label=s.label, color=colour, marker="braille")
            if s.yerr is not None:
                plt.error(list(s.x), list(s.y), yerr=list(s.yerr), color=colour)
        if self._xticks is not None:
            plt.xticks(list(self._xticks[0]), list(self._xticks[1]))
        ys = [v for s in self._series for v in s.y]
        if ys and 0 < max(abs(v) for v in ys) < 1e-2:
            # Learning rates: plotext would print 0.0000180; scientific notation reads better.
            lo, hi = min(ys), max(ys)
            ticks = [lo + (hi - lo) * i / 4 for i in range(5)] if hi > lo else [lo]
            plt.yticks(ticks, [f"{t:.1e}" for t in ticks])
        self.refresh()


def thin(values: Sequence[float], limit: int) -> list[float]:
    """At most about `limit` evenly spaced values, always keeping the last (the newest point)."""
    n = len(values)
    if n <= limit:
        return list(values)
    stride = -(-n // limit)
    out = list(values[::stride])
    if (n - 1) % stride:
        out.append(values[-1])
    return out


def points(by_step: Mapping[int, float]) -> tuple[list[float], list[float]]:
    """A step -> value series as sorted x and y lists."""
    steps = sorted(by_step)
    return [float(s) for s in steps], [by_step[s] for s in steps]

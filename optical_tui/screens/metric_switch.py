"""The Mo/Cr/Mul and metric switches shared by the experiment and ratio-study screens."""

from __future__ import annotations

from engine.metric_keys import MetricName, metric_allowed
from optical_tui.screens.experiment_data import next_metric


class MetricSwitchMixin:
    """`1`/`2`/`3` pick the setting, `m` cycles the metric; the screen redraws itself."""

    setting: str
    metric: str

    def _redraw(self) -> None:  # pragma: no cover - every screen using the mixin defines it
        raise NotImplementedError

    def action_setting(self, setting: str) -> None:
        self.setting = setting
        if not metric_allowed(setting, self.metric):  # rank distance exists only for Mul
            self.metric = MetricName.MAP
        self._redraw()

    def action_metric(self) -> None:
        self.metric = next_metric(self.setting, self.metric)
        self._redraw()

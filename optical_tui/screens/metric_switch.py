"""The Mo/Cr/Mul and metric switches shared by the experiment, ratio-study and compare screens."""

from __future__ import annotations

from textual.binding import Binding
from textual.reactive import var
from textual.screen import Screen

from engine.metric_keys import SETTINGS, MetricName, Setting, metric_allowed
from optical_tui.experiment_data import next_metric

_SETTING_TIPS = {Setting.MO: "questions and answers in the same language",
                 Setting.CR: "answers in another language (mean over pairs)",
                 Setting.MUL: "answers pooled from all languages"}
_METRIC_TIP = "map, r@1, r@10, mrr@10, ndcg@10, rank distance (Mul)"


def switch_bindings(*, explain: bool = False,
                    group: Binding.Group | None = None) -> list[Binding]:
    """`1`/`2`/`3` (the setting, in `group`) and `m` (the metric); `explain`: say what each means
    in the tooltip (the help screen lists them once, under the experiment screen)."""
    settings = [Binding(str(i), f"setting('{s}')", s.label, group=group,
                        tooltip=f"setting {s.label}" + (f": {_SETTING_TIPS[s]}" if explain else ""))
                for i, s in enumerate(SETTINGS, 1)]
    metric = Binding("m", "metric", "Metric",
                     tooltip="next metric" + (f": {_METRIC_TIP}" if explain else ""))
    return [*settings, metric]


class MetricSwitchScreen(Screen[None]):
    """`1`/`2`/`3` pick the setting, `m` cycles the metric. Both are reactive: each screen watches
    them (`watch_setting`, `watch_metric`) and repaints what depends on them."""

    setting: var[str] = var(Setting.MUL, init=False)
    metric: var[str] = var(MetricName.MAP, init=False)

    def action_setting(self, setting: str) -> None:
        if not metric_allowed(setting, self.metric):  # rank distance exists only for Mul
            # Set quietly: the setting's watcher below repaints once, with both changed.
            self.set_reactive(MetricSwitchScreen.metric, MetricName.MAP)
        self.setting = setting

    def action_metric(self) -> None:
        self.metric = next_metric(self.setting, self.metric)

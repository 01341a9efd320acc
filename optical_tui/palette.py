"""Command palette (ctrl+p): open any experiment or sweep, queue, filter, sort, help."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher

from engine.statuses import Status
from engine.sweep import factors_text
from optical_tui.console import safe
from optical_tui.routes import routes


class OpticalCommands(Provider):
    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app = routes(self.app)
        experiments = app.live.experiments if app.live is not None else ()
        out: list[tuple[str, Callable[[], object], str]] = [
            ("New experiment", app.open_new_experiment, "queue ratios × seeds"),
            ("Help: key bindings", app.action_help, "every key of every screen"),
            ("Queue: show all statuses", partial(app.queue_filter, None),
             "clear the status filter"),
        ]
        out += [(f"Queue: show only {s}", partial(app.queue_filter, s), f"filter by status {s}")
                for s in Status]
        out += [(f"Queue: sort by {k}", partial(app.queue_sort, k), "")
                for k in ("id", "name", "ratio", "status", "metric")]
        # Names are stored verbatim: each entry shows them through `safe` (and as Content, not
        # markup).
        for name in sorted({e.name for e in experiments}):
            out.append((safe(f"Ratio study: {name}"), partial(app.open_study, name),
                        "final metric vs ratio, split by the sweep's factors"))
        for e in experiments:
            factors = f" {factors_text(e.factors)}" if e.factors else ""
            out.append((safe(f"Open #{e.id} {e.name} {e.ratio}{factors} seed {e.seed} "
                             f"({e.status})"),
                        partial(app.open_experiment, e.id),
                        "curves, losses, eval table, config, events"))
        return out

    async def discover(self) -> Hits:
        for text, callback, help_text in self._commands():
            yield DiscoveryHit(Content(text), callback, text=text, help=help_text)

    async def search(self, query: str) -> AsyncIterator[Hit]:
        matcher = self.matcher(query)
        for text, callback, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, _highlight(matcher, text), callback, text=text, help=help_text)


def _highlight(matcher: Matcher, text: str) -> Content:
    """`Matcher.highlight` without reading `text` as markup: a sweep name may hold [brackets]."""
    content = Content(text)
    _score, offsets = matcher.fuzzy_search.match(matcher.query, text)
    for offset in offsets:
        if not text[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content

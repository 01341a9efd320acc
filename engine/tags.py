"""Tags and notes: the user's own labels on experiments (`queue add --tag`, `optical tag`,
`optical note`). What a valid tag is, how `+x -y` changes read, and which runs a filter keeps;
the store only keeps the result (engine/store/)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from engine.errors import ConfigError

#: A tag is one word a shell, a CSV cell and a `--tag a,b` list keep intact: letters, digits and
#: `_ . : / = @ -`, not starting with `+` or `-` (those say add or remove), at most 40 characters.
TAG_PATTERN = re.compile(r"[^\W_][\w.:/=@-]{0,39}|_[\w.:/=@-]{0,39}")
#: A note is free text, but a database row is not a document store.
NOTE_MAX = 4000


def check_tag(text: str) -> str:
    tag = text.strip()
    if not TAG_PATTERN.fullmatch(tag):
        shown = tag[:50] + ("…" if len(tag) > 50 else "")
        raise ConfigError(
            f"tag {shown!r}: a tag is 1 to 40 letters, digits or _ . : / = @ -, "
            "not starting with + or -, without spaces or commas"
        )
    return tag


def parse_tags(values: Iterable[str]) -> tuple[str, ...]:
    """`--tag a --tag b,c` -> ("a", "b", "c"): checked, sorted, each once."""
    return tuple(sorted({check_tag(t) for v in values for t in v.split(",") if t.strip()}))


def parse_changes(words: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`+x -y z` -> (add ("x", "z"), remove ("y",)); a tag both added and removed is refused."""
    add: set[str] = set()
    remove: set[str] = set()
    for w in words:
        if w.startswith("-"):
            remove.add(check_tag(w[1:]))
        else:
            add.add(check_tag(w.removeprefix("+")))
    both = add & remove
    if both:
        raise ConfigError(f"tag {min(both)!r} is both added and removed")
    if not add and not remove:
        raise ConfigError(
            "no tag change: give +TAG to add and -TAG to remove, e.g. +baseline -draft"
        )
    return tuple(sorted(add)), tuple(sorted(remove))


def changed(
    tags: Iterable[str], add: Iterable[str] = (), remove: Iterable[str] = ()
) -> tuple[str, ...]:
    """The tags after a change, sorted."""
    return tuple(sorted((set(tags) | set(add)) - set(remove)))


def check_note(text: str) -> str:
    note = text.strip()
    if len(note) > NOTE_MAX:
        raise ConfigError(f"the note is {len(note)} characters; at most {NOTE_MAX} fit")
    return note


def has_tags(tags: Iterable[str], wanted: Iterable[str]) -> bool:
    """A `--tag` filter: every wanted tag is on the run."""
    return set(wanted) <= set(tags)


def change_text(add: Iterable[str], remove: Iterable[str]) -> str:
    """`+x -y`, as the event log records a change."""
    return " ".join([*(f"+{t}" for t in add), *(f"-{t}" for t in remove)])

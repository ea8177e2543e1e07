"""Reading the event log (``state/events.py`` writes it): Docker's ``--filter`` keys and
following it live, woken by an inotify watch on the data root rather than polling."""

from __future__ import annotations

from tsubo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

FILTER_KEYS = ("type", "event", "container", "image", "network", "volume", "label")


def event_matcher(filters: list[str]) -> Callable[[dict[str, Any]], bool]:
    """A test of an event against ``KEY=VALUE`` filters: every key must match, a key
    given several times matches any of its values (Docker's rule)."""
    wanted: dict[str, list[str]] = {}
    for text in filters:
        key, sep, value = text.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise InvalidArgument("parse --filter", text,
                                  detail=f"expected {', '.join(k + '=' for k in FILTER_KEYS)}")
        wanted.setdefault(key, []).append(value)

    def match(event: dict[str, Any]) -> bool:
        kind = event.get("Type")
        action = str(event.get("Action", ""))
        actor = event.get("Actor") or {}
        actor_id = str(actor.get("ID", ""))
        attributes = actor.get("Attributes") or {}
        names = {actor_id, str(attributes.get("name", ""))}
        for key, values in wanted.items():
            if key == "type" and kind not in values:
                return False
            if key == "event" and not any(action == value or action.startswith(value + ":")
                                          for value in values):
                return False
            if key in ("container", "image", "network", "volume"):
                if kind != key and not (key == "image" and kind == "container"):
                    return False
                candidates = {str(attributes.get("image", ""))} if kind != key else names
                if not any(value in candidates or (len(value) >= 3 and
                                                   actor_id.startswith(value))
                           for value in values):
                    return False
            if key == "label" and not any(
                    attributes.get(value.partition("=")[0]) is not None and
                    (not value.partition("=")[1] or
                     attributes.get(value.partition("=")[0]) == value.partition("=")[2])
                    for value in values):
                return False
        return True

    return match


def stream_events(data_root: str, *, since: float | None, until: float | None,
                  filters: list[str], follow: bool) -> Iterator[dict[str, Any]]:
    """The matching events, then (*follow*) the new ones as they are written."""
    from tsubo.state.events import read_events

    match = event_matcher(filters)
    if not follow:
        yield from read_events(data_root, since=since, until=until, match=match)
        return
    from tsubo.kernel.watch import FolderWatch

    watch = FolderWatch(data_root)
    try:
        yield from read_events(data_root, since=since, until=until, match=match, follow=True,
                               wait=watch.wait)
    finally:
        watch.close()

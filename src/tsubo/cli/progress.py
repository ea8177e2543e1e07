"""Per-layer progress of ``pull`` and ``push``: bars on a terminal, plain lines elsewhere.

Events ``(key, status, current, total)`` arrive from download threads; one lock orders
them. On a TTY each layer owns one line, redrawn in place (cursor up, erase line) at most
every :data:`REDRAW_INTERVAL` seconds or when a status changes, so a fast download does
not spend its time painting. Elsewhere (logs, CI, pipes) a line is written only when a
layer's status changes, as ``docker pull`` does without a terminal.
"""

from __future__ import annotations

import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

REDRAW_INTERVAL = 0.1
BAR_WIDTH = 40


def human_size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f}{unit}" if unit == "B" else f"{count:.1f}{unit}"
        count /= 1000
    return f"{count:.1f}GB"


class ProgressView:
    """Callable as the ``events`` argument of ``pull``/``push``."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._lock = threading.Lock()
        self._order: list[str] = []
        self._lines: dict[str, tuple[str, int, int]] = {}
        self._drawn = 0
        self._last_draw = 0.0

    def __call__(self, key: str, status: str, current: int, total: int) -> None:
        with self._lock:
            previous = self._lines.get(key)
            if previous is None:
                self._order.append(key)
            self._lines[key] = (status, current, total)
            changed = previous is None or previous[0] != status
            if not self.tty:
                if changed:
                    self.stream.write(f"{key}: {status}\n")
                    self.stream.flush()
                return
            now = time.monotonic()
            if changed or now - self._last_draw >= REDRAW_INTERVAL:
                self._draw(now)

    def _draw(self, now: float) -> None:
        parts = []
        if self._drawn:
            parts.append(f"\x1b[{self._drawn}A")
        for key in self._order:
            status, current, total = self._lines[key]
            parts.append(f"\x1b[2K{key}: {status}{_bar(status, current, total)}\n")
        self.stream.write("".join(parts))
        self.stream.flush()
        self._drawn = len(self._order)
        self._last_draw = now

    def finish(self) -> None:
        """Draw the final state (a TTY's last frame may have been skipped)."""
        with self._lock:
            if self.tty and self._order:
                self._draw(time.monotonic())


def _bar(status: str, current: int, total: int) -> str:
    if status not in ("Downloading", "Pushing") or total <= 0:
        return ""
    filled = min(BAR_WIDTH, BAR_WIDTH * current // total)
    arrow = ">" if filled < BAR_WIDTH else ""
    bar = "=" * max(filled - len(arrow), 0) + arrow
    return f" [{bar:<{BAR_WIDTH}}] {human_size(current)}/{human_size(total)}"

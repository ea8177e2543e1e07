"""An undo stack for multi-step setup: each step registers its undo the moment it succeeds.

    with UndoStack("create container", cid) as undo:
        make_dir(); undo.push(remove_dir)
        make_cgroup(); undo.push(cgroup.destroy)
        undo.commit()          # success: keep everything

Leaving the block without ``commit()`` — an exception, but also an early ``return`` or
``break`` — runs the undos in reverse order, keeps going past failures, and re-raises the
original error (if any) with any cleanup errors attached to it (``error.cleanup_errors``
and in its message), so a failure leaves nothing behind and still says what failed first.
Only an explicit ``commit()`` keeps what was made.
"""

from __future__ import annotations

from tsubo.errors import TsuboError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType


class UndoStack:
    def __init__(self, operation: str, obj: str) -> None:
        self.operation = operation
        self.object = obj
        self._undos: list[Callable[[], object]] = []
        self._committed = False

    def push(self, undo: Callable[[], object]) -> None:
        """Register the undo of a step that just succeeded."""
        self._undos.append(undo)

    def commit(self) -> None:
        """Keep everything: the undos will not run."""
        self._committed = True

    def unwind(self) -> list[BaseException]:
        """Run the undos in reverse; returns the errors they raised."""
        errors: list[BaseException] = []
        while self._undos:
            undo = self._undos.pop()
            try:
                undo()
            except Exception as error:
                errors.append(error)
        return errors

    def __enter__(self) -> UndoStack:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._committed:
            self._undos.clear()
            return
        errors = self.unwind()
        if exc is None:
            if errors:
                raise TsuboError(self.operation, self.object, detail="left without commit, "
                                 "and undoing failed: " + "; ".join(map(str, errors)))
            return
        if errors and isinstance(exc, TsuboError):
            exc.detail = "; ".join(filter(None, [exc.detail, "cleanup also failed: " + "; ".join(
                str(error) for error in errors)]))
            exc.args = (exc.message(),)
        if errors:
            exc.cleanup_errors = errors  # type: ignore[attr-defined]

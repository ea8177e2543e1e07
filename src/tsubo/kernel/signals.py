"""Signal names and numbers, as ``kill`` accepts them (``TERM``, ``SIGTERM``, ``15``,
``RTMIN+3``).

Uses the builtin ``_signal`` module: ``signal`` wraps the same constants in IntEnums and
costs ~5 ms to import here, on commands that only need a number.
"""

from __future__ import annotations

import _signal

from tsubo.errors import InvalidArgument

_NAMES = {name: getattr(_signal, name) for name in dir(_signal)
          if name.startswith("SIG") and not name.startswith(("SIG_", "SIGRT"))}


def parse_signal(text: str) -> int:
    """Signal number for a name or number; InvalidArgument for anything else."""
    if text.isascii() and text.isdigit():
        number = int(text)
        if 0 < number < _signal.NSIG:
            return number
        raise InvalidArgument("parse signal", text, detail=f"must be 1..{_signal.NSIG - 1}")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in _NAMES:
        return int(_NAMES[name])
    for base_name, base in (("SIGRTMIN", _signal.SIGRTMIN), ("SIGRTMAX", _signal.SIGRTMAX)):
        if name.startswith(base_name):
            offset_text = name[len(base_name):] or "+0"
            try:
                number = base + int(offset_text)
            except ValueError:
                break
            if _signal.SIGRTMIN <= number <= _signal.SIGRTMAX:
                return int(number)
    raise InvalidArgument("parse signal", text, detail="unknown signal")


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15."""
    for name, value in _NAMES.items():
        if value == number and name not in ("SIGIOT", "SIGPOLL", "SIGCLD"):
            return name
    return str(number)


def wake_on(*numbers: int) -> int:
    """A non-blocking pipe that becomes readable whenever one of the signals *numbers*
    arrives (their handlers do nothing else; ``signal.set_wakeup_fd``), for a poll loop:
    returns its read end, to be emptied with :func:`drain`."""
    import os

    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    for number in numbers:
        _signal.signal(number, lambda signal_number, frame: None)
    _signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    return wake_read


def drain(fd: int) -> None:
    """Read a non-blocking wake-up pipe empty."""
    import os

    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass

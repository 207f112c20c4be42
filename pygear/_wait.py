"""The one wait loop: every blocking call drives libgearman through ``drive``.

``gearman_wait`` retries ``poll()`` on EINTR, so a C call with no timeout
holds Ctrl-C back for as long as it waits (_workarounds.SIGNALS_HELD_IN_POLL).  pygear never lets libgearman
block longer than one slice (``SLICE_MS``); between slices ``drive`` is
where, and the only place where,

- pending signals are let in (Ctrl-C raises KeyboardInterrupt here:
  pygear/_signals.py keeps them blocked while C runs),
- the user's timeout is enforced,
- a ``close()`` from another thread interrupts the call, and
- a connection that has come up is adopted (its socket found, its buffers
  widened: pygear/_sockets.py).

Each blocking call supplies a *step*: ``step(ms)`` does its C work, waits at
most ``ms`` for I/O, and returns a result, or ``WAITING`` after a slice in
which nothing ended.  A step that gets its answer within the slice (the
usual round trip) returns it at once, so the common path pays for no loop.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional, Protocol

from . import _signals

# The longest libgearman blocks before Python regains control: bounds how
# long a pending SIGINT waits.
SLICE_MS = 50


class _Waiting:
    __slots__ = ()

    def __repr__(self) -> str:
        return "WAITING"


WAITING: Any = _Waiting()


class Deadline:
    """When a blocking call must give up; ``at`` None means never."""

    __slots__ = ("at",)

    def __init__(self, timeout_ms: int) -> None:
        self.at: Optional[float] = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000.0

    @classmethod
    def never(cls) -> "Deadline":
        return cls(-1)

    def within(self, ms: int) -> "Deadline":
        """The earlier of this deadline and ``ms`` from now (a new one)."""
        other = Deadline(ms)
        if self.at is not None and (other.at is None or self.at < other.at):
            other.at = self.at
        return other

    def slice_ms(self) -> int:
        """How long the next wait may block, 0 once the deadline has passed."""
        if self.at is None:
            return SLICE_MS
        left = self.at - time.monotonic()
        if left <= 0:
            return 0
        return max(1, min(SLICE_MS, int(left * 1000 + 0.999)))

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def left_ms(self) -> int:
        """Milliseconds left (-1: forever)."""
        if self.at is None:
            return -1
        return max(0, int((self.at - time.monotonic()) * 1000))


NEVER = Deadline(-1)    # shared: a Deadline is never changed once made


class Interruptible(Protocol):
    def interrupted(self) -> bool: ...
    def closed_error(self) -> Exception: ...


class Connection(Protocol):
    """A C handle's connection that may still need adopting."""
    unadopted: bool
    def adopt(self) -> None: ...


def drive(gate: Interruptible, deadline: Deadline, step: Callable[[int], Any],
          on_timeout: Callable[..., BaseException], *why: Any,
          connection: Optional[Connection] = None) -> Any:
    """Run ``step`` slice after slice until it returns a result; past the
    deadline, raise ``on_timeout(*why)``."""
    forever = deadline.at is None
    while True:
        ms = SLICE_MS if forever else deadline.slice_ms()
        if ms == 0:
            raise on_timeout(*why)
        result = step(ms)
        if connection is not None and connection.unadopted:
            connection.adopt()
        if result is not WAITING:
            return result
        _signals.let_in()
        if gate.interrupted():
            raise gate.closed_error()

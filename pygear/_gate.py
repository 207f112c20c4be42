"""The one way into libgearman for a Client or a Worker (and their Tasks and Jobs).

Every public method that may reach libgearman is decorated with ``@entry``;
it then runs only after ``Gate.enter``:

- the object is not closed (else ``pygear.ERROR``);
- the calling thread is not already inside a call on this object, that
  is, inside one of its callbacks, job functions or log functions
  (``pygear.ERROR`` at once: libgearman is not re-entrant);
- the object's lock is held (calls from several threads take turns);
- in the main thread, the only one where Python runs signal handlers, the
  signals are blocked (pygear/_signals.py) from before the lock is taken
  until after it is given back: no KeyboardInterrupt can land between two
  steps of pygear's own code, or inside C, only between wait slices
  (pygear/_wait.py) and in user code that C calls (``run_unblocked``).

Setters (``@setting``) take the lock too, except from inside a callback,
where the running call holds it: they change only pygear's settings record,
which is applied where C handles are made.  Accessors answer from Python
state and take nothing, so they never wait for, or fail because of, a
blocking call in another thread.

``close()`` goes through ``Gate.close``: from inside a callback it takes
effect when the running call returns; from another thread it makes a
blocked call raise ``pygear.ERROR`` within one wait slice, then frees the
object; nothing is freed while C still uses it.
"""
from __future__ import annotations

import functools
import threading
import weakref
from typing import Any, Callable, Optional, TypeVar, cast

from . import _signals
from .errors import ERROR

F = TypeVar("F", bound=Callable[..., Any])
_get_ident = threading.get_ident
_main = _signals.main
_TURN_SLICE = 0.05   # s: how often a main thread waiting for its turn lets Ctrl-C in

# How long close() from another thread waits for a blocked call to notice
# (it looks once per wait slice, 50 ms) before leaving the freeing to it.
_CLOSE_WAIT = 0.5


class Gate:
    """Who may use one pygear object's C handles, and when."""

    __slots__ = ("_lock", "owner", "kind", "closed", "close_requested", "close_deferred",
                 "closing", "_free", "parked", "send_lock", "token")

    def __init__(self, kind: str, free: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self.kind = kind                  # "client", "worker": for messages
        self.owner: Optional[int] = None  # the thread inside a call, if any
        self.closed = False
        self.close_requested = False      # close() from another thread: interrupt the call
        self.close_deferred = False       # close() from inside: when the call returns
        self.closing = False              # either: leave() frees the object
        # frees every C handle (lock held); weak, or the owner -> gate ->
        # owner cycle would keep a dropped Client alive until the cycle GC
        self._free = weakref.WeakMethod(free)  # type: ignore[arg-type]
        # A worker's job function runs with the lock held by its caller;
        # ``parked`` says the caller is in user code right now, so that
        # another thread may send on the job it runs (Job.send_status from a
        # helper thread), one at a time under ``send_lock``.
        self.parked = False
        self.send_lock = threading.Lock()
        # What _signals.block() said for the running call (None: no call).
        self.token: Optional[bool] = None

    # --- calls -------------------------------------------------------------
    def enter(self) -> None:
        """Start a call (pair it with ``leave`` in a finally)."""
        me = _get_ident()
        if self.owner == me:
            raise self.reentry_error()   # inside a callback: nothing taken yet
        token = _signals.block()         # a signal already pending raises here
        try:
            if not self._lock.acquire(False):
                self._wait_turn(token)
            if self.closed:
                self._lock.release()
                raise self.closed_error()
        except BaseException:
            _signals.restore(token)
            raise
        self.owner = me
        self.token = token

    def _wait_turn(self, token: bool) -> None:
        """Another thread's call: wait for it, Ctrl-C let in meanwhile."""
        if token:
            self._lock.acquire()         # not blocked here: interruptible as it is
            return
        while not self._lock.acquire(timeout=_TURN_SLICE):
            _signals.let_in()

    def leave(self) -> None:
        """End a call: a close() asked for meanwhile is done now; pending
        signals are delivered last, once everything is consistent."""
        if self.closing:
            try:
                if not self.closed:
                    self._close_now()
            finally:
                self.closing = False
                self.leave()
            return
        token = self.token
        self.owner = self.token = None
        self._lock.release()
        if token is False:   # _signals.restore(), inlined; pending signals raise here
            _main.blocked = False
            _signals.mask(_signals.SETMASK, _main.saved_ref, None)

    def inside(self) -> bool:
        """Whether the calling thread is inside a call on this object."""
        return self.owner == _get_ident()

    def check_open(self) -> None:
        """For accessors: they take no lock, but a closed object answers nothing."""
        if self.closed:
            raise self.closed_error()

    def interrupted(self) -> bool:
        """Checked between wait slices: a close() from another thread."""
        return self.close_requested

    # --- settings ------------------------------------------------------------
    def acquire_for_setting(self) -> bool:
        """For a setter: True when it entered (``leave`` after it), False
        from inside a callback, where the running call holds the lock."""
        if self.owner == _get_ident():
            return False
        self.enter()
        return True

    # --- closing -------------------------------------------------------------
    def close(self, free: Optional[Callable[[], None]] = None) -> None:
        """Free the object once no call uses it; a second close does nothing.
        ``free``: the owner's own, from its ``__del__`` (the weak reference
        to it is already cleared when the cycle collector finalizes it)."""
        if self.closed:
            return
        if self.owner == _get_ident():
            self.close_deferred = self.closing = True   # inside a callback: done by leave()
            return
        self.close_requested = self.closing = True
        token = _signals.block()
        try:
            if not self._lock.acquire(timeout=_CLOSE_WAIT):
                return                # the owner is in user code: leave() frees
            try:
                if not self.closed:
                    self._close_now(free)
            finally:
                self._lock.release()
        finally:
            _signals.restore(token)

    def _close_now(self, free: Optional[Callable[[], None]] = None) -> None:
        self.closed = True
        self.closing = False
        if free is None:
            free = self._free()
        if free is not None:
            free()

    # --- messages ------------------------------------------------------------
    def closed_error(self) -> ERROR:
        return ERROR("this %s is closed" % self.kind)

    def reentry_error(self) -> ERROR:
        return ERROR("this %s cannot be used from inside its own callbacks, job "
                     "functions or log function (libgearman is not re-entrant); "
                     "reading a Task or Job is fine" % self.kind)


def entry(method: F) -> F:
    """Decorate a public method that may reach libgearman (see module doc)."""
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        gate = self._gate
        gate.enter()
        try:
            return method(self, *args, **kwargs)
        finally:
            gate.leave()
    return cast(F, call)


def setting(method: F) -> F:
    """Decorate a setter: it waits its turn, except inside a callback."""
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        gate = self._gate
        locked = gate.acquire_for_setting()
        try:
            return method(self, *args, **kwargs)
        finally:
            if locked:
                gate.leave()
    return cast(F, call)

"""The one way into libgearman for a Client or a Worker (and their Tasks and Jobs).

Every public method that may reach libgearman is decorated with ``@entry``;
it then runs only after ``Gate.enter``:

- the object is not closed (else ``pygear.ERROR``);
- the calling thread is not already inside a call on this object, that
  is, inside one of its callbacks, job functions or log functions
  (``pygear.ERROR`` at once: libgearman is not re-entrant);
- the object's lock is held (calls from several threads take turns);
- the thread's signals are blocked (pygear/_signals.py) before any C call
  that may call back into Python (``shield``): a batch's run, a worker's
  work, anything on a handle with a log function.  ``do*`` calls need not:
  no Python runs inside C for them (_events.pausers).

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
import platform
import threading
import weakref
from typing import Any, Callable, Optional, TypeVar, cast

from . import _signals
from .errors import ERROR

F = TypeVar("F", bound=Callable[..., Any])
_get_ident = threading.get_ident

_ALWAYS_SHIELD = platform.python_implementation() != "CPython"

# How long close() from another thread waits for a blocked call to notice
# (it looks once per wait slice, 50 ms) before leaving the freeing to it.
_CLOSE_WAIT = 0.5


class Gate:
    """Who may use one pygear object's C handles, and when."""

    __slots__ = ("_lock", "owner", "kind", "closed", "close_requested", "close_deferred",
                 "closing", "_free", "parked", "send_lock", "token", "shield_all")

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
        # Whether this call blocked the thread's signals (None: it did not;
        # False: it did; True: an outer call had already).
        self.token: Optional[bool] = None
        # Every call shields: a C handle of this object has a log function
        # (Python that C may call anywhere), or ctypes callbacks are Python
        # themselves (PyPy).
        self.shield_all = _ALWAYS_SHIELD

    # --- calls -------------------------------------------------------------
    def enter(self, shield: bool = False) -> None:
        """Start a call (pair it with ``leave`` in a finally); ``shield``:
        the call will run C that calls back into Python (``shield()``)."""
        if not self._lock.acquire(False):
            self._wait_turn()            # another thread's call, or re-entry
        if self.closed:
            self._lock.release()
            raise self.closed_error()
        self.owner = _get_ident()
        if shield or self.shield_all:
            try:
                self.shield()
            except BaseException:   # a signal that was already pending raises here
                self.owner = None
                self._lock.release()
                raise

    def _wait_turn(self) -> None:
        if self.owner == _get_ident():
            raise self.reentry_error()
        self._lock.acquire()

    def shield(self) -> None:
        """Block the calling thread's signals for the rest of this call:
        before any C call that may call back into Python (pygear/_signals.py).
        A signal already pending has its handler run (and raise) here."""
        if self.token is None:
            # _signals.block(), inlined: this runs on hot paths
            state = _signals.threads.get(self.owner) or _signals.mine()   # type: ignore[arg-type]
            if state.blocked:
                self.token = True
                return
            self.token = False
            state.blocked = True
            try:
                _signals.mask(_signals.BLOCK, _signals.ALL_REF, state.saved_ref)
            except BaseException:
                _signals.mask(_signals.SETMASK, state.saved_ref, None)
                state.blocked = False
                self.token = None
                raise

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
        me, token = self.owner, self.token
        self.owner = self.token = None
        self._lock.release()
        if token is False:   # _signals.restore(), inlined; pending signals raise here
            state = _signals.threads[me]   # type: ignore[index]
            state.blocked = False
            _signals.mask(_signals.SETMASK, state.saved_ref, None)

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
        """For a setter: True when the lock was taken (release it), False
        from inside a callback, where the running call holds it."""
        if self.owner == _get_ident():
            return False
        if self.closed:
            raise self.closed_error()
        self._lock.acquire()
        if self.closed:
            self._lock.release()
            raise self.closed_error()
        return True

    def release_setting(self) -> None:
        self._lock.release()

    # --- closing -------------------------------------------------------------
    def close(self) -> None:
        """Free the object once no call uses it; a second close does nothing."""
        if self.closed:
            return
        if self.owner == _get_ident():
            self.close_deferred = self.closing = True   # inside a callback: done by leave()
            return
        self.close_requested = self.closing = True
        if not self._lock.acquire(timeout=_CLOSE_WAIT):
            return                    # the owner is in user code: leave() frees
        try:
            if not self.closed:
                self._close_now()
        finally:
            self._lock.release()

    def _close_now(self) -> None:
        self.closed = True
        self.closing = False
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
                gate.release_setting()
    return cast(F, call)

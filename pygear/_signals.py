"""Signals are blocked at the OS level while pygear runs in the main thread.

CPython (and PyPy) run a Python signal handler (Ctrl-C's KeyboardInterrupt,
a user's SIGTERM or SIGALRM handler) in the main thread only, at the next
bytecode boundary.  One arriving while libgearman is on the stack would
raise inside a callback, possibly before its ``try:``, and libgearman would
be handed an unset return value; one arriving just after the object's lock
was taken would leave it taken for good.  No ``try`` can close those
windows; blocking the signals can.  So every pygear call made by the main
thread blocks its asynchronous signals (``pthread_sigmask``) before it takes
the object's lock and restores them after it let go of it (pygear/_gate.py);
the kernel keeps them pending meanwhile.  The one wait loop
(pygear/_wait.py) lets them in between slices, where Python runs the
handler at a point where pygear's state is consistent, and the call ends
with the handler's exception.  Other threads never run signal handlers:
their calls need nothing of this, and pay nothing for it.

User code that C calls runs with the thread's own mask again
(``run_unblocked``): a job function or a task callback may be interrupted as
any Python code may, while pygear's own frames around it never are.

Only the main thread's own mask changes, and only for the length of a
pygear call.  Synchronous fault signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
SIGABRT, SIGTRAP) are never blocked: blocking them hides nothing and would
defeat faulthandler.  A signal the kernel delivers to another thread of the
process that does not block it still trips Python's handler flag, and the
main thread then raises at its next bytecode boundary; threads pygear
starts block every signal, and a program whose own threads must not take
signals should block them there (``signal.pthread_sigmask``).
"""
from __future__ import annotations

import os
import signal
import threading
from ctypes import byref
from typing import Any, Callable, TypeVar

from . import _lib

T = TypeVar("T")

_NEVER_BLOCKED = tuple(getattr(signal, name) for name in (
    "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGTRAP", "SIGKILL", "SIGSTOP")
    if hasattr(signal, name))

_ALL = _lib.sigset_t()
_lib.sigfillset(byref(_ALL))
for _sig in _NEVER_BLOCKED:
    _lib.sigdelset(byref(_ALL), int(_sig))
del _sig
_ALL_REF = ALL_REF = byref(_ALL)
_mask = mask = _lib.pthread_sigmask
_BLOCK, _SETMASK = BLOCK, SETMASK = _lib.SIG_BLOCK, _lib.SIG_SETMASK


class _MainThread:
    """The main thread's state: whether pygear has its signals blocked, and
    the mask it had before (the one user code runs with)."""

    __slots__ = ("ident", "blocked", "saved", "saved_ref")

    def __init__(self) -> None:
        self.ident = threading.main_thread().ident
        self.blocked = False
        self.saved = _lib.sigset_t()
        self.saved_ref = byref(self.saved)


main = _MainThread()
_get_ident = threading.get_ident


def _after_fork() -> None:
    # the forking thread is the child's main thread (threading does the same)
    main.ident = _get_ident()


os.register_at_fork(after_in_child=_after_fork)


def block() -> bool:
    """In the main thread, block its asynchronous signals.  Returns whether
    nothing was to be done (another thread, or blocked already: pygear
    calls nest when a callback of one object uses another); pass it to
    ``restore``.  A signal already pending has its handler run (and raise)
    as this returns, with the mask as it was."""
    if _get_ident() != main.ident or main.blocked:
        return True
    main.blocked = True
    try:
        _mask(_BLOCK, _ALL_REF, main.saved_ref)
    except BaseException:
        _mask(_SETMASK, main.saved_ref, None)
        main.blocked = False
        raise
    return False


def restore(nothing_done: bool) -> None:
    """Undo ``block``.  A pending signal's handler runs as the mask call
    returns (CPython checks for signals right after a C call returns;
    checked on 3.9 to 3.13), that is here, where pygear expects it."""
    if not nothing_done:
        main.blocked = False
        _mask(_SETMASK, main.saved_ref, None)


def let_in() -> None:
    """Between two slices of a blocking call: deliver what is pending (its
    handler runs, and may raise, here) and block again."""
    if main.blocked and _get_ident() == main.ident:
        try:
            _mask(_SETMASK, main.saved_ref, None)
        finally:
            _mask(_BLOCK, _ALL_REF, None)


def run_unblocked(fn: Callable[..., T], *args: Any) -> T:
    """Run user code that C called with the thread's own signal mask, and
    block again before pygear's code goes on.  The caller must already be
    inside a ``try`` that catches what ``fn`` (or a signal handler) raises."""
    if not main.blocked or _get_ident() != main.ident:
        return fn(*args)
    main.blocked = False
    try:
        _mask(_SETMASK, main.saved_ref, None)
        return fn(*args)
    finally:
        _mask(_BLOCK, _ALL_REF, None)   # a signal that came as fn returned raises here,
        main.blocked = True             # inside the caller's try


def block_forever() -> None:
    """For threads pygear starts: they never take a signal, so the kernel
    hands every signal to a thread that can (the main thread)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.valid_signals())
                           - set(_NEVER_BLOCKED))

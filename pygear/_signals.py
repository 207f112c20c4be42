"""Signals are blocked at the OS level while libgearman runs.

libgearman calls back into Python (task events, job functions, log lines).
A Python signal handler (Ctrl-C's KeyboardInterrupt, a user's SIGTERM or
SIGALRM handler) runs at the next bytecode boundary of the main thread, so
one arriving while C is on the stack would raise inside a callback, possibly
before its ``try:``, and libgearman would be handed an unset return value.
No ``try`` can close that window; blocking the signals can.  While a thread
is inside a pygear call its asynchronous signals are blocked
(``pthread_sigmask``), so the kernel keeps them pending; the one wait loop
(pygear/_wait.py) lets them in between slices, where Python runs the handler
at a point where pygear's state is consistent, and the call ends (at the
latest when it returns) with the handler's exception.

User code that C calls runs with the caller's own mask again
(``run_unblocked``): a job function or a task callback may be interrupted as
any Python code may, while pygear's own frames around it never are.

Only the thread's own mask changes, and only for the length of a pygear
call.  Synchronous fault signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT,
SIGTRAP) are never blocked: blocking them hides nothing and would defeat
faulthandler.  A signal the kernel delivers to another thread of the process
that does not block it still trips Python's handler flag; threads pygear
starts block every signal, and a program whose own threads must not take
signals should block them there (``signal.pthread_sigmask``).
"""
from __future__ import annotations

import signal
import threading
from ctypes import byref
from typing import Any, Callable, Dict, TypeVar

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


class _Thread:
    """One thread's state: whether pygear has its signals blocked, and the
    mask it had before (the one user code runs with)."""

    __slots__ = ("blocked", "saved", "saved_ref")

    def __init__(self) -> None:
        self.blocked = False
        self.saved = _lib.sigset_t()
        self.saved_ref = byref(self.saved)


# By thread ident (a dict lookup is the cheapest per-thread state: this runs
# on every call).  An ident a finished thread leaves is reused by the next
# thread, whose state is then as that one left it: not blocked.
_threads: Dict[int, _Thread] = {}
threads = _threads          # for the Gate, which inlines block() and restore()
_get_ident = threading.get_ident


def mine() -> _Thread:
    ident = _get_ident()
    state = _threads.get(ident)
    if state is None:
        state = _threads[ident] = _Thread()
    return state


def block() -> bool:
    """Block this thread's asynchronous signals.  Returns whether they were
    blocked already (pass it to ``restore``): pygear calls nest when a
    callback of one object uses another.  A signal already pending has its
    handler run (and raise) as this returns, before any C call."""
    state = _threads.get(_get_ident()) or mine()
    if state.blocked:
        return True
    _mask(_BLOCK, _ALL_REF, state.saved_ref)
    state.blocked = True
    return False


def restore(was_blocked: bool) -> None:
    """Undo ``block``: the thread's own mask again, unless an outer call
    still has the signals blocked.  A pending signal's handler runs as the
    mask call returns (CPython checks for signals right after a C call
    returns; checked on 3.9 to 3.13), that is here, where pygear expects it."""
    if not was_blocked:
        state = _threads[_get_ident()]
        state.blocked = False
        _mask(_SETMASK, state.saved_ref, None)


def let_in() -> None:
    """Between two slices of a blocking call: deliver what is pending (its
    handler runs, and may raise, here) and block again."""
    state = _threads.get(_get_ident())
    if state is not None and state.blocked:
        try:
            _mask(_SETMASK, state.saved_ref, None)
        finally:
            _mask(_BLOCK, _ALL_REF, None)


def run_unblocked(fn: Callable[..., T], *args: Any) -> T:
    """Run user code that C called with the thread's own signal mask, and
    block again before pygear's code goes on.  The caller must already be
    inside a ``try`` that catches what ``fn`` (or a signal handler) raises."""
    state = _threads.get(_get_ident())
    if state is None or not state.blocked:
        return fn(*args)
    state.blocked = False
    try:
        _mask(_SETMASK, state.saved_ref, None)
        return fn(*args)
    finally:
        _mask(_BLOCK, _ALL_REF, None)   # a signal that came as fn returned raises here,
        state.blocked = True            # inside the caller's try


def block_forever() -> None:
    """For threads pygear starts: they never take a signal, so the kernel
    hands every signal to a thread that can (the main thread)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.valid_signals())
                           - set(_NEVER_BLOCKED))

"""The C callbacks through which libgearman reports on tasks.

A batch's C clients (``run_tasks``) get one trampoline per event kind,
created at import (so under the import lock, once, before any C client
exists) and kept for the life of the process, so C can never call a freed
one.  A ``do*`` C client gets ``pausers()`` instead: no Python at all.  A trampoline finds the Python record of the
task by its address in ``LIVE`` and hands it the event; the record (a
``Task`` of a batch, or the ``DoJob`` of one ``do*`` call) answers with the
code libgearman goes on with.  Records are in ``LIVE`` exactly while their C
task exists; whoever creates a C task registers it, whoever frees it
removes it first.

Signals are blocked while libgearman runs (pygear/_signals.py), so nothing
interrupts a trampoline; whatever a record raises is caught here, handed
to the record (``failed``), and libgearman is told PAUSE, which makes its
run loop return with the event kept.
"""
from __future__ import annotations

import ctypes
from functools import partial
from itertools import cycle
from typing import Any, Dict, Protocol

from . import _lib
from .errors import RETURN_CODES

SUCCESS = RETURN_CODES["SUCCESS"]
PAUSE = RETURN_CODES["PAUSE"]

CREATED, DATA, WARNING, STATUS, COMPLETE, EXCEPTION, FAIL = range(7)
NAMES = ("created", "data", "warning", "status", "complete", "exception", "fail")
FINAL = frozenset((COMPLETE, EXCEPTION, FAIL))


class Record(Protocol):
    def _on_event(self, kind: int, addr: int) -> int: ...
    def _failed(self, exc: BaseException) -> None: ...


LIVE: Dict[int, Any] = {}

# ctypes.string_at is a Python function around this one: a frame less per copy.
string_at = getattr(ctypes, "_string_at", ctypes.string_at)


def payload(addr: int) -> bytes:
    """A copy of the event's data (libgearman reuses the buffer)."""
    size = _lib.gearman_task_data_size(addr)
    data = _lib.gearman_task_data(addr) if size else None
    return string_at(data, size) if data else b""


def _trampoline(kind: int) -> Any:
    get = LIVE.get

    def on_event(addr: int) -> int:
        record = None
        try:
            record = get(addr)
            if record is None:
                return SUCCESS
            return record._on_event(kind, addr)
        except BaseException as exc:   # nothing may cross the C frame
            if record is not None:
                try:
                    record._failed(exc)
                except BaseException:
                    pass
            return PAUSE
    on_event.__name__ = "on_" + NAMES[kind]
    return _lib.task_fn(on_event)


TRAMPOLINES = tuple(_trampoline(kind) for kind in range(len(NAMES)))
# What a do* job needs to hear of, and what a batch task does.
DO_KINDS = (WARNING, COMPLETE, EXCEPTION, FAIL)
BATCH_KINDS = tuple(range(len(NAMES)))


def batch_callbacks() -> Dict[int, Any]:
    return {kind: TRAMPOLINES[kind] for kind in BATCH_KINDS}


def pausers() -> Dict[int, Any]:
    """The callbacks of a C client that runs one task at a time (``do*``).

    They run no Python code at all, so nothing (no signal handler either)
    can interrupt them: each is a builtin, ``next`` over a cycle of its
    kind's code in PAUSED, then SUCCESS.  libgearman calls a callback, gets
    that code, and returns it from run_tasks with the event's packet still
    held; pygear reads the event there, outside C (pygear/_do.py), and the
    next run_tasks calls the same callback again, which now answers
    SUCCESS, and goes on.  A pause is
    always followed by its resumption (or by the C client's end), so the
    cycle never gets out of step; each C client has its own, kept alive as
    long as it is."""
    return {kind: _lib.task_fn(partial(next, cycle((PAUSED[kind], SUCCESS))))
            for kind in DO_KINDS}


# What run_tasks returns when a pauser paused it: libgearman hands back any
# code but SUCCESS (and IO_WAIT) a callback returns, so each kind has its own
# and pygear needs not ask the task which event it was.
PAUSED = {WARNING: RETURN_CODES["WORK_WARNING"], COMPLETE: PAUSE,
          EXCEPTION: RETURN_CODES["WORK_EXCEPTION"], FAIL: RETURN_CODES["WORK_FAIL"]}
PAUSE_CODES = frozenset(PAUSED.values())


def install(ptr: Any, callbacks: Dict[int, Any]) -> None:
    """Point a fresh C client's callbacks (libgearman copies them into each
    task when it is added)."""
    for kind, fn in callbacks.items():
        getattr(_lib, "gearman_client_set_%s_fn" % NAMES[kind])(ptr, fn)

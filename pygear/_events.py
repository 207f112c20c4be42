"""The C callbacks through which libgearman reports on tasks.

One trampoline per event kind, created at import (so under the import lock,
once, before any C client exists) and kept for the life of the process, so
C can never call a freed one.  A trampoline finds the Python record of the
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

from ctypes import string_at
from typing import Any, Dict, Protocol

from . import _lib
from .errors import RETURN_CODES

SUCCESS = RETURN_CODES["SUCCESS"]
PAUSE = RETURN_CODES["PAUSE"]

CREATED, DATA, WARNING, STATUS, COMPLETE, EXCEPTION, FAIL = range(7)
NAMES = ("created", "data", "warning", "status", "complete", "exception", "fail")
FINAL = frozenset((COMPLETE, EXCEPTION, FAIL))


class Record(Protocol):
    def on_event(self, kind: int, addr: int) -> int: ...
    def failed(self, exc: BaseException) -> None: ...


LIVE: Dict[int, Any] = {}


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
            return record.on_event(kind, addr)
        except BaseException as exc:   # nothing may cross the C frame
            if record is not None:
                try:
                    record.failed(exc)
                except BaseException:
                    pass
            return PAUSE
    on_event.__name__ = "on_" + NAMES[kind]
    return _lib.task_fn(on_event)


TRAMPOLINES = tuple(_trampoline(kind) for kind in range(len(NAMES)))
# What a do* job needs to hear of, and what a batch task does.
DO_KINDS = (WARNING, COMPLETE, EXCEPTION, FAIL)
BATCH_KINDS = tuple(range(len(NAMES)))


def install(ptr: Any, kinds: Any) -> None:
    """Point a fresh C client's callbacks at the trampolines (libgearman
    copies them into each task when it is added)."""
    for kind in kinds:
        getattr(_lib, "gearman_client_set_%s_fn" % NAMES[kind])(ptr, TRAMPOLINES[kind])

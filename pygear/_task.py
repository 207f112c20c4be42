"""Task: one job added with ``add_task*`` (or run by ``do*``), and the C
callbacks (trampolines) through which libgearman reports on it.

Kept apart from client.py for size; ``pygear.client.Task`` is this class.
"""
from __future__ import annotations

import weakref
from ctypes import string_at
from time import perf_counter
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from . import _lib
from ._base import PAUSE, SUCCESS
from .errors import RETURN_CODES, describe_returncode
from .serializers import JSON, decode

if TYPE_CHECKING:
    from .client import Client

WORK_EXCEPTION = RETURN_CODES["WORK_EXCEPTION"]
CALLBACK_KINDS = ("workload", "created", "data", "warning", "status",
                  "complete", "exception", "fail")

_NOT_FINISHED = frozenset((RETURN_CODES["UNKNOWN_STATE"], RETURN_CODES["COULD_NOT_CONNECT"]))


def task_finished(addr, _return=None) -> bool:
    """Whether libgearman is done with the task at ``addr``.

    Its error code leaves UNKNOWN_STATE once the task ended (completed,
    failed, created in the background, status answered), as libgearman's own
    exit-task test reads it; COULD_NOT_CONNECT sends it back to NEW."""
    return (_return or _lib.gearman_task_return)(addr) not in _NOT_FINISHED


# --- Task ----------------------------------------------------------------------
# C calls these with the task's address, which is the task's key in
# LIVE_TASKS.  A task is in it from submission until libgearman is done
# with it (a plain dict: the hot path looks it up on every event).
LIVE_TASKS: "Dict[int, Task]" = {}
_NO_CLIENT = lambda: None   # noqa: E731  (a forgotten task's dead client reference)
_PAYLOAD_EVENTS = frozenset(("data", "warning", "complete", "exception"))
_FINAL_EVENTS = frozenset(("complete", "exception", "fail"))


def looks_like_report(data: bytes) -> bool:
    """A pygear worker's exception report, sent as WORK_WARNING before
    WORK_FAIL (see worker.Job._send_report)."""
    return data[:1] == b"{" and b'"traceback"' in data and b'"type"' in data


def _make_trampoline(kind: str):
    get, pop = LIVE_TASKS.get, LIVE_TASKS.pop
    data_of, size_of = _lib.gearman_task_data, _lib.gearman_task_data_size
    payload = kind in _PAYLOAD_EVENTS
    final = kind in _FINAL_EVENTS
    warning = kind == "warning"
    fail = kind == "fail"

    def trampoline(addr):
        task = client = None
        try:
            task = get(addr)
            if task is None:
                return SUCCESS
            event = kind
            if payload:
                size = size_of(addr)
                data = string_at(data_of(addr), size) if size else b""
                if warning and task._report is None and looks_like_report(data):
                    task._report = data   # a WORK_FAIL next means the function raised
                    return SUCCESS
                if task._report is not None:
                    task._deliver_held_warning()
                task._data = data
            elif fail:
                if task._report is not None:
                    event = "exception"
                    task._data, task._report = task._report, None
                    task._raised = True
                else:
                    task._data = None
            if task._quiet:   # a do* job (_DoTask): no callbacks, freed by do* itself
                if final:
                    task._event = event
                    pop(addr, None)
                return SUCCESS
            if final:
                task._workload = b""   # never sent again
            task._event = event
            client = task._client()
            if client is not None:
                callback = client._callbacks.get(event)
                if callback is not None:
                    callback(task)
            if final:   # no event comes after this one
                if task._started is not None and client is not None:   # metrics hook
                    metrics = client._metrics
                    if metrics is not None:
                        metrics.finished(task._function, event, perf_counter() - task._started)
                if client is not None and client._user_options["free_tasks"]:
                    task._snapshot()   # libgearman frees the task right after
                    task._forget()
                else:
                    pop(addr, None)
                if client is not None and client._deferred:
                    client._done_in_c.append(task)   # its C side can go (Client._refill)
            return SUCCESS
        except BaseException as exc:   # nothing may cross the C frame
            if client is None and task is not None:
                client = task._client()
            if client is not None and client._pending is None:
                client._pending = exc
            return PAUSE   # a failure code: run_tasks returns, the event is kept
    trampoline.__name__ = "on_%s" % kind
    return _lib.task_fn(trampoline)


def _on_context_free(addr, context):
    # libgearman frees a task itself (free_tasks option): keep what it saw.
    try:
        task = LIVE_TASKS.get(addr)
        if task is not None:
            task._snapshot()
            task._forget()
    except BaseException:
        pass


# Created once and kept for the life of the process, so C can never call a
# freed trampoline.
TRAMPOLINES: Dict[str, Any] = {}


def _trampolines() -> Dict[str, Any]:
    """Built on first use, once libgearman is loaded (import pygear must not
    need it), then kept for the life of the process."""
    if not TRAMPOLINES:
        built = {kind: _make_trampoline(kind) for kind in CALLBACK_KINDS}
        built["context_free"] = _lib.task_context_free_fn(_on_context_free)
        TRAMPOLINES.update(built)
    return TRAMPOLINES


class _DoTask:
    """What the trampolines record about the one job a ``do*`` call runs:
    its result, a held-back exception report, whether it raised.  Only
    foreground jobs need one (no trampoline fires for a background job);
    it is in LIVE_TASKS from submission until do* frees the C task, and
    the client's callbacks never see it."""

    __slots__ = ("_client", "_data", "_report", "_raised", "_event")
    _quiet = True

    def __init__(self, client_ref) -> None:
        self._client = client_ref   # weak, as a Task's: for a trampoline's exception
        self._data: Optional[bytes] = None
        self._report: Optional[bytes] = None
        self._raised = False
        self._event: Optional[str] = None   # the final event, once it came

    def _deliver_held_warning(self) -> None:
        # An ordinary warning after all; do* reports only the final payload.
        self._data, self._report = self._report, None

    def _snapshot(self) -> None:
        pass

    def _forget(self) -> None:
        self._client = _NO_CLIENT


class Task:
    """One job submitted through ``add_task*``.  While its C task lives,
    reads go to C; once the C task is freed (client closed, task done and
    dropped) it answers from what it last saw."""

    __slots__ = ("_client", "_key", "_fn", "_uq", "_workload", "_c_name",
                 "_background", "_priority", "_addr", "_serializer", "_data",
                 "_event", "_handle", "_unique", "_function", "_rc", "_known",
                 "_running", "_num", "_den", "_error", "_state", "_report", "_raised",
                 "_started", "__weakref__")
    _quiet = False   # the client's callbacks fire for it (see _DoTask)

    def __init__(self, client: "Client", key: int, fn: bytes, uq: Optional[bytes],
                 workload: bytes, c_name: str, background: bool, priority: str) -> None:
        # Weak: a Client nobody holds is collected (and closed) even while
        # tasks it never finished are still registered.
        self._client = weakref.ref(client)
        self._key, self._fn, self._uq, self._workload = key, fn, uq, workload
        self._c_name, self._background, self._priority = c_name, background, priority
        self._serializer = client._serializer
        self._addr: Optional[int] = None
        self._started: Optional[float] = None   # metrics hook: set when recorded
        self._reset()
        self._function = fn.decode("utf-8", "replace")
        self._unique = uq.decode("utf-8", "replace") if uq else None

    def _reset(self) -> None:
        self._data: Optional[bytes] = None
        self._event: Optional[str] = None
        self._handle: Optional[str] = None
        self._rc = RETURN_CODES["UNKNOWN_STATE"]
        self._known = self._running = False
        self._num = self._den = 0
        self._error: Optional[str] = None
        self._state = "new"
        self._report: Optional[bytes] = None   # a held-back exception-report warning
        self._raised = False                   # WORK_FAIL that carried a report

    def _deliver_held_warning(self) -> None:
        """The held warning was not followed by WORK_FAIL: it was an ordinary
        warning after all, so hand it over late rather than lose it."""
        data, self._report = self._report, None
        self._data, self._event = data, "warning"
        client = None if self._quiet else self._client()
        callback = client._callbacks.get("warning") if client is not None else None
        if callback is not None:
            callback(self)

    def _attach(self, addr: int) -> None:
        self._addr = addr
        LIVE_TASKS[addr] = self

    def _finished_in_c(self) -> bool:
        return task_finished(self._addr)

    def _snapshot(self) -> None:
        """Keep everything the C task knows (it is about to go)."""
        addr = self._addr
        for reader in _READERS:
            reader(self, addr)

    def _unregister(self) -> None:
        """No more events will come for this task."""
        addr = self._addr
        if addr and LIVE_TASKS.get(addr) is self:
            del LIVE_TASKS[addr]

    def _forget(self) -> None:
        self._unregister()
        self._addr = None
        self._client = _NO_CLIENT

    def _detach(self) -> None:
        """Keep what the C task saw, then free it."""
        if self._addr:
            self._snapshot()
            addr = self._addr
            self._forget()
            _lib.gearman_task_free(addr)

    def __del__(self) -> None:
        # GC may run in any thread, even inside run_tasks: hand the C task to
        # its client, which frees it at a safe point.
        try:
            addr, client = self._addr, self._client()
            if addr and client is not None and client._ptr is not None:
                client._free_queue.append((_lib.gearman_task_free, addr))
        except Exception:
            pass

    def _read(self, reader) -> None:
        """Refresh from the C task, while there is one, what an accessor
        returns (``reader``: one of _READERS); a callback reads its task
        at every event, so each accessor asks C only for its own fields."""
        client = self._client()
        if client is None:
            return
        with client._lock:
            addr = self._addr
            if addr:
                reader(self, addr)

    # --- public ----------------------------------------------------------------
    def result(self) -> Any:
        """The deserialized payload of the latest event, or None."""
        self._read(_read_result)
        data = self._data
        if data is None:
            return None
        if self._rc == WORK_EXCEPTION or self._event == "exception":
            return _decode_report(self._serializer, data)
        return decode(self._serializer, data)

    def data(self) -> bytes:
        self._read(_read_result)
        return self._data if self._data is not None else b""

    def data_size(self) -> int:
        return len(self.data())

    def job_handle(self) -> Optional[str]:
        self._read(_read_handle)
        return self._handle

    def unique(self) -> Optional[str]:
        self._read(_read_unique)
        return self._unique

    def function_name(self) -> str:
        return self._function

    def returncode(self) -> str:
        self._read(_read_result)
        return describe_returncode(self._rc)

    def is_known(self) -> bool:
        self._read(_read_status)
        return self._known

    def is_running(self) -> bool:
        self._read(_read_status)
        return self._running

    def numerator(self) -> int:
        self._read(_read_status)
        return self._num

    def denominator(self) -> int:
        self._read(_read_status)
        return self._den

    def error(self) -> Optional[str]:
        self._read(_read_error)
        return self._error

    def strstate(self) -> str:
        self._read(_read_state)
        return self._state

    def _status_dict(self) -> Dict[str, Any]:
        return {"is_known": self._known, "is_running": self._running,
                "numerator": self._num, "denominator": self._den}

    def __repr__(self) -> str:
        return "<pygear.Task %s %s %s>" % (self._function, self._handle or "-",
                                           describe_returncode(self._rc))


# What a Task reads from its live C task, by accessor (all of them: _snapshot).

def _text(raw: Optional[bytes]) -> Optional[str]:
    return raw.decode("utf-8", "replace") if raw else None


def _read_handle(task: Task, addr: int) -> None:
    task._handle = _text(_lib.gearman_task_job_handle(addr)) or task._handle


def _read_unique(task: Task, addr: int) -> None:
    task._unique = _text(_lib.gearman_task_unique(addr)) or task._unique


def _read_result(task: Task, addr: int) -> None:
    """The return code, and with it the payload of a WORK_EXCEPTION."""
    rc = _lib.gearman_task_return(addr)
    if task._raised:
        rc = WORK_EXCEPTION
    task._rc = rc
    if rc == WORK_EXCEPTION and task._event != "exception":
        exc = _lib.gearman_task_exception(addr)
        task._data = string_at(exc.c_str, exc.size) if exc.c_str and exc.size else None


def _read_status(task: Task, addr: int) -> None:
    task._known = bool(_lib.gearman_task_is_known(addr))
    task._running = bool(_lib.gearman_task_is_running(addr))
    task._num = int(_lib.gearman_task_numerator(addr))
    task._den = int(_lib.gearman_task_denominator(addr))


def _read_error(task: Task, addr: int) -> None:
    task._error = _text(_lib.gearman_task_error(addr))


def _read_state(task: Task, addr: int) -> None:
    task._state = _text(_lib.gearman_task_strstate(addr)) or task._state


_READERS = (_read_handle, _read_unique, _read_status, _read_error, _read_state, _read_result)


def snapshot_all(tasks: List[Task]) -> None:
    for task in tasks:
        task._detach()


def _decode_report(serializer: Any, raw: bytes) -> Any:
    """A worker's exception report: its serializer's form, else JSON text."""
    if not raw:
        return None
    for s in (serializer, JSON):
        try:
            return decode(s, raw)
        except Exception:
            continue
    return raw

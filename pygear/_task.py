"""Task: one job of a batch (``Client.add_task*``), as its events report it.

A Task never reads C: every accessor answers from what the task's events
wrote into it (pygear/_events.py calls ``_on_event`` while libgearman runs),
so it is safe from any thread, during a blocking call in another one, and
after its C task or its client is gone.  Which collection holds a task, and
when its C side is created and freed, is the TaskBook's business
(pygear/_taskbook.py); ``pygear.client.Task`` is this class.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Optional, Tuple

from . import _events, _lib, _report
from ._events import COMPLETE, CREATED, DATA, EXCEPTION, FAIL, STATUS, WARNING
from .errors import RETURN_CODES, describe_returncode
from .serializers import decode

if TYPE_CHECKING:
    from ._taskbook import TaskBook

SUCCESS = RETURN_CODES["SUCCESS"]
PAUSE = RETURN_CODES["PAUSE"]
UNKNOWN_STATE = RETURN_CODES["UNKNOWN_STATE"]
WORK_EXCEPTION = RETURN_CODES["WORK_EXCEPTION"]
WORK_FAIL = RETURN_CODES["WORK_FAIL"]


_OUTCOMES = {SUCCESS: "complete", WORK_FAIL: "fail", WORK_EXCEPTION: "exception"}


def record_outcome(metrics: Any, task: "Task", now: float) -> None:
    """The task's outcome and latency, to a client's metrics recorder (if any)."""
    if metrics is not None and task._started is not None:
        metrics.finished(task._function, _OUTCOMES.get(task._rc, "complete"),
                         now - task._started)


# What one batch C client can hold only one of at a time: the blocking
# TaskBook and aio.Client both keep a second one waiting in Python.

def job_key(task: "Task") -> Optional[Tuple[Any, Any]]:
    """A foreground job's (function, unique) when the user gave the key: a
    second one beside it in the same C client never ends
    (_workarounds.SAME_UNIQUE_IN_ONE_CLIENT).  None for every other task."""
    if task._key is None or task._background or task._status_of is not None:
        return None
    return task._fn, task._uq


def may_ask(tasks: Iterable["Task"], handle: bytes) -> bool:
    """Whether a status task about ``handle`` may join the C client that
    holds ``tasks`` now: not beside the same question
    (_workarounds.STATUS_TO_FIRST_TASK), nor beside a job still waiting for
    its JOB_CREATED (_workarounds.STATUS_TAKES_JOB_CREATED).  Either waits
    one round trip."""
    return not any(t._status_of == handle or (t._status_of is None and not t._handle)
                   for t in tasks)


def _text(raw: Optional[bytes]) -> Optional[str]:
    return raw.decode("utf-8", "replace") if raw else None


class Task:
    """One job submitted through ``add_task*`` or ``add_task_status``."""

    __slots__ = ("_book", "_fn", "_uq", "_workload", "_c_name", "_background", "_status_of",
                 "_serializer", "_function", "_unique", "_key", "_data", "_event", "_handle",
                 "_rc", "_known", "_running", "_num", "_den", "_error", "_state", "_report",
                 "_raised", "_server", "_started", "_addr", "_link", "_gen", "_pin",
                 "_abandoned", "__weakref__")

    def __init__(self, book: "TaskBook", fn: bytes, uq: bytes, workload: bytes, c_name: str,
                 background: bool, serializer: Any, key: Optional[bytes],
                 status_of: Optional[bytes] = None) -> None:
        self._book = book
        self._fn, self._uq, self._workload = fn, uq, workload
        self._c_name, self._background = c_name, background
        self._status_of = status_of        # add_task_status: the handle asked about
        self._key = key                    # the user's unique key (placement), if any
        self._serializer = serializer
        self._function = fn.decode("utf-8", "replace")
        self._unique = uq.decode("utf-8", "replace") if uq else None
        self._handle: Optional[str] = _text(status_of)
        self._server: Optional[str] = None
        self._started: Optional[float] = None   # when it was added, if metrics record it
        self._addr: Optional[int] = None   # its C task, while there is one
        self._link: Any = None             # the server link that holds it
        self._gen: Any = None              # pygear.aio: the C client generation holding it
        self._pin: Any = None              # pygear.aio: the one server it must go to
        self._abandoned = False            # pygear.aio: nobody awaits it any more
        self.reset()

    def reset(self) -> None:
        """Back to new: it will be sent (again, elsewhere) from the start."""
        self._data: Optional[bytes] = None
        self._event: Optional[int] = None
        if self._status_of is None:
            self._handle = None
        self._rc = UNKNOWN_STATE
        self._known = self._running = False
        self._num = self._den = 0
        self._error: Optional[str] = None
        self._state = "new"
        self._report: Optional[bytes] = None   # a held-back exception-report warning
        self._raised = False                   # a WORK_FAIL that carried a report

    # --- events (called by the trampolines, with libgearman on the stack) ----
    def _on_event(self, kind: int, addr: int) -> int:
        book = self._book
        if self._handle is None:
            self._handle = _text(_lib.gearman_task_job_handle(addr))
        if kind == DATA or kind == WARNING or kind == COMPLETE or kind == EXCEPTION:
            data = _events.payload(addr)
            if kind == WARNING and self._report is None and not self._raised \
                    and _report.looks_like_report(data):
                self._report = data   # a WORK_FAIL next means the function raised
                return SUCCESS
            if self._report is not None and not self._deliver_held_warning():
                return PAUSE
            self._data = data
        if kind == CREATED:
            self._known = True
            self._state = "created"
            if self._background:
                self._rc = SUCCESS
        elif kind == DATA:
            self._known = self._running = True
            self._state = "data"
        elif kind == WARNING:
            self._state = "warning"
        elif kind == STATUS:
            self._num = int(_lib.gearman_task_numerator(addr))
            self._den = int(_lib.gearman_task_denominator(addr))
            self._known = bool(_lib.gearman_task_is_known(addr))
            self._running = bool(_lib.gearman_task_is_running(addr))
            self._state = "status"
            if self._status_of is not None:
                self._rc = SUCCESS
        elif kind == COMPLETE:
            self._known = self._running = False
            self._rc, self._state = SUCCESS, "complete"
        elif kind == EXCEPTION:
            self._known = self._running = False
            self._rc, self._state = WORK_EXCEPTION, "exception"
        elif kind == FAIL:
            self._known = self._running = False
            if self._report is not None or self._raised:
                # the report warning before this WORK_FAIL: the function raised
                kind = EXCEPTION
                if self._report is not None:
                    self._data, self._report = self._report, None
                self._raised = True
                self._rc, self._state = WORK_EXCEPTION, "exception"
            else:
                self._data = None
                self._rc, self._state = WORK_FAIL, "fail"
                self._error = _text(_lib.gearman_task_error(addr))
        self._event = kind
        if not book.callback(kind, self):
            return PAUSE              # the callback raised: run_tasks re-raises it
        if kind in _events.FINAL or (kind == CREATED and self._background) or \
                (kind == STATUS and self._status_of is not None):
            self._state = "finished"
            self._workload = b""      # never sent again
            book.ended(self)
            if self._started is not None:
                book.record(self)
        return SUCCESS

    def _deliver_held_warning(self) -> bool:
        """The held warning was not followed by WORK_FAIL: an ordinary
        warning after all, handed over late rather than lost."""
        data, self._report = self._report, None
        self._data, self._event, self._state = data, WARNING, "warning"
        return self._book.callback(WARNING, self)

    def _failed(self, exc: BaseException) -> None:
        self._book.raised_in_callback(exc)

    # --- public -----------------------------------------------------------------
    def result(self) -> Any:
        """The deserialized payload of the latest event (data chunk, warning,
        exception report or final result), or None when there is none."""
        data = self._data
        if data is None:
            return None
        if self._rc == WORK_EXCEPTION or self._event == EXCEPTION:
            return _report.decode_report(self._serializer, data)
        return decode(self._serializer, data)

    def data(self) -> bytes:
        """The raw bytes of the latest event's payload, as the worker sent
        them, before deserializing (``result()`` is the deserialized form)."""
        return self._data if self._data is not None else b""

    def data_size(self) -> int:
        """``len(data())``."""
        return len(self._data) if self._data is not None else 0

    def job_handle(self) -> Optional[str]:
        """The handle the server issued ("H:host:42"), once it did."""
        return self._handle

    def server(self) -> Optional[str]:
        """The server ("host:port") that holds the job, once it was sent."""
        return self._server

    def unique(self) -> Optional[str]:
        """The job's unique key (pygear gives one to every job)."""
        return self._unique

    def function_name(self) -> str:
        """The function the job was submitted to."""
        return self._function

    def returncode(self) -> str:
        """The outcome's gearman_return_t name: "SUCCESS", "WORK_FAIL",
        "WORK_EXCEPTION", or "UNKNOWN_STATE" while it runs."""
        return describe_returncode(self._rc)

    def is_known(self) -> bool:
        """Whether the server knows the job (status tasks: the answer)."""
        return self._known

    def is_running(self) -> bool:
        """Whether a worker runs the job (status tasks: the answer)."""
        return self._running

    def numerator(self) -> int:
        """The latest status numerator the worker sent."""
        return self._num

    def denominator(self) -> int:
        """The latest status denominator the worker sent."""
        return self._den

    def error(self) -> Optional[str]:
        """libgearman's text for a failed task, else None."""
        return self._error

    def strstate(self) -> str:
        """Where the task is: "new" (not sent yet), "submitted", "created",
        "data", "warning", "status" (its latest event), "finished"."""
        return self._state

    def _status(self) -> Dict[str, Any]:
        """``job_status``'s dict, from this task's answer."""
        return {"is_known": self._known, "is_running": self._running,
                "numerator": self._num, "denominator": self._den}

    def __repr__(self) -> str:
        return "<pygear.Task %s %s %s>" % (self._function, self._handle or "-",
                                           describe_returncode(self._rc))


Callback = Callable[[Task], Any]
CALLBACK_NAMES: Dict[str, int] = {name: kind for kind, name in enumerate(_events.NAMES)}

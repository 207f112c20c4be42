"""One job at a time: ``do*``, ``do_*background``, job status and echo.

Each runs alone on a server's ``do`` C client (pygear/_link.py): submit,
drive libgearman through the one wait loop until the job ends, read the
outcome, free the C task.  A server that fails meanwhile is marked down and
the job goes to the next one (at least once: a foreground job whose server
died is lost with it, so it runs again elsewhere, with the same unique key);
a background job counts as submitted only once a server said JOB_CREATED.
An interrupted or timed-out call drops its server's ``do`` C client (the
only safe way to drop an unfinished C task) and says, on the exception,
which job it left behind (``job_handle``, ``server``) when the server had
issued one.
"""
from __future__ import annotations

import time
from ctypes import byref, c_int
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from . import _events, _lib, _report
from ._events import COMPLETE, EXCEPTION, FAIL, LIVE, WARNING
from ._link import SERVER_FAILURES, CClient, Link, server_failure
from ._wait import WAITING, Deadline, drive
from .errors import ERROR, RETURN_CODES, GearmanError, error_for
from .serializers import decode

if TYPE_CHECKING:
    from .client import Client

SUCCESS = RETURN_CODES["SUCCESS"]
IO_WAIT = RETURN_CODES["IO_WAIT"]
PAUSE = RETURN_CODES["PAUSE"]
TIMEOUT = RETURN_CODES["TIMEOUT"]
WORK_EXCEPTION = RETURN_CODES["WORK_EXCEPTION"]
WORK_FAIL = RETURN_CODES["WORK_FAIL"]

ADD_TASK = {
    ("normal", False): "gearman_client_add_task",
    ("high", False): "gearman_client_add_task_high",
    ("low", False): "gearman_client_add_task_low",
    ("normal", True): "gearman_client_add_task_background",
    ("high", True): "gearman_client_add_task_high_background",
    ("low", True): "gearman_client_add_task_low_background",
}


class DoJob:
    """What the trampolines record about the one job of a ``do*`` call."""

    __slots__ = ("data", "report", "event", "error")

    def __init__(self) -> None:
        self.data: Optional[bytes] = None
        self.report: Optional[bytes] = None     # a held-back exception report
        self.event: Optional[int] = None        # the final event, once it came
        self.error: Optional[BaseException] = None

    def on_event(self, kind: int, addr: int) -> int:
        if kind == COMPLETE:
            self.data, self.event = _events.payload(addr), COMPLETE
        elif kind == WARNING:
            # do* reports only the final payload; a warning matters only as
            # the report before a WORK_FAIL (pygear/_report.py).
            data = _events.payload(addr)
            self.report = data if _report.looks_like_report(data) else None
        elif kind == EXCEPTION:
            data = _events.payload(addr)
            if not data:
                exc = _lib.gearman_task_exception(addr)
                if exc.c_str and exc.size:
                    from ctypes import string_at
                    data = string_at(exc.c_str, exc.size)
            self.data, self.event = data, EXCEPTION
        elif kind == FAIL:
            if self.report is not None:
                self.data, self.event = self.report, EXCEPTION
            else:
                self.event = FAIL
        return SUCCESS

    def failed(self, exc: BaseException) -> None:
        self.error = exc


def _run_alone(cc: CClient, ms: int) -> Any:
    """A step of the wait loop: run the C client's one task for a slice."""
    ptr = cc.ptr
    if ms != cc.c_timeout:
        cc.set_timeout(ms)
    run, wait = _lib.gearman_client_run_tasks, _lib.gearman_client_wait
    while True:
        rc = run(ptr)
        if rc == IO_WAIT:
            waited = wait(ptr)
            if waited == SUCCESS:
                continue
            if waited == TIMEOUT:
                return WAITING
            return waited
        return rc


def _left_behind(exc: BaseException, cc: CClient, addr: int, link: Link) -> None:
    """Say on the exception which job an interrupted call leaves queued."""
    raw = _lib.gearman_task_job_handle(addr) if cc.ptr else None
    if raw:
        try:
            exc.job_handle = raw.decode("utf-8", "replace")   # type: ignore[attr-defined]
            exc.server = link.name                            # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            pass


def submit(client: "Client", priority: str, background: bool, fn: bytes, uq: bytes,
           key: Optional[bytes], data: bytes) -> Any:
    """Run one job (or queue it, ``background``); returns its outcome."""
    settings = client._settings
    links = client._live_links()
    metrics = settings.metrics
    started = time.monotonic() if metrics is not None else 0.0
    if metrics is not None:
        metrics.submitted(fn.decode("utf-8", "replace"))
    outcome: Optional[str] = "error"
    try:
        result = _submit(client, links, priority, background, fn, uq, key, data)
        # a background job ends on a worker, not here: it is only counted submitted
        outcome = None if background else "complete"
        return result
    except GearmanError as exc:
        outcome = {WORK_FAIL: "fail", WORK_EXCEPTION: "exception",
                   TIMEOUT: "timeout"}.get(exc.code or -1, "error")
        raise
    finally:
        if metrics is not None and outcome is not None:
            metrics.finished(fn.decode("utf-8", "replace"), outcome, time.monotonic() - started)


def _submit(client: "Client", links: List[Link], priority: str, background: bool, fn: bytes,
            uq: bytes, key: Optional[bytes], data: bytes) -> Any:
    deadline = Deadline(client._settings.timeout)
    add = getattr(_lib, ADD_TASK[priority, background])
    rc_out = c_int(SUCCESS)
    last: Optional[BaseException] = None
    order = client._placement.order(links, key)
    retried = set()
    while order:
        link = order[0]
        reused = link.do is not None and link.do.ptr is not None
        try:
            cc = link.do_client(client, deadline)
        except BaseException as exc:
            if not server_failure(exc):
                raise
            last = exc
            order.pop(0)
            continue
        addr = add(cc.ptr, None, None, fn, uq, data or None, len(data), byref(rc_out))
        if not addr:
            raise client._record(cc.error(rc_out.value, _submitting(fn)))
        record = None if background else DoJob()
        if record is not None:
            LIVE[addr] = record
        try:
            rc = drive(client._gate, deadline, lambda ms: _run_alone(cc, ms),
                       lambda: client._timeout_error(_submitting(fn)))
        except BaseException as exc:
            LIVE.pop(addr, None)
            _left_behind(exc, cc, addr, link)
            link.drop(cc)
            if isinstance(exc, GearmanError):
                client._record(exc)
            raise
        LIVE.pop(addr, None)
        if rc == SUCCESS:
            try:
                return _outcome(client, cc, addr, record, link, fn)
            finally:
                _lib.gearman_task_free(addr)
        if rc == PAUSE and record is not None and record.error is not None:
            link.drop(cc)
            raise record.error
        failure = cc.error(rc, _submitting(fn))
        link.drop(cc)       # the task is not finished: never freed alone
        if rc not in SERVER_FAILURES:
            raise client._record(failure)
        last = failure
        if reused and link not in retried:
            retried.add(link)   # a connection that had worked: the server may have
            continue            # restarted; once more on a fresh one, then it is down
        link.failed_with(failure)
        order.pop(0)
    if last is None:
        last = error_for(RETURN_CODES["NO_SERVERS"], "%s failed: no job server was given "
                         "(add_server or add_servers)" % _submitting(fn))
    raise client._record(last)


def _submitting(fn: bytes) -> str:
    return "submitting job to %r" % fn.decode("utf-8", "replace")


def _outcome(client: "Client", cc: CClient, addr: int, record: Optional[DoJob], link: Link,
             fn: bytes) -> Any:
    if record is None:
        raw = _lib.gearman_task_job_handle(addr)
        if not raw:
            raise client._record(error_for(RETURN_CODES["UNKNOWN_STATE"],
                                           "%s: the server sent no job handle" % _submitting(fn)))
        handle = raw.decode("utf-8", "replace")
        client._issued(handle, link)
        return {"result": None, "job_handle": handle, "server": link.name}
    serializer = client._settings.serializer
    if record.event == COMPLETE:
        return decode(serializer, record.data or b"")
    if record.event == EXCEPTION:
        raise client._record(error_for(WORK_EXCEPTION, "%s: the worker raised an exception"
                                       % _submitting(fn),
                                       _report.decode_report(serializer, record.data or b"")))
    if record.event == FAIL:
        raise client._record(error_for(WORK_FAIL, "%s: the worker failed the job"
                                       % _submitting(fn)))
    rc = _lib.gearman_task_return(addr)
    raise client._record(cc.error(rc, _submitting(fn)))


# --- status ------------------------------------------------------------------------

def _status_once(client: "Client", link: Link, key: bytes, by_unique: bool,
                 deadline: Deadline) -> Dict[str, Any]:
    cc = link.do_client(client, deadline)
    rc_out = c_int(SUCCESS)
    if by_unique:
        addr = _lib.gearman_client_add_task_status_by_unique(cc.ptr, None, key, byref(rc_out))
    else:
        addr = _lib.gearman_client_add_task_status(cc.ptr, None, None, key, byref(rc_out))
    what = "asking %s for the status of %r" % (link.name, key.decode("utf-8", "replace"))
    if not addr:
        raise client._record(cc.error(rc_out.value, what))
    try:
        rc = drive(client._gate, deadline, lambda ms: _run_alone(cc, ms),
                   lambda: client._timeout_error(what))
    except BaseException:
        link.drop(cc)
        raise
    if rc != SUCCESS:
        failure = cc.error(rc, what)
        link.drop(cc)
        link.failed_with(failure)
        raise client._record(failure)
    try:
        return {"is_known": bool(_lib.gearman_task_is_known(addr)),
                "is_running": bool(_lib.gearman_task_is_running(addr)),
                "numerator": int(_lib.gearman_task_numerator(addr)),
                "denominator": int(_lib.gearman_task_denominator(addr))}
    finally:
        _lib.gearman_task_free(addr)


def status(client: "Client", key: bytes, by_unique: bool, server: Optional[Link]) -> Dict[str, Any]:
    """Ask the job's own server (SPEC "Where a job lives")."""
    deadline = Deadline(client._settings.timeout)
    if server is not None:
        return _status_once(client, server, key, by_unique, deadline)
    links = client._live_links()
    if not links:
        raise client._record(error_for(RETURN_CODES["NO_SERVERS"],
                                       "job status failed: no job server was given"))
    if not by_unique:
        issuer = client._issuer(key.decode("utf-8", "replace"))
        if issuer is not None or len(links) == 1:
            return _status_once(client, issuer or links[0], key, by_unique, deadline)
    order = client._placement.order(links, key if by_unique else None)
    answers: List[Tuple[Link, Dict[str, Any]]] = []
    errors: List[BaseException] = []
    for link in order:
        try:
            answer = _status_once(client, link, key, by_unique, deadline)
        except GearmanError as exc:
            if not server_failure(exc):
                raise
            errors.append(exc)
            continue
        if answer["is_known"]:
            if by_unique:
                return answer
            answers.append((link, answer))
    if len(answers) == 1:
        return answers[0][1]
    if len(answers) > 1:
        raise client._record(ERROR("job handle %r is known to several servers (%s): handles "
                                   "are unique only per server; pass server=" % (
                                       key.decode("utf-8", "replace"),
                                       ", ".join(link.name for link, _ in answers))))
    if errors and len(errors) == len(order):
        raise client._record(errors[-1])
    return {"is_known": False, "is_running": False, "numerator": 0, "denominator": 0}


# --- echo ------------------------------------------------------------------------

def echo(client: "Client", link: Link, payload: bytes, deadline: Deadline) -> None:
    cc = link.do_client(client, deadline)
    retried = []

    def step(ms: int) -> Any:
        cc.set_timeout(ms)
        rc = _lib.gearman_client_echo(cc.ptr, payload or None, len(payload))
        if rc == TIMEOUT:
            retried.append(True)
            return WAITING
        return rc

    try:
        rc = drive(client._gate, deadline, step,
                   lambda: client._timeout_error("echo to %s" % link.name))
    except BaseException:
        link.drop(cc)
        raise
    if retried:
        link.drop(cc)   # an earlier attempt's answer may still be on its way
    if rc != SUCCESS:
        failure = cc.error(rc, "echo to %s" % link.name) if cc.ptr else error_for(
            rc, "echo to %s failed" % link.name)
        link.drop(cc)
        link.failed_with(failure)
        raise client._record(failure)

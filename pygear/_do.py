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

import logging
import time
from ctypes import byref, c_int
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from . import _events, _lib, _report
from ._events import COMPLETE, EXCEPTION, FAIL
from ._link import SERVER_FAILURES, CClient, Link, server_failure
from ._wait import NEVER, WAITING, Deadline, drive
from .errors import ERROR, RETURN_CODES, GearmanError, error_for
from .serializers import RAW, decode

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("pygear")
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
    """The one job of a ``do*`` call, and what its events said.

    Its C client's callbacks pause the run loop (_events.pausers), so each
    event is read here (``take``), between two C calls, from the task
    libgearman holds paused: which event it is, from the task's return code
    (the do C client hears only of warnings and the three endings)."""

    __slots__ = ("addr", "data", "report", "event")
    addr: int
    data: Optional[bytes]
    report: Optional[bytes]     # a held-back exception report
    event: Optional[int]        # the final event, once it came

    def take(self, rc: int) -> None:
        """The event libgearman paused on: ``rc`` says which (_events.PAUSED)."""
        addr = self.addr
        if rc == PAUSE:               # WORK_COMPLETE
            size = _lib.gearman_task_data_size(addr)
            ptr = _lib.gearman_task_data(addr) if size else None
            self.data = _events.string_at(ptr, size) if ptr else b""
            self.event = COMPLETE
        elif rc == WORK_FAIL:
            if self.report is not None:
                self.data, self.event = self.report, EXCEPTION
            else:
                self.event = FAIL
        elif rc == WORK_EXCEPTION:
            exc = _lib.gearman_task_exception(addr)
            self.data = _events.string_at(exc.c_str, exc.size) if exc.c_str and exc.size else \
                _events.payload(addr)
            self.event = EXCEPTION
        else:                         # WORK_WARNING
            # do* reports only the final payload; a warning
            # matters as the report before a WORK_FAIL (pygear/_report.py).
            data = _events.payload(addr)
            self.report = data if _report.looks_like_report(data) else None


def _left_behind(exc: BaseException, cc: CClient, addr: int, link: Link) -> None:
    """Say on the exception which job an interrupted call leaves queued."""
    raw = _lib.gearman_task_job_handle(addr) if cc.ptr else None
    if raw:
        try:
            exc.job_handle = raw.decode("utf-8", "replace")   # type: ignore[attr-defined]
            exc.server = link.name                            # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            pass


def submit(client: "Client", add: Any, background: bool, fn: bytes, uq: bytes,
           key: Optional[bytes], data: bytes) -> Any:
    """Run one job (or queue it, ``background``) and return its outcome.

    The one path for every do* call, kept lean: each Python step between
    two round trips is on the critical path (bench/: CPU per job)."""
    settings = client._settings
    if settings.metrics is not None:
        return _recorded(client, settings.metrics, add, background, fn, uq, key, data)
    deadline = NEVER if settings.timeout < 0 else Deadline(settings.timeout)
    links = client._links
    order = links if len(links) == 1 else client._placement.order(links, key)
    failures: List[BaseException] = []
    i = 0
    while i < len(order):
        link = order[i]
        cc = link.do
        if cc is None or cc.busy or cc.version != settings.version or not cc.ptr:
            try:
                cc = link.do_client(client, deadline, len(order) - i)
            except BaseException as exc:
                if not server_failure(exc):
                    raise
                failures.append(exc)
                i += 1
                continue
        # An empty workload goes as NULL (_workarounds.EMPTY_WORKLOAD).
        addr = add(cc.ptr, None, None, fn, uq, data or None, len(data), cc.rc_ref)
        if not addr:
            raise client._record(cc.error(cc.rc.value, _submitting(fn)))
        # Until this call ends well, the C client holds an unfinished task:
        # whatever cuts it short (even a second Ctrl-C while it cleans up)
        # leaves it busy, and busy it is dropped before any further use.
        cc.busy = True
        if background:
            record = None
        else:
            record = cc.job = cc.record       # one per C client, reset for each job
            record.addr, record.data, record.report, record.event = addr, None, None, None
        try:
            rc = drive(client._gate, deadline, cc.run_alone, _timed_out, client, fn)
        except BaseException as exc:
            _left_behind(exc, cc, addr, link)
            link.drop(cc)
            if isinstance(exc, GearmanError):
                client._record(exc)
            raise
        if rc == SUCCESS:
            cc.busy, cc.worked = False, True
            try:
                if record is None:
                    raw = _lib.gearman_task_job_handle(addr)
                    if raw:
                        handle = raw.decode("utf-8", "replace")
                        if len(links) > 1:
                            client._issuers.issued(handle, link)
                        return {"result": None, "job_handle": handle, "server": link.name}
                elif record.event == COMPLETE:
                    serializer = settings.serializer
                    return record.data if serializer is RAW else serializer.loads(record.data)
                return _outcome(client, cc, addr, record, fn)
            finally:
                _lib.gearman_task_free(addr)
        failure = cc.error(rc, _submitting(fn))
        link.drop(cc)       # the task is not finished: never freed alone
        if rc not in SERVER_FAILURES:
            raise client._record(failure)
        failures.append(failure)
        if cc.worked:
            # A connection that had worked: the server may have restarted.
            # Once more, on a fresh one (which has not worked yet: once only).
            order = list(order)
            order.insert(i + 1, link)
        else:
            link.failed_with(failure)
        i += 1
        if i < len(order):
            log.info("job for %r sent again, to %s, after %s failed",
                     fn.decode("utf-8", "replace"), order[i].name, link.name)
    raise client._record(failures[-1] if failures else error_for(
        RETURN_CODES["NO_SERVERS"], "%s failed: no job server was given (add_server or "
        "add_servers)" % _submitting(fn)))


def _recorded(client: "Client", metrics: Any, add: Any, background: bool, fn: bytes,
              uq: bytes, key: Optional[bytes], data: bytes) -> Any:
    """``submit``, counted and timed in the client's metrics recorder."""
    name = fn.decode("utf-8", "replace")
    started = time.monotonic()
    metrics.submitted(name)
    outcome: Optional[str] = "error"
    settings = client._settings
    try:
        settings.metrics = None
        result = submit(client, add, background, fn, uq, key, data)
        # a background job ends on a worker, not here: it is only counted submitted
        outcome = None if background else "complete"
        return result
    except GearmanError as exc:
        outcome = {WORK_FAIL: "fail", WORK_EXCEPTION: "exception",
                   TIMEOUT: "timeout"}.get(exc.code or -1, "error")
        raise
    finally:
        settings.metrics = metrics
        if outcome is not None:
            metrics.finished(name, outcome, time.monotonic() - started)


def _timed_out(client: "Client", fn: bytes) -> BaseException:
    """The TIMEOUT a do* call raises, made only if it comes to that."""
    return client._timeout_error(_submitting(fn))


def _submitting(fn: bytes) -> str:
    return "submitting job to %r" % fn.decode("utf-8", "replace")


def _outcome(client: "Client", cc: CClient, addr: int, record: Optional[DoJob],
             fn: bytes) -> Any:
    """Every outcome but the usual two (a result, a handle)."""
    if record is None:
        raise client._record(error_for(RETURN_CODES["UNKNOWN_STATE"],
                                       "%s: the server sent no job handle" % _submitting(fn)))
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
                 deadline: Deadline, alternatives: int = 1) -> Dict[str, Any]:
    cc = link.do_client(client, deadline, alternatives)
    rc_out = c_int(SUCCESS)
    if by_unique:
        addr = _lib.gearman_client_add_task_status_by_unique(cc.ptr, None, key, byref(rc_out))
    else:
        addr = _lib.gearman_client_add_task_status(cc.ptr, None, None, key, byref(rc_out))
    what = "asking %s for the status of %r" % (link.name, key.decode("utf-8", "replace"))
    if not addr:
        raise client._record(cc.error(rc_out.value, what))
    try:
        rc = drive(client._gate, deadline, cc.run_alone, lambda: client._timeout_error(what))
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
    links = client._links
    if not links:
        raise client._record(error_for(RETURN_CODES["NO_SERVERS"],
                                       "job status failed: no job server was given"))
    if not by_unique:
        issuer = client._issuers.issuer(key.decode("utf-8", "replace"))
        if issuer is not None or len(links) == 1:
            return _status_once(client, issuer or links[0], key, by_unique, deadline)
    order = client._placement.order(links, key if by_unique else None)
    answers: List[Tuple[Link, Dict[str, Any]]] = []
    errors: List[BaseException] = []
    for i, link in enumerate(order):
        try:
            answer = _status_once(client, link, key, by_unique, deadline, len(order) - i)
        except GearmanError as exc:
            # a server that went silent on an open connection ends in TIMEOUT:
            # a server that already answered is the one that knows the job
            if not server_failure(exc) and not (answers and exc.code == TIMEOUT):
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

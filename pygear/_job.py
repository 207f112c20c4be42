"""Job: one job a Worker took, and how replies to it reach libgearman.

Who owns a job's C side (``gearman_job_st``):

- a job run by ``Worker.work()`` belongs to libgearman, which frees it when
  the job function returns; the Job copies out what it may be asked later
  (``_disown``) and never touches C after that;
- a job from ``grab_job()`` belongs to its C worker's ``jobs`` table
  (pygear/worker.py): freed by ``gearman_job_free`` when it is finished, or
  with its C worker, never twice; a C worker replaced meanwhile is kept
  until its open jobs are finished.

Sending on a job goes through the worker's Gate: while a job function runs
(the Gate is *parked* in user code), its own thread and helper threads may
send on that job, one at a time under ``send_lock``; otherwise a send waits
its turn like any other call.
"""
from __future__ import annotations

import ctypes
from ctypes import string_at
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

import logging
import platform
import sys
import time

from . import _lib, _report, _signals
from ._wait import SLICE_MS
from .errors import ERROR, RETURN_CODES, error_for
from .serializers import JSON, RAW, decode, encode

if TYPE_CHECKING:
    from ._cworker import CWorker
    from .worker import Worker

SUCCESS = RETURN_CODES["SUCCESS"]
# a reply that failed with these never reached the server, which requeues the job
_CONNECTION_LOST = frozenset(RETURN_CODES[n] for n in ("LOST_CONNECTION", "ERRNO", "TIMEOUT"))
log = logging.getLogger("pygear")


class ReplyLost(Exception):
    """Not raised: says to the worker that a reply never reached its server
    (the watchdog cut a stalled connection), which hands the job on."""


REPLY_LOST = ReplyLost("the reply could not be sent")


def _text(raw: Optional[bytes]) -> Optional[str]:
    return raw.decode("utf-8", "replace") if raw else None


class Job:
    """A job assigned to this worker.  Finish it with send_complete,
    send_fail or send_exception (``Worker.work`` does that for you with the
    function's return value)."""

    __slots__ = ("_worker", "_cw", "_ptr", "_serializer", "_raw", "_handle", "_function",
                 "_unique", "_finished", "_outcome", "__weakref__")

    def __init__(self, worker: "Worker", cw: "CWorker", ptr: Any) -> None:
        self._worker: Optional["Worker"] = worker
        self._cw: Optional["CWorker"] = cw                     # the C worker whose connection it came on
        self._ptr = ptr
        self._serializer = worker._settings.serializer
        self._finished = False
        self._outcome = "complete"         # how it was finished (metrics)
        size = _lib.gearman_job_workload_size(ptr)
        data = _lib.gearman_job_workload(ptr) if size else None
        self._raw = string_at(data, size) if data else b""
        self._handle: Optional[str] = None
        self._function: Optional[str] = None
        self._unique: Optional[str] = None

    def _read_ids(self) -> None:
        ptr = self._ptr
        if ptr is not None and self._handle is None:
            self._handle = _text(_lib.gearman_job_handle(ptr)) or ""
            self._function = _text(_lib.gearman_job_function_name(ptr)) or ""
            self._unique = _text(_lib.gearman_job_unique(ptr))

    # --- reading ------------------------------------------------------------------
    def workload(self) -> Any:
        """The workload, deserialized with the worker's serializer."""
        if self._serializer is not JSON:
            return decode(self._serializer, self._raw)
        try:
            return decode(JSON, self._raw)
        except ValueError as exc:   # the usual mix-up: a client that sends plain bytes
            raise WorkloadError(self._raw, exc) from exc

    def raw_workload(self) -> bytes:
        """The workload's bytes, as the client sent them."""
        return self._raw

    def workload_size(self) -> int:
        """``len(raw_workload())``."""
        return len(self._raw)

    def handle(self) -> str:
        """The job handle ("H:host:42")."""
        self._read_ids()
        return self._handle or ""

    def function_name(self) -> str:
        """The function name as it came on the wire (namespace included)."""
        self._read_ids()
        return self._function or ""

    def unique(self) -> Optional[str]:
        """The client's unique key for the job."""
        self._read_ids()
        return self._unique

    def is_finished(self) -> bool:
        """Whether a final reply (complete, fail, exception) was sent."""
        return self._finished

    # --- sending ---------------------------------------------------------------------
    def _send(self, c_fn: Callable[..., int], what: str, *args: Any) -> None:
        worker = self._worker
        if self._finished:
            raise ERROR("job %s is already finished; cannot %s" % (self.handle(), what))
        if worker is None:
            raise ERROR("job %s can no longer be answered: it was given back to the server "
                        "or its worker is closed" % self.handle())
        send(worker, self, c_fn, what, args)

    def _send_payload(self, c_fn: Callable[..., int], what: str, obj: Any) -> None:
        data = encode(self._serializer, obj, what)
        self._send(c_fn, what, data or None, len(data))

    def send_data(self, obj: Any) -> None:
        """Send a WORK_DATA chunk (the client's data callback)."""
        self._send_payload(_lib.gearman_job_send_data, "send_data", obj)

    def send_warning(self, obj: Any) -> None:
        """Send a WORK_WARNING (the client's warning callback)."""
        self._send_payload(_lib.gearman_job_send_warning, "send_warning", obj)

    def send_status(self, numerator: int, denominator: int) -> None:
        """Send WORK_STATUS (progress); safe from a helper thread while the
        job function runs."""
        for n in (numerator, denominator):
            if isinstance(n, bool) or not isinstance(n, int):
                raise TypeError("status numbers must be ints")
            if not 0 <= n < 2 ** 32:
                raise ValueError("status numbers must be in 0..2**32-1")
        self._send(_lib.gearman_job_send_status, "send_status", numerator, denominator)

    def send_complete(self, obj: Any) -> None:
        """Finish the job with ``obj`` as its result."""
        self._send_payload(_lib.gearman_job_send_complete, "send_complete", obj)
        self._finish()

    def send_exception(self, obj: Any) -> None:
        """Send WORK_EXCEPTION, which ends the job.  Beware: gearmand 1.1.20
        mangles the WORK_FAIL it sends instead to clients that did not ask
        for exceptions, and those wait forever (_workarounds.WORK_EXCEPTION_MANGLED)."""
        data = encode(self._serializer, obj, "send_exception")
        if not data:   # libgearman refuses an empty exception
            raise ValueError("send_exception needs a non-empty payload")
        self._send(_lib.gearman_job_send_exception, "send_exception", data, len(data))
        self._finish("exception")

    def send_fail(self) -> None:
        """Finish the job as failed (the client gets WORK_FAIL)."""
        self._send(_lib.gearman_job_send_fail, "send_fail")
        self._finish("fail")

    def _send_report(self, exc: BaseException) -> None:
        """End the job of a function that raised (pygear/_report.py)."""
        data = _report.encode_report(self._serializer, _report.build(exc))
        self._send(_lib.gearman_job_send_warning, "send_warning", data, len(data))
        self._send(_lib.gearman_job_send_fail, "send_fail")
        self._finish("exception")

    def _finish(self, outcome: str = "complete") -> None:
        self._finished = True
        self._outcome = outcome
        worker = self._worker
        if worker is not None:
            finished(worker, self)

    def __repr__(self) -> str:
        return "<pygear.Job %s %s%s>" % (self.function_name(), self.handle(),
                                         " finished" if self._finished else "")


class WorkloadError(ValueError):
    """A JSON worker got a workload that is not JSON, said in one plain
    sentence with the fix (the report the client gets carries it)."""

    def __init__(self, raw: bytes, cause: BaseException) -> None:
        shown = raw[:40] + (b"..." if len(raw) > 40 else b"")
        super().__init__(
            "the workload %r is not JSON (%s): this worker reads JSON, the client sent plain "
            "bytes; serve it with worker.set_serializer(pygear.RAW), or send JSON "
            "(pygear submit --json)" % (shown, cause))


# --- running a job, and replying to one -----------------------------------------

def run(worker: "Worker", job_ptr: int, name: str, cw: "CWorker") -> bool:
    """Called by _on_job: run the function and reply.  False: give the
    job back (libgearman drops the connection; gearmand requeues it).
    Every line here is on each job's path (bench/: CPU per job)."""
    job = Job.__new__(Job)      # no __init__: a Python call less per job
    job._worker, job._cw, job._ptr = worker, cw, job_ptr
    settings = worker._settings
    job._serializer = settings.serializer
    job._finished, job._outcome = False, "complete"
    job._handle = job._function = job._unique = None
    size = _lib.gearman_job_workload_size(job_ptr)
    data = _lib.gearman_job_workload(job_ptr) if size else None
    job._raw = _string_at(data, size) if data else b""
    fn = settings.functions[name][0]
    metrics = settings.metrics
    started = _monotonic() if metrics is not None else 0.0
    outcome = "complete"
    gate, watched = worker._gate, cw.watched
    try:
        if fn is None:
            job.send_fail()   # registered for grab_job only: never leave it hanging
            outcome = "fail"
            return True
        worker._current = job
        gate.parked, watched.since = True, None     # user code: not the watchdog's business
        try:
            result = _signals.run_unblocked(fn, job)
        except Exception as exc:
            _unpark(gate, watched, settings.timeout)
            outcome = "exception"
            log.warning("job function %r raised on job %s", name, job.handle(), exc_info=exc)
            if not job._finished:
                job._send_report(exc)
            return True
        except BaseException as exc:
            # Ctrl-C, SystemExit: the worker stops, the job goes back.
            _unpark(gate, watched, settings.timeout)
            outcome = "given back"      # not an outcome: the job runs again elsewhere
            if worker._pending is None:
                worker._pending = exc
            return job._finished
        send_lock = gate.send_lock      # a helper thread's send finishes first
        send_lock.acquire()
        gate.parked = False
        send_lock.release()
        _watch_reply(watched, settings.timeout)
        if job._finished:
            return True
        serializer = settings.serializer
        if serializer is RAW and type(result) is bytes:
            reply: bytes = result
        else:
            try:
                reply = encode(serializer, result, "result")
            except TypeError as exc:   # the result could not be serialized
                outcome = "exception"
                job._send_report(exc)
                return True
        rc = _lib.gearman_job_send_complete(job_ptr, reply or None, len(reply))
        if rc in _CONNECTION_LOST:
            outcome = "given back"  # the connection is gone: gearmand hands the job on
            if worker._pending is None:
                worker._pending = REPLY_LOST
            return False
        if rc != SUCCESS:
            raise error_for(rc, "job %s: send_complete failed: %s"
                            % (job.handle(), _lib.strerror(rc)))
        job._finished = True
        return True
    finally:
        worker._current = None
        # libgearman frees the C job now.  A Job nothing else holds can
        # never be asked again: copying its identity out (three C calls)
        # is only worth it for one the function kept (_REFS_OF_A_LOCAL).
        if _REFS_OF_A_LOCAL is None or _getrefcount(job) > _REFS_OF_A_LOCAL:  # type: ignore[misc]
            job._read_ids()
        job._ptr = job._worker = job._cw = None
        if metrics is not None and outcome != "given back":
            metrics.job_done(name, job._outcome if outcome == "complete" else outcome,
                             _monotonic() - started)


def _refs_of_a_local() -> Optional[int]:
    """sys.getrefcount of an object held by one local variable (and the
    call's own argument), on CPython; None elsewhere (always copy)."""
    if platform.python_implementation() != "CPython":
        return None
    obj = object()
    return sys.getrefcount(obj)


_REFS_OF_A_LOCAL = _refs_of_a_local()
_string_at = getattr(ctypes, "_string_at", string_at)   # string_at's C part: a frame less
_getrefcount = getattr(sys, "getrefcount", None)
_monotonic = time.monotonic


def _unpark(gate: Any, watched: Any, timeout_ms: int) -> None:
    with gate.send_lock:        # a helper thread's send finishes first
        gate.parked = False
    _watch_reply(watched, timeout_ms)


def _watch_reply(watched: Any, timeout_ms: int) -> None:
    """pygear's code again, after the job function: the reply gets the
    worker's timeout (at least a second) from now.  The function's own
    time is no fault of the server's; without this, a job that ran past
    work()'s deadline had its reply cut by the watchdog (pygear/_stuck.py)."""
    now = watched.since = _monotonic()
    if watched.deadline is not None:
        watched.deadline = max(watched.deadline, now + max(timeout_ms, 1000) / 1000.0)


def send(worker: "Worker", job: Job, c_fn: Callable[..., int], what: str,
         args: Tuple[Any, ...]) -> None:
    gate = worker._gate
    if gate.parked and job is worker._current:
        token = _signals.block()   # the main thread sending for a job run in another
        try:
            with gate.send_lock:
                if gate.parked:
                    return _send_now(worker, job, c_fn, what, args)
        finally:
            _signals.restore(token)
    if gate.inside():
        return _send_now(worker, job, c_fn, what, args)
    gate.enter()
    try:
        _send_now(worker, job, c_fn, what, args)
    finally:
        gate.leave()

def _send_now(worker: "Worker", job: Job, c_fn: Callable[..., int], what: str,
              args: Tuple[Any, ...]) -> None:
    cw = job._cw
    if job._ptr is None or cw is None or cw.ptr is None:
        raise ERROR("job %s can no longer be answered: its connection is closed"
                    % job.handle())
    if cw.c_timeout is None or cw.c_timeout < SLICE_MS:
        cw.set_timeout(SLICE_MS)    # how often a blocked send polls meanwhile
    watched = cw.watched
    outer, watched.since = watched.since, _monotonic()
    try:
        rc = c_fn(job._ptr, *args)
    finally:
        watched.since = outer
    if rc != SUCCESS:
        raise worker._record(error_for(rc, "job %s: %s failed: %s"
                                     % (job.handle(), what, _lib.strerror(rc))))

def finished(worker: "Worker", job: Job) -> None:
    """A grabbed job was answered: its C side can go."""
    cw = job._cw
    ptr = job._ptr
    if cw is not None and ptr is not None and \
            cw.jobs.pop(getattr(ptr, "value", ptr), None) is not None:
        job._read_ids()
        job._ptr = None
        job._worker = job._cw = None
        _lib.gearman_job_free(ptr)
        for server in worker._servers:
            server.reap()

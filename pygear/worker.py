"""Worker and Job.

``work()`` drives ``gearman_worker_work`` with the C timeout set to one
slice, so that Python regains control (and Ctrl-C works) several times a
second while idle.  Every registered function goes through one v1
trampoline, which runs the Python function, sends the reply itself and
lets no exception cross the C frame.

``grab_job()`` cannot use libgearman's non-blocking grab: in 1.1.20 a
non-blocking ``gearman_worker_grab_job`` that answers NO_JOBS leaves its
state machine pointing at a NULL connection, and the next call segfaults.
So manual mode grabs in blocking mode and naps between empty grabs.
"""
from __future__ import annotations

import itertools
import json
import platform
import sys
import time
import traceback
import weakref
from ctypes import byref, c_int, string_at
from typing import Any, Callable, Dict, Optional, Tuple, Union

from . import _lib, _tls
from ._base import (CONNECTION_CODES, NO_JOBS, SLICE_MS, SUCCESS, TIMEOUT, Deadline, c_names,
                    Handle, to_bytes)
from .errors import ERROR, GearmanError, RETURN_CODES, error_for
from .serializers import RAW, decode, encode

JobFunction = Callable[["Job"], Any]
NO_REGISTERED_FUNCTIONS = RETURN_CODES["NO_REGISTERED_FUNCTIONS"]
LOST_CONNECTION = RETURN_CODES["LOST_CONNECTION"]


def _function_arg(name: Union[str, bytes]) -> bytes:
    data = to_bytes(name, "function name")
    if len(data) >= _lib.FUNCTION_MAX_SIZE:
        raise ValueError("function name is %d bytes; libgearman allows at most %d"
                         % (len(data), _lib.FUNCTION_MAX_SIZE - 1))
    return data


def exception_report(exc: BaseException) -> Dict[str, Any]:
    """What a client learns about an exception raised in a job function."""
    args = []
    for arg in exc.args:
        try:
            json.dumps(arg)
            args.append(arg)
        except (TypeError, ValueError):
            args.append(repr(arg))
    return {"type": type(exc).__name__, "message": str(exc), "args": args,
            "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__)}


class Job:
    """A job assigned to this worker.  Finish it with send_complete,
    send_fail or send_exception (``Worker.work`` does that for you)."""

    __slots__ = ("_worker", "_ptr", "_owned", "_cworker", "_serializer", "_handle", "_function",
                 "_unique", "_ids_read", "_raw", "_finished", "__weakref__")

    def __init__(self, worker: "Worker", ptr, owned: bool) -> None:
        self._worker: Optional[Worker] = worker
        self._ptr = ptr
        self._owned = owned   # False inside work(): libgearman frees it
        self._cworker = worker._ptr   # the C worker it belongs to (see Worker._renew)
        self._serializer = worker._serializer
        self._finished = False
        size = _lib.gearman_job_workload_size(ptr)
        self._raw = string_at(_lib.gearman_job_workload(ptr), size) if size else b""
        # Handle, function name and unique key: read on first use, or before
        # libgearman frees a work() job that may outlive it (see _on_job).
        self._ids_read = False
        if owned:
            self._read_ids()

    def _read_ids(self) -> None:
        ptr, self._ids_read = self._ptr, True
        raw = _lib.gearman_job_handle(ptr) if ptr else None
        self._handle = raw.decode("utf-8", "replace") if raw else ""
        raw = _lib.gearman_job_function_name(ptr) if ptr else None
        self._function = raw.decode("utf-8", "replace") if raw else ""
        raw = _lib.gearman_job_unique(ptr) if ptr else None
        self._unique = raw.decode("utf-8", "replace") if raw else None

    # --- reading ----------------------------------------------------------------
    def workload(self) -> Any:
        return decode(self._serializer, self._raw)

    def raw_workload(self) -> bytes:
        return self._raw

    def workload_size(self) -> int:
        return len(self._raw)

    def handle(self) -> str:
        if not self._ids_read:
            self._read_ids()
        return self._handle

    def function_name(self) -> str:
        if not self._ids_read:
            self._read_ids()
        return self._function

    def unique(self) -> Optional[str]:
        if not self._ids_read:
            self._read_ids()
        return self._unique

    def is_finished(self) -> bool:
        return self._finished

    # --- sending -----------------------------------------------------------------
    def _send(self, c_fn, what: str, *args) -> None:
        worker = self._worker
        if self._finished or worker is None or self._ptr is None:
            raise ERROR("job %s is already finished; cannot %s" % (self.handle(), what))
        with worker._lock:
            if worker._ptr is None:
                raise ERROR("the worker of job %s is closed" % self.handle())
            # libgearman retries a blocked send until it goes through (job.cc,
            # _job_send loops on TIMEOUT): the C timeout only sets how often
            # it polls meanwhile.  A whole slice (work()'s) is often enough;
            # only a shorter one is raised.
            if worker._c_timeout is None or worker._c_timeout < SLICE_MS:
                timeout = worker._send_timeout()
                if timeout != worker._c_timeout:
                    worker._set_c_timeout(timeout)
            rc = c_fn(self._ptr, *args)
            if rc != SUCCESS:
                raise error_for(rc, "job %s: %s failed: %s"
                                % (self.handle(), what, worker._error_text(rc)))

    def _send_payload(self, c_fn, what: str, obj: Any) -> None:
        data = encode(self._serializer, obj, what)
        self._send(c_fn, what, data or None, len(data))

    def send_data(self, obj: Any) -> None:
        self._send_payload(_lib.gearman_job_send_data, "send_data", obj)

    def send_warning(self, obj: Any) -> None:
        self._send_payload(_lib.gearman_job_send_warning, "send_warning", obj)

    def send_status(self, numerator: int, denominator: int) -> None:
        for n in (numerator, denominator):
            if isinstance(n, bool) or not isinstance(n, int):
                raise TypeError("status numbers must be ints")
            if not 0 <= n < 2 ** 32:
                raise ValueError("status numbers must be in 0..2**32-1")
        self._send(_lib.gearman_job_send_status, "send_status", numerator, denominator)

    def send_complete(self, obj: Any) -> None:
        self._send_payload(_lib.gearman_job_send_complete, "send_complete", obj)
        self._finish()

    def send_exception(self, obj: Any) -> None:
        """Send WORK_EXCEPTION, which ends the job.  Beware: gearmand 1.1.20
        mangles the WORK_FAIL it sends instead to clients that did not ask
        for exceptions, and those wait forever (see _send_report)."""
        data = encode(self._serializer, obj, "send_exception")
        if not data:   # libgearman refuses an empty exception
            raise ValueError("send_exception needs a non-empty payload")
        self._send(_lib.gearman_job_send_exception, "send_exception", data, len(data))
        self._finish()

    def send_fail(self) -> None:
        self._send(_lib.gearman_job_send_fail, "send_fail")
        self._finish()

    def _send_report(self, report: Dict[str, Any]) -> None:
        """End the job of a function that raised: the report as WORK_WARNING,
        then WORK_FAIL.

        Not WORK_EXCEPTION: gearmand 1.1.20 ends the job on it, and the
        WORK_FAIL it sends in its place to clients that did not ask for
        exceptions carries the handle with a trailing NUL, which libgearman
        clients do not match, so they wait forever.  Every client sees this
        WORK_FAIL; pygear's client turns the warning before it back into
        WORK_EXCEPTION with the report."""
        try:
            if self._serializer is RAW:
                raise TypeError("RAW cannot encode a dict")
            data = encode(self._serializer, report, "exception report")
        except TypeError:
            data = json.dumps(report).encode("utf-8")
        self._send(_lib.gearman_job_send_warning, "send_warning", data, len(data))
        self._send(_lib.gearman_job_send_fail, "send_fail")
        self._finish()

    def _finish(self) -> None:
        self._finished = True
        if self._owned:
            self._free()

    def _free(self) -> None:
        ptr, self._ptr = self._ptr, None
        worker, self._worker = self._worker, None
        if ptr and self._owned and worker is not None and worker._ptr is not None:
            _lib.gearman_job_free(ptr)
            worker._reap_retired()

    def _disown(self, may_outlive: bool = True) -> None:
        """libgearman frees this job when the function returns."""
        if may_outlive and not self._ids_read:
            self._read_ids()
        self._ptr = None
        self._worker = None

    def __repr__(self) -> str:
        return "<pygear.Job %s %s%s>" % (self.function_name(), self.handle(),
                                         " finished" if self._finished else "")


class _GrabbedJob(Job):
    """A job from grab_job(): pygear owns its C side.  (A work() job needs
    no finalizer, libgearman frees it: one Python call less per job.)"""

    __slots__ = ()

    def __del__(self) -> None:
        # An unfinished job dropped by Python: free its C side at the worker's
        # next safe point.  gearmand gives the job to another worker when this
        # connection closes.
        try:
            ptr, worker = self._ptr, self._worker
            if ptr and self._owned and worker is not None and worker._ptr is not None:
                worker._free_queue.append((_lib.gearman_job_free, ptr))
        except Exception:
            pass


_context_keys = itertools.count(1)
# The context key C passes with each job -> (a weak reference to the Worker,
# the function's registered name).  One key per registration, so a job is
# dispatched without asking C for its function name (which carries the
# namespace).  A plain dict, read on every job; entries go with their
# registration or, through the reference's callback, with the Worker.
JOB_CONTEXTS: "Dict[int, Tuple[weakref.ref, str]]" = {}


def _refs_of_a_local() -> int:
    """sys.getrefcount of an object held by one local variable only."""
    obj = object()
    return sys.getrefcount(obj)


# CPython: a work() job nothing else references when its function returns
# cannot be read later, so its identity need not be copied out of C.
_LOCAL_ONLY = _refs_of_a_local() if platform.python_implementation() == "CPython" else None


def _forget(contexts: Dict[str, int]) -> None:
    for context in contexts.values():
        JOB_CONTEXTS.pop(context, None)
    contexts.clear()


def _set_return(ret_ptr: int, code: int) -> None:
    c_int.from_address(ret_ptr).value = code


def _on_job(job_ptr, context, result_size, ret_ptr):
    """The v1 function of every registered name: run the Python function and
    reply ourselves; return NULL so libgearman sends nothing more.

    ``result_size`` and ``ret_ptr`` arrive as addresses, preset by
    libgearman to 0 and SUCCESS (function_v1.hpp, worker.cc), so only a
    failure writes them."""
    worker = None
    job = None
    try:
        entry = JOB_CONTEXTS.get(context)
        worker = entry[0]() if entry is not None else None
        if worker is None:
            _set_return(ret_ptr, RETURN_CODES["WORK_FAIL"])
            return 0   # NULL; PyPy's ctypes cannot convert None for a c_void_p restype
        job = Job(worker, job_ptr, owned=False)
        worker._run_job(job, entry[1])
    except BaseException as exc:   # nothing may cross the C frame
        if worker is not None and worker._pending is None:
            worker._pending = exc
        if isinstance(exc, GearmanError) and exc.code == LOST_CONNECTION:
            _set_return(ret_ptr, LOST_CONNECTION)   # libgearman reconnects; the job is retried
        elif job is None or not job._finished:
            _set_return(ret_ptr, RETURN_CODES["WORK_FAIL"])
    finally:
        if job is not None:
            job._disown(_LOCAL_ONLY is None or sys.getrefcount(job) > _LOCAL_ONLY)
    return 0   # NULL: we replied ourselves (0, not None: PyPy needs an int)


# Created once for the life of the process: C may call it from any worker.
JOB_TRAMPOLINE = _lib.worker_fn(_on_job)


class Worker(Handle):
    """A Gearman worker: register functions, then work()."""

    _kind = "worker"
    _C = c_names("gearman_worker")

    def _configure(self) -> None:
        self._functions: Dict[str, Tuple[Optional[JobFunction], int]] = {}
        self._pending: Optional[BaseException] = None
        self._contexts: Dict[str, int] = {}   # registered name -> its JOB_CONTEXTS key
        self._namespace: Optional[bytes] = None
        # libgearman's grab state machine after it handed out a job; see _renew.
        self._after_job = False
        self._open_jobs: "weakref.WeakSet[Job]" = weakref.WeakSet()   # grab_job's
        self._retired: list = []   # replaced C workers that still own open jobs
        self._wref = weakref.ref(self, lambda _, contexts=self._contexts: _forget(contexts))
        self._setup_c_worker(self._ptr)

    def _setup_c_worker(self, ptr) -> None:
        _lib.gearman_worker_add_options(ptr, _lib.WORKER_GRAB_UNIQ)
        # TIMEOUT_RETURN: an idle slice returns TIMEOUT instead of looping in C.
        _lib.gearman_worker_set_timeout(ptr, SLICE_MS)
        self._c_timeout = SLICE_MS
        if getattr(self, "_ssl", None):   # a replaced C worker keeps TLS
            _lib.gearman_worker_set_ssl(ptr, True, *self._ssl)

    def _renew(self) -> None:
        """Swap in a fresh C worker with the same settings and functions.

        In libgearman 1.1.20, a gearman_worker_grab_job that finds no job
        right after one was handed out returns NO_JOBS with its state left on
        GRAB_JOB_SEND and its connection pointer NULL: the next grab or work
        on that C worker segfaults.  A C worker that still owns open jobs is
        kept (their replies go through its connection) until they end."""
        old = self._ptr
        new = _lib.gearman_worker_create(None)
        if not new:
            raise error_for(RETURN_CODES["MEMORY_ALLOCATION_FAILURE"], "gearman_worker_create failed")
        self._setup_c_worker(new)
        if self._identifier:
            _lib.gearman_worker_set_identifier(new, self._identifier, len(self._identifier))
        if self._namespace is not None:
            _lib.gearman_worker_set_namespace(new, self._namespace or None, len(self._namespace))
        if self._log_cb is not None:
            _lib.gearman_worker_set_log_fn(new, self._log_cb, None, self._log_verbose)
        for host, port in self._servers:
            _lib.gearman_worker_add_server(new, host.encode(), port)
        for name, (fn, timeout) in self._functions.items():
            _lib.gearman_worker_add_function(new, name.encode("utf-8"), timeout,
                                             JOB_TRAMPOLINE, self._contexts[name])
        self._ptr = new
        self._after_job = False
        self._buffers_widened = False
        if any(job._cworker == old and job._ptr for job in self._open_jobs):
            self._retired.append(old)
        else:
            _lib.gearman_worker_free(old)

    def _reap_retired(self) -> None:
        """Free the replaced C workers whose jobs have all ended."""
        for old in list(self._retired):
            if not any(job._cworker == old and job._ptr for job in self._open_jobs):
                self._retired.remove(old)
                _lib.gearman_worker_free(old)

    def _drain_free_queue(self) -> None:
        super()._drain_free_queue()
        if self._retired:
            self._reap_retired()

    def _before_free(self) -> None:
        # libgearman frees a worker's jobs with it: no Job may keep a pointer.
        for job in list(self._open_jobs):
            job._ptr = None
        for old in self._retired:
            _lib.gearman_worker_free(old)
        self._retired = []

    def _send_timeout(self) -> int:
        # libgearman loops until a packet is sent; the timeout bounds each poll.
        return 1000 if self._timeout < 0 else max(1, min(self._timeout, 1000))

    def clone(self) -> "Worker":
        """A new Worker with the same servers, functions, timeout and serializer."""
        with self._lock:
            self._p()
            other = Worker()
            if self._servers:
                other._add_servers(list(self._servers))
            other._timeout = self._timeout
            other._serializer = self._serializer
            for name, (fn, timeout) in self._functions.items():
                other._register(name, timeout, fn)
            return other

    # --- functions -----------------------------------------------------------------
    def add_function(self, name: Union[str, bytes], timeout: int, fn: JobFunction) -> None:
        """Serve ``name`` with fn(job); its return value completes the job."""
        if not callable(fn):
            raise TypeError("job function must be callable")
        self._register(name, timeout, fn)

    def register(self, name: Union[str, bytes], timeout: int = 0) -> None:
        """Tell the servers we can do ``name``; take its jobs with grab_job()
        (work() fails them, having no function to run)."""
        self._register(name, timeout, None)

    def _register(self, name, timeout, fn) -> None:
        data = _function_arg(name)
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise TypeError("timeout must be an int of seconds")
        if not 0 <= timeout < 2 ** 32:
            raise ValueError("timeout must be in 0..2**32-1 seconds")
        key = data.decode("utf-8", "replace")
        with self._lock:
            ptr = self._p()
            if key in self._functions:
                _lib.gearman_worker_unregister(ptr, data)
                del self._functions[key]
                JOB_CONTEXTS.pop(self._contexts.pop(key), None)
            context = next(_context_keys)
            JOB_CONTEXTS[context] = (self._wref, key)
            rc = _lib.gearman_worker_add_function(ptr, data, timeout, JOB_TRAMPOLINE, context)
            if rc != SUCCESS:
                del JOB_CONTEXTS[context]
                raise self._fail(rc, "registering %r" % key)
            self._contexts[key] = context
            self._functions[key] = (fn, timeout)

    def unregister(self, name: Union[str, bytes]) -> None:
        data = _function_arg(name)
        with self._lock:
            rc = _lib.gearman_worker_unregister(self._p(), data)
            if rc != SUCCESS:
                raise self._fail(rc, "unregistering %r" % data.decode("utf-8", "replace"))
            key = data.decode("utf-8", "replace")
            self._functions.pop(key, None)
            JOB_CONTEXTS.pop(self._contexts.pop(key, None), None)

    def unregister_all(self) -> None:
        with self._lock:
            ptr = self._p()
            if not self._functions:
                return
            rc = _lib.gearman_worker_unregister_all(ptr)
            if rc != SUCCESS:
                raise self._fail(rc, "unregistering all functions")
            self._functions.clear()
            _forget(self._contexts)

    def function_exists(self, name: Union[str, bytes]) -> bool:
        data = _function_arg(name)
        with self._lock:
            return bool(_lib.gearman_worker_function_exist(self._p(), data, len(data)))

    # --- namespace, echo -----------------------------------------------------------
    def set_namespace(self, namespace: Union[str, bytes]) -> None:
        data = to_bytes(namespace, "namespace", allow_empty=True)
        with self._lock:
            _lib.gearman_worker_set_namespace(self._p(), data or None, len(data))
            self._namespace = data

    def namespace(self) -> Optional[str]:
        raw = _lib.gearman_worker_namespace(self._p())
        return raw.decode("utf-8", "replace") if raw else None

    def set_ssl(self, ca_file: Optional[str] = None, certificate: Optional[str] = None,
                key: Optional[str] = None) -> None:
        """Talk TLS to the servers; NotSupported, saying why, where the loaded
        libgearman cannot (pygear.features()), and then nothing changed."""
        _tls.enable(self, ca_file, certificate, key)


    # --- working --------------------------------------------------------------------
    def work(self) -> None:
        """Grab one job and run its function.  Raises TIMEOUT when no job
        came within the timeout."""
        with self._lock:
            ptr = self._p()
            if not self._functions:
                raise self._fail(NO_REGISTERED_FUNCTIONS, "work")
            deadline = Deadline(self._timeout)
            forever = deadline.at is None
            work = _lib.gearman_worker_work
            while True:
                ms = SLICE_MS if forever else deadline.slice_ms() or 1
                if ms != self._c_timeout:
                    self._set_c_timeout(ms)
                rc = work(ptr)
                if not self._buffers_widened:   # see _base.widen_socket_buffers
                    self._widen_buffers()
                if self._pending is not None:
                    exc, self._pending = self._pending, None
                    raise exc
                if rc == SUCCESS:
                    self._after_job = True
                    return
                if rc == TIMEOUT or rc == NO_JOBS:
                    self._check_deadline(deadline)
                    continue
                if rc in CONNECTION_CODES:
                    self._buffers_widened = False   # libgearman reconnects
                    self._nap(deadline)   # every server is down: retry in slices
                    continue
                raise self._fail(rc, "work")

    def _check_deadline(self, deadline: Deadline) -> None:
        if deadline.slice_ms() == 0:
            raise self._timeout_error("waiting for a job")

    def _nap(self, deadline: Deadline, ms: Optional[int] = None) -> None:
        self._check_deadline(deadline)
        time.sleep(min(ms or SLICE_MS, deadline.slice_ms()) / 1000.0)

    def grab_job(self) -> Job:
        """Wait for one job and hand it over; you finish it yourself."""
        with self._lock:
            ptr = self._p()
            deadline = Deadline(self._timeout)
            rc = c_int(SUCCESS)
            nap_ms = 1
            while True:
                self._set_c_timeout(deadline.slice_ms() or 1)
                job = _lib.gearman_worker_grab_job(ptr, None, byref(rc))
                if job:
                    self._after_job = True
                    job = _GrabbedJob(self, job, owned=True)
                    self._open_jobs.add(job)
                    return job
                code = rc.value
                if code == NO_JOBS and self._after_job:
                    self._renew()   # this C worker's next grab would segfault
                    ptr = self._ptr
                if code == NO_JOBS or code == TIMEOUT or code in CONNECTION_CODES:
                    # No PRE_SLEEP was sent, so gearmand will not wake us: poll,
                    # backing off to one slice.
                    self._nap(deadline, nap_ms)
                    nap_ms = min(nap_ms * 2, SLICE_MS)
                    continue
                raise self._fail(code, "grabbing a job")

    def _run_job(self, job: Job, name: str) -> None:
        entry = self._functions.get(name)
        fn = entry[0] if entry else None
        if fn is None:
            job.send_fail()   # registered for grab_job only; never leave it hanging
            return
        try:
            result = fn(job)
        except Exception as exc:
            if not job._finished:
                job._send_report(exception_report(exc))
            return
        if job._finished:
            return
        serializer = self._serializer
        if serializer is RAW and type(result) is bytes:
            data = result
        else:
            try:
                data = encode(serializer, result, "result")
            except TypeError as exc:   # the result could not be serialized
                job._send_report(exception_report(exc))
                return
        c_timeout = self._c_timeout
        if c_timeout is None or c_timeout < SLICE_MS or self._ptr is None:
            job._send(_lib.gearman_job_send_complete, "send_complete", data or None, len(data))
            job._finish()
            return
        # Job._send, inlined for the usual case: work() holds the lock and
        # the C timeout is already a whole slice.
        rc = _lib.gearman_job_send_complete(job._ptr, data or None, len(data))
        if rc != SUCCESS:
            raise error_for(rc, "job %s: send_complete failed: %s"
                            % (job.handle(), self._error_text(rc)))
        job._finished = True

    def wait(self) -> None:
        with self._lock:
            self._p()
            rc = self._wait(Deadline(self._timeout), "wait")
            # NO_ACTIVE_FDS: no connection awaits anything, so nothing to wait for.
            if rc not in (SUCCESS, TIMEOUT, RETURN_CODES["NO_ACTIVE_FDS"]):
                raise self._fail(rc, "wait")

"""A Worker's servers: one C worker each, and the one job trampoline.

Each server of a Worker has its own ``gearman_worker_st`` (``CWorker``), so
that a server that is down, silent or slow is that server's problem only
(the Worker waits on all of them: pygear/worker.py).  ``CWorker`` owns its C
worker and the jobs ``grab_job()`` took on it, and frees them in ``free``;
a C worker replaced while it still has open jobs is *retired* and kept
until they are finished (pygear/_job.py says who owns a job).
"""
from __future__ import annotations

import itertools
import weakref
from ctypes import c_int
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from . import _job, _lib, _settings, _stuck
from ._placement import Health
from ._probe import Probe, format_server
from ._sockets import Watch
from .errors import RETURN_CODES, GearmanError, error_for

if TYPE_CHECKING:
    from ._job import Job
    from .worker import Worker

SUCCESS = RETURN_CODES["SUCCESS"]
LOST_CONNECTION = RETURN_CODES["LOST_CONNECTION"]
BACKOFF_MAX = 1.0     # a worker re-checks a lost server every second at most

# The context C passes with each job -> (the Worker, weakly; the function's
# registered name).  One key per registration on a C worker, so a job is
# dispatched without asking C for its (namespaced) name
# (_workarounds.NAMESPACED_FUNCTION_NAME); keys go with their C worker.
JOB_CONTEXTS: Dict[int, Tuple["weakref.ref[Worker]", str, "weakref.ref[CWorker]"]] = {}
_context_keys = itertools.count(1)


def _on_job(job_ptr: int, context: int, result_size: int, ret_ptr: int) -> int:
    """The v1 function of every registered name (created once, below).

    Signals are blocked here (pygear/_signals.py), so nothing interrupts
    this frame; the job function itself runs with the caller's mask.  It
    always replies itself and returns NULL with SUCCESS
    (_workarounds.FAIL_RETURN_CODE); a job it must give back (the function
    was interrupted by Ctrl-C or SystemExit, or the reply could not be
    sent) gets LOST_CONNECTION, on which libgearman drops the connection and
    gearmand hands the job to another worker."""
    worker = None
    try:
        found = JOB_CONTEXTS.get(context)
        if found is None:
            _lib.gearman_job_send_fail(job_ptr)
            return 0
        worker_ref, name, cw_ref = found
        worker, cw = worker_ref(), cw_ref()
        if worker is None or cw is None:
            _lib.gearman_job_send_fail(job_ptr)
            return 0
        watch = cw.watch
        if watch is not None and watch.unadopted:
            cw.adopt()   # a new connection's first job: watched and widened before it replies
        if not _job.run(worker, job_ptr, name, cw):
            c_int.from_address(ret_ptr).value = LOST_CONNECTION
    except BaseException as exc:   # nothing may cross the C frame
        if worker is not None and worker._pending is None:
            worker._pending = exc
        c_int.from_address(ret_ptr).value = LOST_CONNECTION
    return 0   # NULL (0, not None: PyPy needs an int for a c_void_p result)


JOB_TRAMPOLINE = _lib.worker_fn(_on_job)


class CWorker:
    """One gearman_worker_st talking to one server; owns it and the jobs
    grab_job() took on it."""

    __slots__ = ("ptr", "server", "name", "watch", "c_timeout", "version", "contexts",
                 "after_job", "jobs", "hot", "watched", "__weakref__")

    def __init__(self, server: Tuple[str, int]) -> None:
        self.server = server
        self.name = format_server(server)
        self.ptr: Any = None
        self.watch: Optional[Watch] = None
        self.c_timeout: Optional[int] = None
        self.version = -1
        self.contexts: List[int] = []
        self.after_job = False     # a job was handed out: see _workarounds.GRAB_AFTER_JOB
        self.jobs: Dict[int, Job] = {}   # grab_job()'s open jobs, by C address
        self.hot = True            # may have jobs waiting: ask before sleeping
        self.watched: Any = None   # what the watchdog knows of it (pygear/_stuck.py)

    def open(self, worker: "Worker") -> None:
        settings = worker._settings
        self.watched = _stuck.watch(worker._gate)
        ptr = _lib.gearman_worker_create(None)
        if not ptr:
            raise MemoryError("gearman_worker_create failed")
        self.ptr = ptr
        try:
            _lib.gearman_worker_remove_servers(ptr)     # _workarounds.ENV_SERVERS
            _lib.gearman_worker_add_options(ptr, _lib.WORKER_GRAB_UNIQ)
            _settings.apply_worker(settings, ptr)
            self.version = settings.version
            ref, me = worker._ref, weakref.ref(self)
            for name, (fn, timeout) in settings.functions.items():
                context = next(_context_keys)
                JOB_CONTEXTS[context] = (ref, name, me)
                self.contexts.append(context)
                rc = _lib.gearman_worker_add_function(ptr, name.encode("utf-8"), timeout,
                                                      JOB_TRAMPOLINE, context)
                if rc != SUCCESS:
                    raise self.error(rc, "registering %r" % name)
            host, port = self.server
            rc = _lib.gearman_worker_add_server(ptr, host.encode("utf-8"), port)
            if rc != SUCCESS:
                raise self.error(rc, "adding the job server %s" % self.name)
            self.watch = Watch(self.server)   # libgearman connects at its first call
        except BaseException:
            self.free()
            raise

    def adopt(self) -> None:
        """Once its connection is up: find its socket (pygear/_sockets.py)
        for the watchdog and the poll, and widen its buffers."""
        watch = self.watch
        if watch is not None and watch.unadopted:
            watch.adopt()
            self.watched.fd = watch.fd

    def set_timeout(self, ms: int) -> None:
        if ms != self.c_timeout:
            _lib.gearman_worker_set_timeout(self.ptr, ms)
            self.c_timeout = ms

    def error(self, rc: int, what: str) -> GearmanError:
        raw = _lib.gearman_worker_error(self.ptr) if self.ptr else None
        return error_for(rc, "%s failed: %s" % (what, _lib.strerror(rc)),
                         detail=raw.decode("utf-8", "replace") if raw else None)

    def free(self) -> None:
        """Free the C worker, and with it every job it still holds."""
        for job in self.jobs.values():
            job._ptr = None
        self.jobs.clear()
        for context in self.contexts:
            JOB_CONTEXTS.pop(context, None)
        self.contexts = []
        if self.watch is not None:
            self.watch.release()
            self.watch = None
        ptr, self.ptr = self.ptr, None
        if ptr:
            _lib.gearman_worker_free(ptr)


class WorkerServer:
    """One server of a Worker: its health, its C worker, and the replaced
    C workers kept until the jobs they handed out are finished."""

    __slots__ = ("server", "name", "health", "cw", "retired", "probe", "rtt_ms")

    def __init__(self, server: Tuple[str, int], settings: Any = None) -> None:
        self.server = server
        self.name = format_server(server)
        self.health = Health(self.name, settings)
        self.cw: Optional[CWorker] = None
        self.retired: List[CWorker] = []
        self.probe: Optional[Probe] = None
        self.rtt_ms = 1

    def drop(self, reason: Optional[str] = None) -> None:
        cw, self.cw = self.cw, None
        if cw is not None:
            if cw.jobs:
                self.retired.append(cw)   # its open jobs still reply through it
            else:
                cw.free()
        if reason is not None:
            self.health.down(reason, most=BACKOFF_MAX)

    def reap(self) -> None:
        for cw in [cw for cw in self.retired if not cw.jobs]:
            self.retired.remove(cw)
            cw.free()

    def close(self) -> None:
        self.drop()
        for cw in self.retired:
            cw.free()
        self.retired = []
        if self.probe is not None:
            self.probe.close()
            self.probe = None

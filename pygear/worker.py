"""Worker and Job.

A Worker is a settings record (pygear/_settings.py), one C worker per
server (``CWorker``: one ``gearman_worker_st`` each, made on first use from
the record), and a Gate (pygear/_gate.py) through which every call passes.

``work()`` drives ``gearman_worker_work``, whose one v1 function
(``_on_job``) runs the Python function and replies itself: with one server
in slices of the one wait loop (pygear/_wait.py), libgearman doing the
waiting; with several, each server's C worker in turn, and one poll() over
their sockets while all are idle, so that a server that is down, silent or
slow never holds the others up.  ``grab_job()`` hands a job over instead
(manual mode).  A C worker whose registrations changed is made anew
(_workarounds.RE_REGISTER); one that lost its server is dropped and made
anew once the server answers pygear's echo again (_workarounds.NON_GEARMAN_PEER).
"""
from __future__ import annotations

import itertools
import logging
import select
import time
import weakref
from ctypes import byref, c_int
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import _args, _lib, _settings
from ._gate import entry, setting
from ._owner import Owner, Servers
from ._job import REPLY_LOST, Job, WorkloadError
from ._link import SERVER_FAILURES
from ._cworker import BACKOFF_MAX, CWorker, WorkerServer
from ._probe import Probe
from ._wait import NEVER, SLICE_MS, WAITING, Deadline, drive
from .errors import RETURN_CODES, GearmanError, error_for

__all__ = ["Worker", "Job", "WorkloadError"]

log = logging.getLogger("pygear")
_monotonic = time.monotonic
JobFunction = Callable[[Job], Any]

SUCCESS = RETURN_CODES["SUCCESS"]
TIMEOUT = RETURN_CODES["TIMEOUT"]
NO_JOBS = RETURN_CODES["NO_JOBS"]
LOST_CONNECTION = RETURN_CODES["LOST_CONNECTION"]
WORK_FAIL = RETURN_CODES["WORK_FAIL"]
_MIN_GRAB_MS = 5              # a C worker's slice when several share the wait

class Worker(Owner):
    """A Gearman worker: register functions, then ``work()`` or ``serve()``.

    ``Worker("h1:4730,h2:4730")`` (or a list) adds servers at once.  With
    several servers it takes jobs from all of them and keeps serving from
    the others while one is down.
    """

    _kind = "worker"
    _settings: _settings.WorkerSettings

    def __init__(self, servers: Optional[Servers] = None) -> None:
        self._pending: Optional[BaseException] = None   # raised where C called us
        self._ref = weakref.ref(self)
        self._turn = itertools.count()
        self._current: Optional[Job] = None             # the job its function runs
        self._deadline = NEVER                          # the running call's
        # A job grab_job() took as a Ctrl-C was pending: the KeyboardInterrupt
        # is raised as the call leaves, so the job waits here for the next
        # grab_job() instead of staying assigned to us, unseen, until close.
        self._handed_back: Optional[Job] = None
        self._setup(_settings.WorkerSettings(), servers)
        self._servers: List[WorkerServer] = self._servers_of

    # --- lifetime ---------------------------------------------------------------
    def _free(self) -> None:
        for server in self._servers:
            server.close()
        self._settings.forget()

    @entry
    def clone(self) -> "Worker":
        """A new Worker with every setting of this one, functions included."""
        other = Worker()
        settings = self._settings.copy()
        other._settings = settings
        other._servers[:] = [WorkerServer(s, settings) for s in settings.servers]
        return other

    # --- servers --------------------------------------------------------------------
    def _new_server(self, server: Tuple[str, int]) -> WorkerServer:
        return WorkerServer(server, self._settings)

    @entry
    def remove_servers(self) -> None:
        """Forget every server (their connections close)."""
        for server in self._servers:
            server.close()
        del self._servers[:]   # in place: it is Owner._servers_of
        self._settings.servers = []

    # --- settings --------------------------------------------------------------------
    @setting
    def set_namespace(self, namespace: Union[str, bytes]) -> None:
        """Prefix every function name on the wire with ``namespace``."""
        self._settings.namespace = _args.c_string(namespace, "namespace", allow_empty=True)
        self._settings.changed()

    def namespace(self) -> Optional[str]:
        """The namespace set with set_namespace, or None."""
        self._gate.check_open()
        ns = self._settings.namespace
        return ns.decode("utf-8", "replace") if ns else None

    @setting
    def set_metrics(self, recorder: Any) -> None:
        """Record the outcome and duration of every job work() runs in
        ``recorder``: a pygear.metrics.Recorder, or any object with
        ``job_done(function, outcome, seconds)``.  None stops recording.
        (grab_job() jobs are yours to time.)"""
        if recorder is not None and not callable(getattr(recorder, "job_done", None)):
            raise TypeError("a worker's recorder needs a job_done() method")
        self._settings.metrics = recorder

    def errno(self) -> int:
        """The system errno of the last failure (0: pygear keeps none for workers)."""
        self._gate.check_open()
        return 0

    # --- functions -------------------------------------------------------------------
    @setting
    def add_function(self, name: Union[str, bytes], fn_or_timeout: Any,
                     fn: Optional[JobFunction] = None, *, timeout: Optional[int] = None) -> None:
        """Serve ``name`` with fn(job); its return value completes the job.

        ``add_function(name, fn)``, ``add_function(name, fn, timeout=30)``
        and the seed's ``add_function(name, 30, fn)`` all work; ``timeout``
        is gearmand's limit in seconds for one job (0: none)."""
        if fn is None and callable(fn_or_timeout):
            fn, seconds = fn_or_timeout, 0
        else:
            seconds = fn_or_timeout
        if timeout is not None:
            seconds = timeout
        if not callable(fn):
            raise TypeError("job function must be callable: add_function(name, fn) or "
                            "add_function(name, timeout, fn)")
        self._register(name, seconds, fn)

    @setting
    def register(self, name: Union[str, bytes], timeout: int = 0) -> None:
        """Tell the servers we can do ``name``; take its jobs with grab_job()
        (work() fails them, having no function to run)."""
        self._register(name, timeout, None)

    def _register(self, name: Union[str, bytes], timeout: Any,
                  fn: Optional[JobFunction]) -> None:
        data = _args.function_name(name)
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise TypeError("timeout must be an int of seconds")
        if not 0 <= timeout < 2 ** 32:
            raise ValueError("timeout must be in 0..2**32-1 seconds")
        self._settings.functions[data.decode("utf-8", "replace")] = (fn, timeout)
        self._settings.changed()    # _workarounds.RE_REGISTER: C workers are made anew

    @setting
    def unregister(self, name: Union[str, bytes]) -> None:
        """Stop serving ``name``."""
        key = _args.function_name(name).decode("utf-8", "replace")
        if key not in self._settings.functions:
            raise self._record(error_for(RETURN_CODES["NO_REGISTERED_FUNCTION"],
                                         "unregistering %r failed: not registered" % key))
        del self._settings.functions[key]
        self._settings.changed()

    @setting
    def unregister_all(self) -> None:
        """Stop serving every function."""
        if self._settings.functions:
            self._settings.functions.clear()
            self._settings.changed()

    def function_exists(self, name: Union[str, bytes]) -> bool:
        """Whether ``name`` is registered here."""
        self._gate.check_open()
        return _args.function_name(name).decode("utf-8", "replace") in self._settings.functions

    # --- C workers ---------------------------------------------------------------------
    def _ready(self, server: WorkerServer, deadline: Deadline, blocking: bool) -> Optional[CWorker]:
        """The server's C worker, made (after pygear's echo) if needed; None
        while the server is down or, not ``blocking``, still being checked."""
        cw = server.cw
        if cw is not None and cw.ptr and cw.version == self._settings.version:
            return cw
        if cw is not None:
            server.drop()
        if not server.health.up and not blocking:
            return None
        probe = server.probe or Probe(server.server)
        server.probe = probe
        try:
            if blocking:
                connect = deadline.within(self._settings.connect_timeout)
                rtt = drive(self._gate, connect, probe.step, lambda: (
                    self._timeout_error("connecting to %s" % server.name) if deadline.passed()
                    else probe.timeout_error(self._settings.connect_timeout)))
            else:
                rtt = probe.step(0)
                if rtt is WAITING:
                    if time.monotonic() - probe._started > self._settings.connect_timeout / 1e3:
                        raise probe.timeout_error(self._settings.connect_timeout)
                    return None
        except GearmanError as exc:
            server.probe = None
            probe.close()
            if exc.code in SERVER_FAILURES:
                server.health.down(str(exc), most=BACKOFF_MAX)
                if not blocking:
                    return None
            raise
        server.probe = None
        server.rtt_ms = max(1, int(rtt * 1000))
        cw = CWorker(server.server)
        cw.open(self)
        server.cw = cw
        server.health.recovered()
        return cw

    def _work_on(self, server: WorkerServer, cw: CWorker, ms: int) -> Any:
        """One gearman_worker_work call on one server; True after a job."""
        if ms != cw.c_timeout:
            cw.set_timeout(ms)
        watched = cw.watched             # for the watchdog (pygear/_stuck.py)
        watched.deadline = self._deadline.at
        watched.since = _monotonic()
        try:
            rc = _lib.gearman_worker_work(cw.ptr)
        finally:
            watched.since = None
        if rc == SUCCESS and self._pending is None:
            cw.after_job = cw.hot = True
            return True
        return self._after_work(server, cw, rc)

    def _after_work(self, server: WorkerServer, cw: CWorker, rc: int) -> Any:
        """Whatever else a gearman_worker_work call ended with."""
        cw.adopt()
        pending, self._pending = self._pending, None
        if pending is REPLY_LOST:
            server.drop("its server stopped reading a job's reply; the job goes to another worker")
            return WAITING       # the deadline decides (TIMEOUT), as for any lost connection
        if pending is not None:
            server.drop()        # the job was given back with the connection
            raise pending
        if rc == SUCCESS:
            cw.after_job = cw.hot = True
            return True
        cw.hot = False
        if rc == TIMEOUT or rc == NO_JOBS:
            if cw.watch is not None and cw.watch.fd is not None and not cw.watch.current():
                server.drop("lost the connection")   # libgearman would reconnect unchecked
            return WAITING
        failure = cw.error(rc, "taking a job from %s" % server.name)
        if rc in SERVER_FAILURES:
            server.drop(str(failure))
            return WAITING
        raise self._record(failure)

    # --- working ------------------------------------------------------------------------
    def work(self) -> bool:
        """Take one job from any server and run its function; True once done.
        Raises pygear.TIMEOUT when no job came within the timeout."""
        gate = self._gate
        gate.enter()
        try:
            timeout = self._settings.timeout
            return self._work(NEVER if timeout < 0 else Deadline(timeout))
        finally:
            gate.leave()

    def _work(self, deadline: Deadline) -> bool:
        if not self._settings.functions:
            raise self._record(error_for(RETURN_CODES["NO_REGISTERED_FUNCTIONS"],
                                         "work failed: no functions have been registered"))
        if not self._servers:
            raise self._record(error_for(RETURN_CODES["NO_SERVERS"],
                                         "work failed: no job server was given"))
        self._deadline = deadline
        step = self._step_one if len(self._servers) == 1 else self._step_many
        return drive(self._gate, deadline, step, self._timeout_error,   # type: ignore
                     "waiting for a job")

    def _step_one(self, ms: int) -> Any:
        """A step of the wait loop with one server: libgearman waits (this
        is _work_on for the usual case, inlined: each line is on every job's
        path)."""
        server = self._servers[0]
        cw = server.cw
        if cw is not None and cw.ptr and cw.version == self._settings.version:
            if ms != cw.c_timeout:
                cw.set_timeout(ms)
            watched = cw.watched             # for the watchdog (pygear/_stuck.py)
            watched.deadline, watched.since = self._deadline.at, _monotonic()
            try:
                rc = _lib.gearman_worker_work(cw.ptr)
            finally:
                watched.since = None
            if rc == SUCCESS and self._pending is None:
                cw.after_job = True
                return True
            return self._after_work(server, cw, rc)
        if not server.health.up:
            time.sleep(min(ms, SLICE_MS) / 1000.0)   # down: wait out its backoff
            return WAITING
        try:
            cw = self._ready(server, self._deadline, blocking=True)
        except GearmanError as exc:
            if exc.code not in SERVER_FAILURES:
                raise
            time.sleep(min(ms, SLICE_MS) / 1000.0)   # the server is down: try again
            return WAITING
        assert cw is not None
        return self._work_on(server, cw, ms)

    def _step_many(self, ms: int) -> Any:
        """Each server's C worker in turn; then one poll() over their sockets."""
        deadline = self._deadline
        servers = self._servers
        start = next(self._turn) % len(servers)
        order = servers[start:] + servers[:start]
        end = time.monotonic() + ms / 1000.0
        while True:
            sleeping = []
            for server in order:
                cw = self._ready(server, deadline, blocking=False)
                if cw is None:
                    continue
                if cw.hot or cw.watch is None or cw.watch.fd is None:
                    slice_ms = max(_MIN_GRAB_MS, 4 * server.rtt_ms)
                    if self._work_on(server, cw, min(ms, slice_ms)) is True:
                        return True
                if server.cw is not None and server.cw.watch is not None \
                        and server.cw.watch.fd is not None:
                    sleeping.append(server)
            left = int((end - time.monotonic()) * 1000)
            if left <= 0:
                return WAITING
            watched: Dict[int, WorkerServer] = {}
            for server in sleeping:
                cw = server.cw
                if cw is not None and cw.watch is not None and cw.watch.fd is not None:
                    watched[cw.watch.fd] = server
            probing = [s.probe._sock for s in order if s.probe is not None and s.probe._sock]
            poller = select.poll()
            for fd in watched:
                poller.register(fd, select.POLLIN)
            for sock in probing:
                poller.register(sock, select.POLLIN | select.POLLOUT)
            for fd, _ in poller.poll(min(left, SLICE_MS) if watched or probing else min(left, 10)):
                woken = watched.get(fd)
                if woken is not None and woken.cw is not None:
                    woken.cw.hot = True      # a NOOP (a job came) or a reply
            if time.monotonic() >= end:
                return WAITING

    # --- manual mode -------------------------------------------------------------------------
    def grab_job(self) -> Job:
        """Wait for one job and hand it over; finish it yourself with
        job.send_complete / send_fail / send_exception.  A Ctrl-C that
        lands as a job is taken raises KeyboardInterrupt and keeps the job
        for the next grab_job() (close() gives it back to the server)."""
        gate = self._gate
        gate.enter()
        job: Optional[Job] = None
        try:
            job, self._handed_back = self._handed_back, None
            if job is None or job._ptr is None:
                job = self._grab()
        finally:
            try:
                gate.leave()
            except BaseException:
                self._handed_back = job
                raise
        return job

    def _grab(self) -> Job:
        if not self._servers:
            raise self._record(error_for(RETURN_CODES["NO_SERVERS"],
                                         "grab_job failed: no job server was given"))
        deadline = Deadline(self._settings.timeout)
        nap = [1]
        return drive(self._gate, deadline, lambda ms: self._grab_step(ms, deadline, nap),  # type: ignore
                     lambda: self._timeout_error("waiting for a job"))

    def _grab_step(self, ms: int, deadline: Deadline, nap: List[int]) -> Any:
        rc = c_int(SUCCESS)
        start = next(self._turn) % len(self._servers)
        for server in self._servers[start:] + self._servers[:start]:
            try:
                cw = self._ready(server, deadline, blocking=len(self._servers) == 1)
            except GearmanError as exc:
                if exc.code not in SERVER_FAILURES:
                    raise
                continue
            if cw is None:
                continue
            cw.set_timeout(min(ms, max(_MIN_GRAB_MS, 4 * server.rtt_ms)))
            watched = cw.watched
            watched.deadline, watched.since = deadline.at, _monotonic()
            try:
                ptr = _lib.gearman_worker_grab_job(cw.ptr, None, byref(rc))
            finally:
                watched.since = None
            cw.adopt()
            if ptr and ptr.value is not None:
                cw.after_job = True
                job = Job(self, cw, ptr)
                job._read_ids()
                cw.jobs[ptr.value] = job
                return job
            code = rc.value
            if code == NO_JOBS and cw.after_job:
                server.drop()      # _workarounds.GRAB_AFTER_JOB: its next grab would crash
            elif code in SERVER_FAILURES:
                server.drop(str(cw.error(code, "grabbing a job from %s" % server.name)))
            elif code not in (NO_JOBS, TIMEOUT):
                raise self._record(cw.error(code, "grabbing a job"))
        # No PRE_SLEEP was sent (_workarounds.GRAB_NO_WAIT): poll, backing off.
        time.sleep(min(nap[0], ms) / 1000.0)
        nap[0] = min(nap[0] * 2, SLICE_MS)
        return WAITING

    # --- misc ---------------------------------------------------------------------------------
    @entry
    def echo(self, data: Union[str, bytes]) -> None:
        """Send ``data`` to every server and check each sends it back."""
        payload = _args.exact_bytes(data, "echo data")
        if not self._servers:
            raise self._record(error_for(RETURN_CODES["NO_SERVERS"], "echo failed: no servers"))
        deadline = Deadline(self._settings.timeout)
        for server in self._servers:
            probe = Probe(server.server, payload)
            try:
                drive(self._gate, deadline, probe.step,
                      lambda: self._timeout_error("echo to %s" % server.name))
            finally:
                probe.close()

    @entry
    def wait(self) -> None:
        """Wait (one timeout's worth at most) for I/O on the servers."""
        deadline = Deadline(self._settings.timeout)
        for server in self._servers:
            cw = server.cw
            if cw is not None and cw.ptr:
                cw.set_timeout(max(1, deadline.slice_ms()))
                _lib.gearman_worker_wait(cw.ptr)

    def serve(self, until: Optional[Callable[[], bool]] = None) -> int:
        """Run jobs until ``until()`` is true (checked between jobs and every
        few hundred ms while idle), or forever; returns how many ran."""
        done = 0
        stop = getattr(until, "is_set", until)
        while stop is None or not stop():
            self._gate.enter()
            try:
                ran = self._serve_once(stop)
            except GearmanError as exc:
                if exc.code != TIMEOUT:
                    raise
                ran = False
            finally:
                self._gate.leave()
            done += bool(ran)
        return done

    def _serve_once(self, stop: Optional[Callable[[], bool]]) -> bool:
        timeout = self._settings.timeout
        if stop is not None and (timeout < 0 or timeout > 250):
            timeout = 250
        return self._work(Deadline(timeout))

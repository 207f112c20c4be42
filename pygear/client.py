"""Client and Task.

The C client always runs in libgearman's non-blocking mode, and pygear
waits itself in slices (``_base.Deadline``): ``gearman_wait`` retries
``poll()`` on EINTR, so a blocking C call would hold Ctrl-C back for as
long as it runs.  ``do*`` run one task each, through
the same add_task path as tasks, and wait for it alone.  Task and the C
callbacks live in _task.py.
"""
from __future__ import annotations

import itertools
import os
import weakref
from collections import deque
from ctypes import byref, c_int
from typing import Any, Callable, Dict, Optional, Union

from . import _lib, _tls
from ._base import (CONNECTION_CODES, IO_WAIT, PAUSE, SLICE_MS, SUCCESS, TIMEOUT, Deadline,
                    Handle, c_names, parse_servers, to_bytes)
from .errors import RETURN_CODES, error_for
from .serializers import RAW, decode, encode
from ._unique import new_unique
from ._task import (LIVE_TASKS, TRAMPOLINES, Task, _DoTask, _NOT_FINISHED, _decode_report,
                    _trampolines, snapshot_all, task_finished)

WORK_EXCEPTION = RETURN_CODES["WORK_EXCEPTION"]
WORK_FAIL = RETURN_CODES["WORK_FAIL"]
_PRIORITY = {"high": _lib.PRIORITY_HIGH, "normal": _lib.PRIORITY_NORMAL,
             "low": _lib.PRIORITY_LOW}
_ADD_TASK = {
    ("normal", False): "gearman_client_add_task",
    ("high", False): "gearman_client_add_task_high",
    ("low", False): "gearman_client_add_task_low",
    ("normal", True): "gearman_client_add_task_background",
    ("high", True): "gearman_client_add_task_high_background",
    ("low", True): "gearman_client_add_task_low_background",
}
Name = Union[str, bytes]                 # function names, unique keys
Callback = Callable[[Task], Any]
_ALWAYS_KINDS = frozenset(("warning", "complete", "exception", "fail"))
_OPTION_BITS = {
    "non_blocking": _lib.CLIENT_NON_BLOCKING,
    "unbuffered_result": _lib.CLIENT_UNBUFFERED_RESULT,
    "free_tasks": _lib.CLIENT_FREE_TASKS,
    "generate_unique": _lib.CLIENT_GENERATE_UNIQUE,
}
_task_keys = itertools.count(1)
# How many add_task tasks a C client holds at once.  libgearman 1.1.20
# matches every packet to its task by walking the client's whole task list,
# so one batch of N tasks costs O(N^2) (20,000 tasks: 4.2 s in C alone).
# Beyond this many, tasks wait in Python, and run_tasks frees the C side of
# each finished one (its Task keeps what it saw) to make room for the next.
_C_TASK_WINDOW = 1000
_NAME_TYPES = (str, bytes)
_RETRY = object()   # _settle: the job must be sent again


def _unique_arg(unique: Optional[Union[str, bytes]]) -> Optional[bytes]:
    if unique is None:
        return None
    data = to_bytes(unique, "unique key")
    if len(data) >= _lib.MAX_UNIQUE_SIZE:
        raise ValueError("unique key is %d bytes; libgearman allows at most %d"
                         % (len(data), _lib.MAX_UNIQUE_SIZE - 1))
    return data


_FUNCTION_NAMES: Dict[Any, bytes] = {}   # checked names, the hot path's usual few


def _function_arg(function: Union[str, bytes]) -> bytes:
    data = _FUNCTION_NAMES.get(function) if type(function) in (str, bytes) else None
    if data is not None:
        return data
    data = to_bytes(function, "function name")
    if len(data) >= _lib.FUNCTION_MAX_SIZE:
        raise ValueError("function name is %d bytes; libgearman allows at most %d"
                         % (len(data), _lib.FUNCTION_MAX_SIZE - 1))
    if type(function) in (str, bytes):
        if len(_FUNCTION_NAMES) >= 1024:
            _FUNCTION_NAMES.clear()
        _FUNCTION_NAMES[function] = data
    return data


_SUBMITTING: Dict[bytes, str] = {}   # do*'s error context per function name


def _submitting(fn: bytes) -> str:
    what = _SUBMITTING.get(fn)
    if what is None:
        if len(_SUBMITTING) >= 1024:
            _SUBMITTING.clear()
        what = _SUBMITTING[fn] = "submitting job to %r" % fn.decode("utf-8", "replace")
    return what


class Client(Handle):
    """A Gearman client: submit jobs, run tasks, ask for status."""

    _kind = "client"
    _C = c_names("gearman_client")

    def _configure(self) -> None:
        self._callbacks: Dict[str, Callable[[Task], Any]] = {}
        self._pending: Optional[BaseException] = None   # raised in a callback
        self._tasks: "weakref.WeakSet[Task]" = weakref.WeakSet()
        # Unfinished tasks are held here, so that one added and dropped at
        # once (as the seed's examples do) still runs and fires callbacks.
        self._unfinished: "set[Task]" = set()
        self._deferred: "deque[Task]" = deque()   # not yet in C (see _C_TASK_WINDOW)
        self._done_in_c: "list[Task]" = []         # ended while tasks were deferred
        self._user_options = {name: False for name in _OPTION_BITS}
        self._exceptions_enabled = False
        self._installed: "set[str]" = set()   # lazily installed trampoline kinds
        self._current = 0                      # index of the server the C client has
        env_servers = os.environ.get("GEARMAN_SERVERS")
        if env_servers:   # as libgearman does, but failed over by pygear
            self._servers = parse_servers(env_servers)
        self._rc = c_int(SUCCESS)             # out-parameter of add_task*, reused
        self._rc_ref = byref(self._rc)
        self._ref = weakref.ref(self)          # what a do* job's _DoTask holds
        self._setup_c_client(self._ptr)
        if self._servers:
            host, port = self._servers[self._current]
            _lib.gearman_client_add_server(self._ptr, host.encode(), port)

    def _setup_c_client(self, ptr) -> None:
        """Everything pygear sets on a fresh C client.

        libgearman copies the client's callbacks into each task when it is
        added.  complete, exception, fail and warning always go through
        pygear's trampolines: they copy results and exception reports out.
        The other kinds cost a Python call per event, so their trampolines
        are installed once a callback of that kind is set, and (as in
        libgearman) apply to tasks added after that."""
        # libgearman adds $GEARMAN_SERVERS to every client it creates; pygear
        # took them into its own list (see _configure) and gives C one at a time.
        _lib.gearman_client_remove_servers(ptr)
        _lib.gearman_client_add_options(ptr, _lib.CLIENT_NON_BLOCKING)
        trampolines = _trampolines()
        for kind in _ALWAYS_KINDS | self._installed:
            getattr(_lib, "gearman_client_set_%s_fn" % kind)(ptr, trampolines[kind])
        if getattr(self, "_ssl", None):   # a replaced C client keeps TLS
            _lib.gearman_client_set_ssl(ptr, True, *self._ssl)

    def _recreate(self, rotate: bool) -> None:
        """Swap in a fresh C client and send the unfinished tasks again.

        libgearman 1.1.20 never lowers its task counters when an unfinished
        task is freed, so after a lost server, a timeout or an interrupt the
        old client could spin or wait forever; a new one starts clean.  The
        old client frees its tasks; each Task keeps what it saw."""
        pending = [t for t in self._unfinished if t._c_name != "status"]
        for task in list(self._tasks):
            if task._addr:
                task._snapshot()
                task._forget()
        self._unfinished.clear()
        self._deferred.clear()
        self._done_in_c.clear()
        old = self._ptr
        new = _lib.gearman_client_create(None)
        if not new:
            raise error_for(RETURN_CODES["MEMORY_ALLOCATION_FAILURE"], "gearman_client_create failed")
        self._setup_c_client(new)
        for name, bit in _OPTION_BITS.items():
            if self._user_options[name] and name in ("free_tasks", "generate_unique"):
                _lib.gearman_client_add_options(new, bit)
        if self._user_options["free_tasks"]:
            _lib.gearman_client_set_task_context_free_fn(new, TRAMPOLINES["context_free"])
        if self._identifier:
            _lib.gearman_client_set_identifier(new, self._identifier, len(self._identifier))
        if self._log_cb is not None:
            _lib.gearman_client_set_log_fn(new, self._log_cb, None, self._log_verbose)
        if self._servers:
            if rotate:
                self._current = (self._current + 1) % len(self._servers)
            host, port = self._servers[self._current]
            _lib.gearman_client_add_server(new, host.encode(), port)
        self._ptr = new
        self._c_timeout = None
        self._buffers_widened = False
        self._exceptions_enabled = False
        _lib.gearman_client_free(old)
        for task in pending:
            task._reset()
            task._client = weakref.ref(self)
            self._enqueue(task)
            self._tasks.add(task)
            self._unfinished.add(task)

    # --- lifetime ----------------------------------------------------------------

    def _before_free(self) -> None:
        """Every Task keeps what it saw; no Task keeps a C pointer past here."""
        snapshot_all(list(self._tasks))
        self._unfinished.clear()
        self._deferred.clear()
        self._done_in_c.clear()

    def clone(self) -> "Client":
        """A new Client with the same servers, options, timeout and serializer."""
        with self._lock:
            self._p()
            other = Client()
            if self._servers:
                other._add_servers(list(self._servers))
            other._timeout = self._timeout
            other._serializer = self._serializer
            other.set_options(**self._user_options)
            return other

    # --- options --------------------------------------------------------------

    def set_options(self, non_blocking: Optional[bool] = None,
                    unbuffered_result: Optional[bool] = None,
                    free_tasks: Optional[bool] = None,
                    generate_unique: Optional[bool] = None) -> None:
        wanted = dict(non_blocking=non_blocking, unbuffered_result=unbuffered_result,
                      free_tasks=free_tasks, generate_unique=generate_unique)
        with self._lock:
            ptr = self._p()
            for name, value in wanted.items():
                if value is None:
                    continue
                if not isinstance(value, bool):
                    raise TypeError("%s must be a bool" % name)
                self._user_options[name] = value
                if name in ("non_blocking", "unbuffered_result"):
                    # pygear always drives C non-blocking and copies results
                    # out itself; these two change only how run_tasks returns.
                    continue
                bit = _OPTION_BITS[name]
                if value:
                    _lib.gearman_client_add_options(ptr, bit)
                else:
                    _lib.gearman_client_remove_options(ptr, bit)
            if self._user_options["free_tasks"]:
                _lib.gearman_client_set_task_context_free_fn(ptr, TRAMPOLINES["context_free"])

    def get_options(self) -> Dict[str, bool]:
        self._p()
        return dict(self._user_options)

    def set_ssl(self, ca_file: Optional[str] = None, certificate: Optional[str] = None,
                key: Optional[str] = None) -> None:
        """Talk TLS to the servers; NotSupported, saying why, where the loaded
        libgearman cannot (pygear.features()), and then nothing changed."""
        _tls.enable(self, ca_file, certificate, key)

    # --- exceptions option ------------------------------------------------------

    def _servers_changed(self) -> None:
        self._exceptions_enabled = False

    def _add_servers(self, servers) -> None:
        """The C client is given one server at a time (the current one);
        pygear moves to the next itself when it fails.  libgearman would
        spread one batch of tasks over every idle connection, and tasks
        sent to a dead server then wait forever."""
        with self._lock:
            ptr = self._p()
            for host, port in servers:
                to_bytes(host, "host")
            first = not self._servers
            self._servers.extend(servers)
            if first:
                host, port = self._servers[self._current]
                rc = _lib.gearman_client_add_server(ptr, host.encode(), port)
                if rc != SUCCESS:
                    del self._servers[:]
                    raise self._fail(rc, "adding server %s:%d" % (host, port))
            self._servers_changed()

    def _enable_exceptions(self, deadline: Deadline) -> None:
        """Ask the current server to forward WORK_EXCEPTION.  libgearman
        re-sends the option on every later (re)connection of this C client."""
        if not self._exceptions_enabled and self._servers:
            self._request_exceptions(deadline, persist=True)

    def _request_exceptions(self, deadline: Deadline, persist: bool) -> bool:
        """The option request is a blocking C call: make it one slice at a
        time, so that Ctrl-C and the caller's deadline are kept.  Keeps
        trying while the servers are merely slow (``persist``); gives up at
        once when one refuses, which the job itself then deals with."""
        ptr = self._ptr
        while True:
            ms = deadline.slice_ms()
            if ms == 0:
                raise self._timeout_error("asking the servers for exceptions")
            self._set_c_timeout(ms)
            if _lib.gearman_client_set_server_option(ptr, b"exceptions", 10):
                self._exceptions_enabled = True
                return True
            if not persist or _lib.gearman_client_error_code(ptr) != RETURN_CODES["TIMEOUT"]:
                return False

    # --- the run loop -------------------------------------------------------------

    def _raise_pending(self) -> None:
        exc, self._pending = self._pending, None
        if exc is not None:
            raise exc

    def _run(self, deadline: Deadline, what: str, until=None) -> int:
        """Run the C tasks until all are done (or the task ``until`` is);
        returns SUCCESS or a connection failure code, raises the rest."""
        ptr = self._ptr
        run, wait = _lib.gearman_client_run_tasks, _lib.gearman_client_wait
        forever = deadline.at is None
        self._running = True
        try:
            while True:
                if self._deferred:
                    self._refill()
                rc = run(ptr)
                if self._pending is not None:
                    self._raise_pending()
                if rc == IO_WAIT:
                    # Alone, the task ends with run_tasks' SUCCESS; only
                    # beside other tasks must it be checked by hand.
                    if until is not None and self._unfinished and task_finished(until):
                        return SUCCESS
                    if self._done_in_c and self._deferred:
                        continue   # room for deferred tasks: send them first
                    # Handle._wait, inlined (the hot path): block one slice
                    # at most, so that signal handlers run between slices.
                    ms = SLICE_MS if forever else deadline.slice_ms()
                    if ms == 0:
                        raise self._timeout_error(what)
                    if ms != self._c_timeout:
                        self._set_c_timeout(ms)
                    if not self._buffers_widened:   # libgearman has connected by now
                        self._widen_buffers()
                    rc = wait(ptr)
                    if rc == SUCCESS:
                        continue
                    if rc == TIMEOUT:
                        if not forever and deadline.slice_ms() == 0:
                            raise self._timeout_error(what)
                        continue
                    if rc not in CONNECTION_CODES:
                        raise self._fail(rc, what)
                    return rc
                if rc == PAUSE:
                    continue
                if rc == SUCCESS and self._unfinished:
                    self._c_tasks_finished()
                    if self._deferred and until is None:
                        continue
                return rc
        finally:
            self._running = False

    def _enqueue(self, task: Task) -> None:
        """Create the C task now, or queue it while the C client holds a
        full window of tasks (see _C_TASK_WINDOW)."""
        if self._deferred or len(self._unfinished) - len(self._deferred) >= _C_TASK_WINDOW:
            self._deferred.append(task)
        else:
            self._submit(task)

    def _refill(self) -> None:
        """Free the C side of the tasks that ended (each Task keeps what it
        saw), then create deferred tasks in their place."""
        done, self._done_in_c = self._done_in_c, []
        for task in done:
            addr = task._addr
            if addr:
                if not task_finished(addr):
                    self._done_in_c.append(task)
                    continue
                task._snapshot()
                task._addr = None
                _lib.gearman_task_free(addr)
            self._unfinished.discard(task)
        room = _C_TASK_WINDOW - (len(self._unfinished) - len(self._deferred))
        while room > 0 and self._deferred:
            task = self._deferred.popleft()
            try:
                self._submit(task)
            except BaseException:
                self._deferred.appendleft(task)
                raise
            room -= 1

    def _c_tasks_finished(self) -> None:
        """run_tasks ends with SUCCESS only when every task in C did; the
        deferred ones (see _enqueue) are still to come."""
        waiting = set(self._deferred)
        for task in self._unfinished - waiting:
            task._unregister()
        self._unfinished &= waiting

    # --- do ----------------------------------------------------------------------------

    def _execute(self, function, workload, unique, priority: str, background: bool):
        """do*: one task through the same C path as add_task, waited for alone.

        Not gearman_execute: its tasks drop WORK_WARNING, which carries a
        raising function's report (see worker.Job._send_report)."""
        fn = _FUNCTION_NAMES.get(function) if type(function) in _NAME_TYPES else None
        if fn is None:
            fn = _function_arg(function)
        uq = new_unique() if unique is None else _unique_arg(unique)
        serializer = self._serializer
        if serializer is RAW and type(workload) is bytes:
            data = workload
        else:
            data = encode(serializer, workload, "workload")
        with self._lock:
            # The usual case, kept lean: every Python step between two
            # round trips is on the critical path (see BENCHMARKS.md).
            if (self._exceptions_enabled and self._buffers_widened and not self._unfinished
                    and not self._running and not self._free_queue and self._ptr is not None
                    and not self._user_options["free_tasks"]):
                return self._execute_alone(priority, fn, uq, data, background)
            self._p()
            deadline = Deadline(self._timeout)
            if not self._exceptions_enabled:
                self._enable_exceptions(deadline)
            # One try more than servers: the first may go down a stale
            # connection to a restarted gearmand.
            attempts = len(self._servers) + 1
            # libgearman would free the task the moment it ends, before its
            # result is read: not for the length of this call.
            if not self._user_options["free_tasks"]:
                return self._execute_task(priority, fn, uq, data, deadline, background, attempts)
            _lib.gearman_client_remove_options(self._ptr, _lib.CLIENT_FREE_TASKS)
            try:
                return self._execute_task(priority, fn, uq, data, deadline, background, attempts)
            finally:
                if self._ptr is not None:
                    _lib.gearman_client_add_options(self._ptr, _lib.CLIENT_FREE_TASKS)

    def _execute_alone(self, priority: str, fn: bytes, uq: Optional[bytes], data: bytes,
                       background: bool):
        """_execute_task's first try, for the usual case only: connected,
        exceptions enabled, no other task in the C client.  Any other
        outcome than plain success goes on the general way (_settle), with
        the same retries."""
        ptr = self._ptr
        deadline = None if self._timeout < 0 else Deadline(self._timeout)
        addr = record = None
        try:
            addr, record = self._add_do_task(getattr(_lib, _ADD_TASK[priority, background]),
                                             fn, uq, data, background)
            run = _lib.gearman_client_run_tasks
            self._running = True
            try:
                # Client._run for one task, inlined.
                rc = run(ptr)
                while self._pending is None:
                    if rc == IO_WAIT:
                        ms = SLICE_MS if deadline is None else deadline.slice_ms()
                        if ms != self._c_timeout:
                            if ms == 0:
                                raise self._timeout_error(_submitting(fn))
                            self._set_c_timeout(ms)
                        waited = _lib.gearman_client_wait(ptr)   # one slice at most
                        if waited == TIMEOUT:
                            if deadline is not None and deadline.slice_ms() == 0:
                                raise self._timeout_error(_submitting(fn))
                        elif waited != SUCCESS:
                            if waited not in CONNECTION_CODES:
                                raise self._fail(waited, _submitting(fn))
                            rc = waited
                            break
                    elif rc != PAUSE:
                        break
                    rc = run(ptr)
            finally:
                self._running = False
            if self._pending is not None:
                self._raise_pending()
        except BaseException:
            self._abandon(addr, record)
            raise
        if rc == SUCCESS:
            if background:
                handle = _lib.gearman_task_job_handle(addr)
                if handle:
                    _lib.gearman_task_free(addr)
                    return {"result": None, "job_handle": handle.decode("utf-8", "replace")}
            elif record._event == "complete":   # the trampoline took it out of LIVE_TASKS
                _lib.gearman_task_free(addr)
                return decode(self._serializer, record._data or b"")
        attempts = len(self._servers) + 1
        result = self._settle(addr, record, rc, background, _submitting(fn), attempts)
        if result is _RETRY:
            return self._execute_task(priority, fn, uq, data, deadline or Deadline(-1),
                                      background, attempts - 1)
        return result

    def _execute_task(self, priority: str, fn: bytes, uq: Optional[bytes], data: bytes,
                      deadline: Deadline, background: bool, attempts: int):
        """Submit the job and wait for it, again through the next server
        after a connection failure."""
        what = _submitting(fn)
        add = getattr(_lib, _ADD_TASK[priority, background])
        while True:
            addr = record = None
            try:
                if not self._exceptions_enabled:
                    self._enable_exceptions(deadline)
                addr, record = self._add_do_task(add, fn, uq, data, background)
                rc = self._run(deadline, what, until=addr)
            except BaseException:
                self._abandon(addr, record)
                raise
            result = self._settle(addr, record, rc, background, what, attempts)
            if result is not _RETRY:
                return result
            attempts -= 1

    def _add_do_task(self, add, fn: bytes, uq: Optional[bytes], data: bytes, background: bool):
        """Create a do* job's C task: (address, its _DoTask or None).  A
        foreground job is recorded for the trampolines; a background one
        needs no record (no trampoline fires for it)."""
        addr = add(self._ptr, None, None, fn, uq, data or None, len(data), self._rc_ref)
        if not addr:
            raise self._fail(self._rc.value, "adding a task for %r" % fn.decode("utf-8", "replace"))
        if background:
            return addr, None
        record = LIVE_TASKS[addr] = _DoTask(self._ref)
        return addr, record

    def _settle(self, addr, record: Optional[_DoTask], rc: int, background: bool, what: str,
                attempts: int):
        """After the run: the job's result, or an exception, or _RETRY: the
        C client was swapped for the next server's and the job must go again."""
        done = retry = False
        try:
            code = _lib.gearman_task_return(addr)
            done = code not in _NOT_FINISHED
            if done and rc == SUCCESS:
                return self._execute_result(record, addr, code, background, what)
            if rc not in CONNECTION_CODES or attempts <= 1:
                raise self._fail(rc, what)
            retry = True
            return _RETRY
        finally:
            # No trampoline may find the record once the C task is gone.
            if record is not None and LIVE_TASKS.get(addr) is record:
                del LIVE_TASKS[addr]
            if done:
                _lib.gearman_task_free(addr)
            else:
                # Freeing an unfinished task corrupts libgearman's counters:
                # drop the whole C client instead, its next server first when
                # trying again.
                self._recreate(rotate=retry)

    def _abandon(self, addr, record: Optional[_DoTask]) -> None:
        """An exception (Ctrl-C, a failed add) left the job unfinished, or
        unknown: an interrupt may come before we knew its address."""
        if record is not None and LIVE_TASKS.get(addr) is record:
            del LIVE_TASKS[addr]
        self._recreate(rotate=False)

    def _execute_result(self, record: Optional[_DoTask], addr, rc: int, background: bool,
                        what: str):
        if background:
            if rc != SUCCESS:
                raise self._fail(rc, what)
            handle = _lib.gearman_task_job_handle(addr)
            if not handle:
                raise error_for(RETURN_CODES["UNKNOWN_STATE"],
                                "%s: the server sent no job handle" % what)
            return {"result": None, "job_handle": handle.decode("utf-8", "replace")}
        if rc == SUCCESS:
            return decode(self._serializer, record._data or b"")
        if rc == WORK_EXCEPTION or record._raised:
            raise self._record(error_for(WORK_EXCEPTION, "%s: the worker raised an exception"
                                         % what, _decode_report(self._serializer, record._data)))
        if rc == WORK_FAIL:
            raise self._record(error_for(rc, "%s: the worker failed the job" % what))
        raise self._fail(rc, what)

    def do(self, function: Name, workload: Any, unique: Optional[Name] = None) -> Any:
        """Run a job at normal priority and return its deserialized result."""
        return self._execute(function, workload, unique, "normal", False)

    def do_high(self, function: Name, workload: Any, unique: Optional[Name] = None) -> Any:
        return self._execute(function, workload, unique, "high", False)

    def do_low(self, function: Name, workload: Any, unique: Optional[Name] = None) -> Any:
        return self._execute(function, workload, unique, "low", False)

    def do_background(self, function: Name, workload: Any,
                      unique: Optional[Name] = None) -> Dict[str, Any]:
        """Queue a job; returns {"result": None, "job_handle": "H:host:N"}."""
        return self._execute(function, workload, unique, "normal", True)

    def do_high_background(self, function: Name, workload: Any,
                           unique: Optional[Name] = None) -> Dict[str, Any]:
        return self._execute(function, workload, unique, "high", True)

    def do_low_background(self, function: Name, workload: Any,
                          unique: Optional[Name] = None) -> Dict[str, Any]:
        return self._execute(function, workload, unique, "low", True)

    # --- status and echo ------------------------------------------------------------

    def job_status(self, job_handle: Union[str, bytes]) -> Dict[str, Any]:
        handle = to_bytes(job_handle, "job handle")
        if len(handle) >= _lib.JOB_HANDLE_SIZE:
            raise ValueError("job handle is longer than %d bytes" % (_lib.JOB_HANDLE_SIZE - 1))
        task = self._status_task(handle, "status of %r" % handle.decode("utf-8", "replace"))
        return task._status_dict()

    def unique_status(self, unique: Union[str, bytes]) -> Dict[str, Any]:
        uq = _unique_arg(unique)
        if uq is None:
            raise TypeError("unique key must be str or bytes")
        task = self._status_task(uq, "status of unique key %r" % uq.decode("utf-8", "replace"),
                                 by_unique=True)
        return task._status_dict()

    def _status_task(self, key: bytes, what: str, by_unique: bool = False) -> Task:
        with self._lock:
            self._p()
            deadline = Deadline(self._timeout)
            attempts = len(self._servers) + 1
            while True:
                task = None
                retry = False
                try:
                    task = self._add_status(key, by_unique)
                    self._unfinished.discard(task)   # this call waits for it alone
                    rc = self._run(deadline, what, until=task._addr)
                    if rc == SUCCESS and task._finished_in_c():
                        task._detach()
                        return task
                    if rc not in CONNECTION_CODES or attempts <= 1:
                        raise self._fail(rc, what)
                    retry = True
                finally:
                    if task is None or task._addr:
                        self._recreate(rotate=retry)
                attempts -= 1

    def remove_servers(self) -> None:
        with self._lock:
            self._p()
            self._servers = []
            self._current = 0
            self._recreate(rotate=False)   # no C task may keep a freed connection
            self._servers_changed()


    def echo(self, data: Union[str, bytes]) -> None:
        """Ping every server with ``data`` (each through a C client of its
        own: this client's C side holds only the current server); raises
        when one does not echo it."""
        payload = data.encode("utf-8") if isinstance(data, str) else data
        if not isinstance(payload, (bytes, bytearray)):
            raise TypeError("echo data must be str or bytes")
        payload = bytes(payload)
        with self._lock:
            self._p()
            if not self._servers:
                raise self._record(error_for(RETURN_CODES["NO_SERVERS"], "echo failed: no servers"))
            # echo is one blocking C call: bound it even when no timeout is set.
            timeout = self._timeout if self._timeout >= 0 else 10000
            for host, port in self._servers:
                ptr = _lib.gearman_client_create(None)
                if not ptr:
                    raise error_for(RETURN_CODES["MEMORY_ALLOCATION_FAILURE"], "gearman_client_create failed")
                try:
                    _lib.gearman_client_set_timeout(ptr, timeout)
                    if self._identifier:
                        _lib.gearman_client_set_identifier(ptr, self._identifier,
                                                           len(self._identifier))
                    _lib.gearman_client_add_server(ptr, host.encode(), port)
                    rc = _lib.gearman_client_echo(ptr, payload or None, len(payload))
                    if rc != SUCCESS:
                        text = (_lib.gearman_client_error(ptr) or b"").decode("utf-8", "replace")
                        raise self._record(error_for(rc, "echo to %s:%d failed: %s"
                                                     % (host, port, text or _lib.strerror(rc))))
                finally:
                    _lib.gearman_client_free(ptr)

    # --- tasks -----------------------------------------------------------------------

    def _add(self, c_name: str, function, workload, unique, background: bool,
             priority: str) -> Task:
        fn = _function_arg(function)
        uq = new_unique() if unique is None else _unique_arg(unique)
        data = encode(self._serializer, workload, "workload")
        with self._lock:
            self._p()
            task = Task(self, next(_task_keys), fn, uq, data, c_name, background, priority)
            self._enqueue(task)
            self._tasks.add(task)
            self._unfinished.add(task)
            return task

    def _submit(self, task: Task) -> None:
        """Create the C task for ``task``; libgearman copies the workload."""
        data = task._workload
        addr = getattr(_lib, task._c_name)(
            self._ptr, None, task._key, task._fn, task._uq,
            data or None, len(data), self._rc_ref)
        if not addr:
            raise self._fail(self._rc.value, "adding a task for %r"
                             % task._fn.decode("utf-8", "replace"))
        task._attach(addr)

    def _add_status(self, key: bytes, by_unique: bool = False) -> Task:
        task = Task(self, next(_task_keys), b"", None, b"", "status", False, "normal")
        rc = c_int(SUCCESS)
        if by_unique:
            addr = _lib.gearman_client_add_task_status_by_unique(self._ptr, None, key, byref(rc))
        else:
            addr = _lib.gearman_client_add_task_status(self._ptr, None, task._key, key, byref(rc))
        if not addr:
            raise self._fail(rc.value, "adding a status task")
        task._attach(addr)
        if not by_unique:
            task._handle = key.decode("utf-8", "replace")
        self._tasks.add(task)
        self._unfinished.add(task)
        return task

    def add_task(self, function: Name, workload: Any, unique: Optional[Name] = None) -> Task:
        return self._add(_ADD_TASK["normal", False], function, workload, unique, False, "normal")

    def add_task_high(self, function: Name, workload: Any, unique: Optional[Name] = None) -> Task:
        return self._add(_ADD_TASK["high", False], function, workload, unique, False, "high")

    def add_task_low(self, function: Name, workload: Any, unique: Optional[Name] = None) -> Task:
        return self._add(_ADD_TASK["low", False], function, workload, unique, False, "low")

    def add_task_background(self, function: Name, workload: Any,
                            unique: Optional[Name] = None) -> Task:
        return self._add(_ADD_TASK["normal", True], function, workload, unique, True, "normal")

    def add_task_high_background(self, function: Name, workload: Any,
                                 unique: Optional[Name] = None) -> Task:
        return self._add(_ADD_TASK["high", True], function, workload, unique, True, "high")

    def add_task_low_background(self, function: Name, workload: Any,
                                unique: Optional[Name] = None) -> Task:
        return self._add(_ADD_TASK["low", True], function, workload, unique, True, "low")

    def add_task_status(self, job_handle: Union[str, bytes]) -> Task:
        handle = to_bytes(job_handle, "job handle")
        with self._lock:
            self._p()
            return self._add_status(handle)

    def run_tasks(self) -> None:
        """Run every queued task, firing the callbacks.  An exception raised
        in a callback stops the run and is re-raised here; the tasks stay
        queued, and the next run_tasks goes on with them."""
        with self._lock:
            self._p()
            if not self._unfinished:
                return
            deadline = Deadline(self._timeout)
            self._enable_exceptions(deadline)
            attempts = len(self._servers) + 1
            while True:
                if self._user_options["non_blocking"]:
                    self._running = True
                    try:
                        if self._deferred:
                            self._refill()
                        rc = _lib.gearman_client_run_tasks(self._ptr)
                    finally:
                        self._running = False
                    self._raise_pending()
                    if rc in (SUCCESS, IO_WAIT, PAUSE):
                        waiting = set(self._deferred)
                        done = {t for t in self._unfinished - waiting
                                if not t._addr or t._finished_in_c()}
                        for task in done:
                            task._unregister()
                        self._unfinished -= done
                        return
                else:
                    rc = self._run(deadline, "running tasks")
                    if rc == SUCCESS:
                        return
                if rc not in CONNECTION_CODES or attempts <= 1:
                    raise self._fail(rc, "running tasks")
                attempts -= 1
                # A server went away: what finished is kept, the rest is sent
                # again through the next server.
                self._recreate(rotate=True)
                self._enable_exceptions(deadline)

    # --- callbacks ---------------------------------------------------------------------

    def _set_callback(self, kind: str, fn: Optional[Callable[[Task], Any]]) -> None:
        if fn is not None and not callable(fn):
            raise TypeError("%s callback must be callable" % kind)
        with self._lock:
            self._check_open()   # allowed inside a callback: tasks keep their copy
            if fn is None:
                self._callbacks.pop(kind, None)
                return
            self._callbacks[kind] = fn
            if kind not in _ALWAYS_KINDS and kind not in self._installed:
                getattr(_lib, "gearman_client_set_%s_fn" % kind)(self._ptr, _trampolines()[kind])
                self._installed.add(kind)

    def set_workload_fn(self, fn: Optional[Callback]) -> None: self._set_callback("workload", fn)
    def set_created_fn(self, fn: Optional[Callback]) -> None: self._set_callback("created", fn)
    def set_data_fn(self, fn: Optional[Callback]) -> None: self._set_callback("data", fn)
    def set_warning_fn(self, fn: Optional[Callback]) -> None: self._set_callback("warning", fn)
    def set_status_fn(self, fn: Optional[Callback]) -> None: self._set_callback("status", fn)
    def set_complete_fn(self, fn: Optional[Callback]) -> None: self._set_callback("complete", fn)
    def set_exception_fn(self, fn: Optional[Callback]) -> None: self._set_callback("exception", fn)
    def set_fail_fn(self, fn: Optional[Callback]) -> None: self._set_callback("fail", fn)

    def clear_fn(self) -> None:
        """Forget every callback."""
        with self._lock:
            self._check_open()
            self._callbacks.clear()

    # --- misc ----------------------------------------------------------------------------

    def wait(self) -> None:
        """Wait (one timeout's worth at most) for I/O on the servers."""
        with self._lock:
            self._p()
            rc = self._wait(Deadline(self._timeout), "wait")
            # NO_ACTIVE_FDS: no connection awaits anything, so nothing to wait for.
            if rc not in (SUCCESS, RETURN_CODES["TIMEOUT"], RETURN_CODES["NO_ACTIVE_FDS"]):
                raise self._fail(rc, "wait")

    def error_code(self) -> int:
        """The gearman_return_t of the last error (SUCCESS when none)."""
        ptr = self._p()
        if self._last_error is not None and self._last_error.code is not None:
            return self._last_error.code
        return int(_lib.gearman_client_error_code(ptr))


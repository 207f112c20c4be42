"""Client and Task.

A Client is a settings record (pygear/_settings.py), one Link per server
(pygear/_link.py: each with C clients of its own), a TaskBook for batches
(pygear/_taskbook.py), and a Gate (pygear/_gate.py) through which every
call that reaches libgearman passes.  ``do*`` and status calls run one job
at a time (pygear/_do.py); ``run_tasks`` drives a batch over every server.
Every blocking call waits through the one wait loop (pygear/_wait.py).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Union

from . import _args, _do, _lib, _unique
from ._args import Name, Server
from ._events import COMPLETE, CREATED, DATA, EXCEPTION, FAIL, STATUS, WARNING
from ._events import NAMES as _EVENT_NAMES
from ._gate import entry, setting
from ._owner import Owner, Servers
from ._link import Link
from ._placement import Issuers, Placement
from ._settings import OPTION_NAMES, ClientSettings
from ._task import Task
from ._taskbook import TaskBook
from ._unique import new_unique
from ._wait import Deadline
from .errors import RETURN_CODES, error_for
from .serializers import RAW, encode

__all__ = ["Client", "Task"]

Callback = Callable[[Task], Any]


def _job_method(priority: str, background: bool, doc: str) -> Callable[..., Any]:
    """One of the six do* methods.  Each is one Python call down to the C
    calls (every step here is on the critical path of a round trip): the
    Gate's entry, the argument checks, then pygear/_do.py."""
    c_name = _do.ADD_TASK[priority, background]

    def method(self: "Client", function: Name, workload: Any,
               unique: Optional[Name] = None) -> Any:
        gate = self._gate
        gate.enter()
        try:
            if type(function) is str and "\0" not in function:
                fn = function.encode("utf-8")
                if not fn or len(fn) >= _lib.FUNCTION_MAX_SIZE:
                    fn = _args.function_name(function)   # says what is wrong
            else:
                fn = _args.function_name(function)
            key: Optional[bytes]
            if unique is None:
                key, uq = None, b"%s%012x" % (_unique.prefix, next(_unique.counter))
            else:
                key = uq = _args.c_string(unique, "unique key", limit=_lib.MAX_UNIQUE_SIZE)
            serializer = self._settings.serializer
            if serializer is RAW and type(workload) is bytes:
                data = workload
            else:
                data = encode(serializer, workload, "workload")
            return _do.submit(self, getattr(_lib, c_name), background, fn, uq, key, data)
        finally:
            gate.leave()

    method.__name__ = method.__qualname__ = ("do_%s" % priority).replace("_normal", "") + \
        ("_background" if background else "")
    method.__doc__ = doc
    return method


class Client(Owner):
    """A Gearman client: submit jobs, run batches of tasks, ask for status.

    ``Client("h1:4730,h2:4730")`` (or a list) adds servers at once; so do
    ``add_server`` and ``add_servers``.  With several servers every one is
    used: jobs are spread over them and fail over between them.
    """

    _kind = "client"
    _settings: ClientSettings

    def __init__(self, servers: Optional[Servers] = None) -> None:
        self._links: List[Link] = []
        self._placement: Placement[Link] = Placement()
        self._last_errno = 0
        self._setup(ClientSettings(), servers)
        self._links = self._servers_of
        self._issuers: Issuers[Link] = Issuers(self._links)
        self._book = TaskBook(self)

    # --- lifetime ----------------------------------------------------------------
    def _free(self) -> None:
        """Every C handle, once no call uses them (Gate.close)."""
        self._book.abandon()
        for link in self._links:
            link.close()
        self._settings.forget()

    @entry
    def clone(self) -> "Client":
        """A new Client with every setting of this one (servers, timeouts,
        serializer, options, identifier, log function, callbacks)."""
        other = Client()
        settings = self._settings.copy()
        other._settings = settings
        other._links[:] = [Link(server, settings) for server in settings.servers]
        other._book = TaskBook(other)
        return other

    # --- servers -------------------------------------------------------------------
    @entry
    def remove_servers(self) -> None:
        """Forget every server; queued tasks, and those in flight on them, wait
        for the next run_tasks() on new servers."""
        for link in self._links:
            self._book.requeue(link)
            link.close()
        del self._links[:]   # in place: it is Owner._servers_of
        self._settings.servers = []
        self._issuers.clear()

    def _new_server(self, server: Server) -> Link:
        return Link(server, self._settings)

    def _link_for(self, server: Optional[str]) -> Optional[Link]:
        if server is None:
            return None
        (wanted,) = _args.parse_servers(server)
        for link in self._links:
            if link.server == wanted:
                return link
        raise ValueError("%s is not one of this client's servers (%s)"
                         % (server, ", ".join(link.name for link in self._links) or "none"))

    # --- settings --------------------------------------------------------------------
    @setting
    def set_metrics(self, recorder: Any) -> None:
        """Record jobs submitted, completed, failed and their latency in
        ``recorder``: a pygear.metrics.Recorder, or any object with
        ``submitted(function)`` and ``finished(function, outcome, seconds)``.
        None stops recording."""
        if recorder is not None:
            for method in ("submitted", "finished"):
                if not callable(getattr(recorder, method, None)):
                    raise TypeError("a client's recorder needs a %s() method" % method)
        self._settings.metrics = recorder

    @setting
    def set_options(self, non_blocking: Optional[bool] = None,
                    unbuffered_result: Optional[bool] = None,
                    free_tasks: Optional[bool] = None,
                    generate_unique: Optional[bool] = None) -> None:
        """libgearman's client options.  ``non_blocking``: run_tasks makes one
        pass and returns (call wait() and run_tasks() again).  The others are
        kept for get_options(): pygear copies results out itself, frees each
        task's C side when it ends, and names every job."""
        wanted = dict(non_blocking=non_blocking, unbuffered_result=unbuffered_result,
                      free_tasks=free_tasks, generate_unique=generate_unique)
        for name, value in wanted.items():
            if value is not None and not isinstance(value, bool):
                raise TypeError("%s must be a bool" % name)
        for name, value in wanted.items():
            if value is not None:
                self._settings.options[name] = value

    def get_options(self) -> Dict[str, bool]:
        """The four options, as booleans."""
        self._gate.check_open()
        return {name: self._settings.options[name] for name in OPTION_NAMES}

    # --- errors -----------------------------------------------------------------------
    def error_code(self) -> int:
        """The gearman_return_t of the last error (SUCCESS when none)."""
        self._gate.check_open()
        exc = self._last_error
        return exc.code if exc is not None and exc.code is not None else RETURN_CODES["SUCCESS"]

    def errno(self) -> int:
        """The system errno of the last failure, 0 when none."""
        self._gate.check_open()
        return self._last_errno

    # --- jobs ---------------------------------------------------------------------------
    do = _job_method("normal", False, """Run a job at normal priority and return its
        deserialized result.  Raises WORK_FAIL when the worker failed it,
        WORK_EXCEPTION (with the report as ``.payload``) when the worker's
        function raised.""")
    do_high = _job_method("high", False, """``do`` at high priority.""")
    do_low = _job_method("low", False, """``do`` at low priority.""")
    do_background = _job_method("normal", True, """Queue a job; returns {"result": None,
        "job_handle": "H:host:N", "server": "host:port"} once the server said it holds it.""")
    do_high_background = _job_method("high", True, """``do_background`` at high priority.""")
    do_low_background = _job_method("low", True, """``do_background`` at low priority.""")

    @entry
    def job_status(self, job_handle: Union[str, bytes],
                   server: Optional[str] = None) -> Dict[str, Any]:
        """{"is_known", "is_running", "numerator", "denominator"} of a job,
        asked of ``server``, else of the server that issued the handle to this
        client, else of every server (handles are unique only per server:
        when several know it, pygear.ERROR names them)."""
        handle = _args.job_handle(job_handle)
        return _do.status(self, handle, False, self._link_for(server))

    @entry
    def unique_status(self, unique: Union[str, bytes]) -> Dict[str, Any]:
        """The same, for the job with this unique key (its server first)."""
        key = _args.unique_key(unique)
        if key is None:
            raise TypeError("unique key must be str or bytes")
        return _do.status(self, key, True, None)

    @entry
    def echo(self, data: Union[str, bytes]) -> None:
        """Send ``data`` to every server and check each sends it back."""
        payload = _args.exact_bytes(data, "echo data")
        if not self._links:
            raise self._record(error_for(RETURN_CODES["NO_SERVERS"], "echo failed: no servers"))
        deadline = Deadline(self._settings.timeout)
        for link in self._links:
            _do.echo(self, link, payload, deadline)

    # --- tasks ------------------------------------------------------------------------------
    def _task(self, c_name: str, background: bool, function: Name, workload: Any,
              unique: Optional[Name]) -> Task:
        fn = _args.function_name(function)
        key = _args.unique_key(unique)
        data = encode(self._settings.serializer, workload, "workload")
        task = Task(self._book, fn, key or new_unique(), data, c_name, background,
                    self._settings.serializer, key)
        return self._book.add(task)

    @setting
    def add_task(self, function: Name, workload: Any, unique: Optional[Name] = None) -> Task:
        """Queue a job for the next run_tasks(); returns its Task."""
        return self._task(_do.ADD_TASK["normal", False], False, function, workload, unique)

    @setting
    def add_task_high(self, function: Name, workload: Any, unique: Optional[Name] = None) -> Task:
        """``add_task`` at high priority."""
        return self._task(_do.ADD_TASK["high", False], False, function, workload, unique)

    @setting
    def add_task_low(self, function: Name, workload: Any, unique: Optional[Name] = None) -> Task:
        """``add_task`` at low priority."""
        return self._task(_do.ADD_TASK["low", False], False, function, workload, unique)

    @setting
    def add_task_background(self, function: Name, workload: Any,
                            unique: Optional[Name] = None) -> Task:
        """Queue a background job; it is done once a server holds it."""
        return self._task(_do.ADD_TASK["normal", True], True, function, workload, unique)

    @setting
    def add_task_high_background(self, function: Name, workload: Any,
                                 unique: Optional[Name] = None) -> Task:
        """``add_task_background`` at high priority."""
        return self._task(_do.ADD_TASK["high", True], True, function, workload, unique)

    @setting
    def add_task_low_background(self, function: Name, workload: Any,
                                unique: Optional[Name] = None) -> Task:
        """``add_task_background`` at low priority."""
        return self._task(_do.ADD_TASK["low", True], True, function, workload, unique)

    @setting
    def add_task_status(self, job_handle: Union[str, bytes]) -> Task:
        """Queue a status request; the Task's is_known(), is_running(),
        numerator() and denominator() answer once run_tasks() ran it."""
        handle = _args.job_handle(job_handle)
        task = Task(self._book, b"", b"", b"", "status", False, self._settings.serializer,
                    None, status_of=handle)
        return self._book.add(task)

    @entry
    def run_tasks(self) -> None:
        """Run every queued task, firing the callbacks.  An exception raised in
        a callback stops the run and is re-raised here; the tasks stay
        queued, and the next run_tasks goes on with them."""
        self._book.run(self, Deadline(self._settings.timeout),
                       one_pass=self._settings.options["non_blocking"])

    @entry
    def wait(self) -> None:
        """Wait (one timeout's worth at most) for I/O on the servers: with
        non_blocking set, between run_tasks() calls."""
        self._book.wait(self, Deadline(self._settings.timeout))

    # --- callbacks ------------------------------------------------------------------------
    def _set_callback(self, kind: int, fn: Optional[Callback]) -> None:
        if fn is not None and not callable(fn):
            raise TypeError("%s callback must be callable" % _EVENT_NAMES[kind])
        if fn is None:
            self._settings.callbacks.pop(kind, None)
        else:
            self._settings.callbacks[kind] = fn

    @setting
    def set_workload_fn(self, fn: Optional[Callback]) -> None:
        """Kept for libgearman's API: pygear always sends whole workloads, so
        it is never called."""
        if fn is not None and not callable(fn):
            raise TypeError("workload callback must be callable")
        self._workload_fn = fn

    _workload_fn: Optional[Callback] = None

    @setting
    def set_created_fn(self, fn: Optional[Callback]) -> None:
        """fn(task) when the server took the job (the task has its handle)."""
        self._set_callback(CREATED, fn)

    @setting
    def set_data_fn(self, fn: Optional[Callback]) -> None:
        """fn(task) for each WORK_DATA chunk (task.result() is the chunk)."""
        self._set_callback(DATA, fn)

    @setting
    def set_warning_fn(self, fn: Optional[Callback]) -> None:
        """fn(task) for each WORK_WARNING."""
        self._set_callback(WARNING, fn)

    @setting
    def set_status_fn(self, fn: Optional[Callback]) -> None:
        """fn(task) for each WORK_STATUS (task.numerator(), denominator())."""
        self._set_callback(STATUS, fn)

    @setting
    def set_complete_fn(self, fn: Optional[Callback]) -> None:
        """fn(task) when the job completed (task.result() is the result)."""
        self._set_callback(COMPLETE, fn)

    @setting
    def set_exception_fn(self, fn: Optional[Callback]) -> None:
        """fn(task) when the worker's function raised (task.result() is the report)."""
        self._set_callback(EXCEPTION, fn)

    @setting
    def set_fail_fn(self, fn: Optional[Callback]) -> None:
        """fn(task) when the worker failed the job."""
        self._set_callback(FAIL, fn)

    @setting
    def clear_fn(self) -> None:
        """Forget every callback."""
        self._settings.callbacks.clear()

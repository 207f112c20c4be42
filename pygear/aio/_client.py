"""``pygear.aio.Client``: the blocking Client's jobs, awaitable.

How it drives libgearman without blocking the loop: in the loop's own
thread, through the sockets pygear knows (pygear/_sockets.py).  Every job is
a task in a server's batch C client (pygear/_link.py), which runs in
libgearman's non-blocking mode; ``loop.add_reader`` on each C client's
socket says when ``gearman_client_run_tasks`` has something to read, and a
submission schedules a run at once.  No thread hand-off sits between a
coroutine and libgearman, so a ``gather`` of a thousand ``do()`` calls is a
thousand tasks pipelined through one connection per server.  What can
block is done in the loop's executor: connecting (pygear's echo, then the
'exceptions' round trip, pygear/_link.py).  A 50 ms timer runs the C
clients again while tasks are in flight, for what no read announces (a
send the kernel could not take at once).

The task callbacks are pygear's trampolines (pygear/_events.py): they only
record events, and the signals of the loop's thread are blocked while
libgearman runs (pygear/_signals.py), so Ctrl-C on ``asyncio.run`` is seen
by the loop between two C calls.

A cancelled (or timed-out) call abandons its task here at once; its C
task, unfinished, cannot be freed alone (_workarounds.UNFINISHED_TASK_FREE),
so it stays in its C client until it ends.  A C client holding many
abandoned tasks is retired: new tasks go to a fresh one, and the old one is
freed once none of its tasks is still awaited.
"""
from __future__ import annotations

import asyncio
import collections
import os
import weakref
from ctypes import byref, c_int
from typing import Any, AsyncIterator, Deque, Dict, Iterable, List, Optional, Set, Union

from .. import _args, _events, _lib, _signals, _unique
from .._do import ADD_TASK
from .._gate import Gate
from .._link import SERVER_FAILURES, CClient, Link, server_failure
from .._placement import Placement
from .._probe import format_server
from .._settings import ClientSettings
from .._task import Task, job_key, may_ask
from .._wait import Deadline
from ..errors import ERROR, RETURN_CODES, GearmanError, error_for
from ..serializers import check_serializer, encode

SUCCESS = RETURN_CODES["SUCCESS"]
IO_WAIT = RETURN_CODES["IO_WAIT"]
PAUSE = RETURN_CODES["PAUSE"]
WORK_FAIL = RETURN_CODES["WORK_FAIL"]
WORK_EXCEPTION = RETURN_CODES["WORK_EXCEPTION"]
WINDOW = 1000              # tasks per C client (_workarounds.TASK_LIST_WALK)
RETIRE_AFTER = 1024        # abandoned tasks before a C client is retired
TICK = 0.05                # the safety run while tasks are in flight
Servers = Union[str, Iterable[str]]


class Event:
    """One event of a job (``Client.submit``): ``kind`` is "data",
    "warning", "status" or "complete"; ``data`` the deserialized payload
    (None for status); ``numerator``/``denominator`` for status."""

    __slots__ = ("kind", "data", "numerator", "denominator")

    def __init__(self, kind: str, data: Any = None, numerator: int = 0,
                 denominator: int = 0) -> None:
        self.kind, self.data = kind, data
        self.numerator, self.denominator = numerator, denominator

    def __repr__(self) -> str:
        if self.kind == "status":
            return "Event(status, %d/%d)" % (self.numerator, self.denominator)
        return "Event(%s, %r)" % (self.kind, self.data)


_STREAMED = {_events.DATA: "data", _events.WARNING: "warning", _events.STATUS: "status"}


class _Generation:
    """One batch C client of a server: its live tasks and how many of them
    nobody awaits any more."""

    __slots__ = ("cc", "live", "abandoned", "reader", "keyed", "closed_to_new")

    def __init__(self, cc: CClient) -> None:
        self.cc = cc
        self.live: Set[Task] = set()
        self.abandoned = 0
        self.reader: Optional[int] = None   # the fd the loop watches for it
        # _task.job_key -> the task with that key in C here
        self.keyed: Dict[Any, Task] = {}
        self.closed_to_new = False          # new tasks go to a fresh C client


class _Book:
    """What Task's trampolines report to (the blocking Client's TaskBook
    has the same four methods): here, futures and event queues."""

    def __init__(self, client: "Client") -> None:
        self._settings = client._settings
        self.client = client
        self.ended_tasks: List[Task] = []
        self.futures: Dict[Task, "asyncio.Future[Any]"] = {}
        self.streams: Dict[Task, "asyncio.Queue[Any]"] = {}

    def callback(self, kind: int, task: Task) -> bool:
        # In a C callback: record only (the payload is deserialized when
        # the iterator hands the event over, outside C).
        queue = self.streams.get(task)
        if queue is not None and kind in _STREAMED:
            queue.put_nowait((_STREAMED[kind], task._data, task._num, task._den))
        return True

    def raised_in_callback(self, exc: BaseException) -> None:
        pass      # no user code runs in aio callbacks

    def ended(self, task: Task) -> None:
        self.ended_tasks.append(task)

    def record(self, task: Task) -> None:
        metrics = self._settings.metrics
        if metrics is not None and task._started is not None:
            outcome = {SUCCESS: "complete", WORK_FAIL: "fail",
                       WORK_EXCEPTION: "exception"}.get(task._rc, "complete")
            metrics.finished(task._function, outcome,
                             self.client._loop_time() - task._started)


def _weakly(ref: "weakref.ref[Client]", method: Any, *args: Any) -> None:
    """A loop callback that does not keep its Client alive: a Client
    dropped without close() is collected (and freed, ``__del__``) while
    the loop runs on."""
    client = ref()
    if client is not None:
        method(client, *args)


class Client:
    """An asyncio Gearman client: ``await c.do(fn, data)`` and friends.

    ``aio.Client("h1:4730,h2:4730")`` (or ``add_server(s)``).  Same
    serializers, errors, exception reports and cluster rules as
    ``pygear.Client``; every call awaits its job, concurrently with the
    others; cancelling a call abandons its job on the client side."""

    def __init__(self, servers: Optional[Servers] = None) -> None:
        _lib.load()
        self._settings = ClientSettings()
        self._gate = Gate("client", self._free)   # drive()'s interruption check
        self._links: List[Link] = []
        self._gens: Dict[Link, List[_Generation]] = {}
        self._connecting: Dict[Link, "asyncio.Future[Any]"] = {}
        self._placement: Placement[Link] = Placement()
        self._book = _Book(self)
        self._waiting: Deque[Task] = collections.deque()
        self._issuers: Dict[str, Link] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._scheduled = False
        self._ticker: Optional[asyncio.TimerHandle] = None
        self._rc = c_int(SUCCESS)
        self._pid = os.getpid()
        self._closed = False
        env = os.environ.get("GEARMAN_SERVERS")
        if env:
            self._add(_args.parse_servers(env))
        if servers is not None:
            self._add(_args.parse_servers(servers))

    # --- lifetime -------------------------------------------------------------
    async def __aenter__(self) -> "Client":
        self._check_open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Abandon what is in flight and free every C client."""
        if self._closed:
            return
        self._closed = True
        for fut in list(self._book.futures.values()):
            if not fut.done():
                fut.set_exception(ERROR("this client is closed"))
        for fut in list(self._connecting.values()):
            await asyncio.gather(fut, return_exceptions=True)
        self._free()

    def __del__(self, _getpid: Any = os.getpid) -> None:
        # Dropped without close(): its C clients and their sockets go now.
        # Only in the process that made it (a forked child shares them).
        try:
            if not self._closed and self._pid == _getpid():
                self._closed = True
                self._free()
        except Exception:
            pass

    def _free(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for link, gens in self._gens.items():
            for gen in gens:
                self._drop_generation(link, gen)
        self._gens.clear()
        for link in self._links:
            link.close()
        self._settings.forget()

    def _check_open(self) -> None:
        if self._closed:
            raise ERROR("this client is closed")

    @property
    def closed(self) -> bool:
        return self._closed

    # --- servers and settings --------------------------------------------------
    def add_server(self, host: str = "localhost", port: int = _args.DEFAULT_PORT) -> None:
        """Add one job server."""
        self._check_open()
        self._add([(_args.check_host(host), _args.check_port(port))])

    def add_servers(self, servers: Servers) -> None:
        """Add servers: "h1:4730,h2" or a list of "host[:port]"."""
        self._check_open()
        self._add(_args.parse_servers(servers))

    def _add(self, servers: List[Any]) -> None:
        for server in servers:
            if server not in self._settings.servers:
                self._settings.servers.append(server)
                self._links.append(Link(server, self._settings))

    def set_timeout(self, timeout_ms: int) -> None:
        """Milliseconds each call may take (-1: no limit but cancellation)."""
        self._check_open()
        self._settings.timeout = _args.check_timeout(timeout_ms)

    def timeout(self) -> int:
        self._check_open()
        return self._settings.timeout

    def set_connect_timeout(self, timeout_ms: int) -> None:
        """How long a server may take to answer a new connection (default 5000 ms)."""
        self._check_open()
        ms = _args.check_timeout(timeout_ms)
        if ms < 1:
            raise ValueError("the connect timeout must be at least 1 ms")
        self._settings.connect_timeout = ms

    def set_serializer(self, serializer: Any) -> None:
        """pygear.JSON (default), pygear.RAW, pygear.PICKLE or your own."""
        self._check_open()
        self._settings.serializer = check_serializer(serializer)

    def set_identifier(self, identifier: Union[str, bytes]) -> None:
        """The client id gearmand shows (applies to connections made after)."""
        self._check_open()
        self._settings.identifier = _args.identifier(identifier)
        self._settings.changed()

    def set_metrics(self, recorder: Any) -> None:
        """Record submitted/finished jobs in a pygear.metrics.Recorder."""
        self._check_open()
        self._settings.metrics = recorder

    # --- errors (what CClient.open and drive() expect of their client) ------------
    def _record(self, exc: Any) -> Any:
        return exc

    def _timeout_error(self, what: str) -> GearmanError:
        return error_for(RETURN_CODES["TIMEOUT"], "%s failed: timeout of %d ms reached"
                         % (what, self._settings.timeout))

    def _issued(self, handle: str, link: Link) -> None:
        if len(self._issuers) > 100_000:
            self._issuers.clear()
        self._issuers[handle] = link

    def _issuer(self, handle: str) -> Optional[Link]:
        return self._issuers.get(handle)

    def _loop_time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # --- jobs ----------------------------------------------------------------------
    async def do(self, function: _args.Name, workload: Any,
                 unique: Optional[_args.Name] = None) -> Any:
        """Run a job and return its deserialized result (WORK_FAIL and
        WORK_EXCEPTION as with pygear.Client.do)."""
        return await self._job("normal", False, function, workload, unique)

    async def do_high(self, function: _args.Name, workload: Any,
                      unique: Optional[_args.Name] = None) -> Any:
        """``do`` at high priority."""
        return await self._job("high", False, function, workload, unique)

    async def do_low(self, function: _args.Name, workload: Any,
                     unique: Optional[_args.Name] = None) -> Any:
        """``do`` at low priority."""
        return await self._job("low", False, function, workload, unique)

    async def do_background(self, function: _args.Name, workload: Any,
                            unique: Optional[_args.Name] = None) -> Dict[str, Any]:
        """Queue a job: {"result": None, "job_handle", "server"} once a server holds it."""
        return await self._job("normal", True, function, workload, unique)  # type: ignore

    async def do_high_background(self, function: _args.Name, workload: Any,
                                 unique: Optional[_args.Name] = None) -> Dict[str, Any]:
        """``do_background`` at high priority."""
        return await self._job("high", True, function, workload, unique)  # type: ignore

    async def do_low_background(self, function: _args.Name, workload: Any,
                                unique: Optional[_args.Name] = None) -> Dict[str, Any]:
        """``do_background`` at low priority."""
        return await self._job("low", True, function, workload, unique)  # type: ignore

    async def submit(self, function: _args.Name, workload: Any,
                     unique: Optional[_args.Name] = None) -> AsyncIterator[Event]:
        """The job's events as they come: data, warning, status, then
        complete (its result); a failed or raising job raises WORK_FAIL or
        WORK_EXCEPTION at the end instead."""
        task = self._make_task("normal", False, function, workload, unique)
        queue: "asyncio.Queue[Any]" = asyncio.Queue()
        self._book.streams[task] = queue
        fut = self._enqueue(task)
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, fut}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield self._event(getter.result())
                    continue
                getter.cancel()
                while not queue.empty():
                    yield self._event(queue.get_nowait())
                result = fut.result()          # raises WORK_FAIL / WORK_EXCEPTION / TIMEOUT
                yield Event("complete", result)
                return
        finally:
            self._book.streams.pop(task, None)
            if not fut.done():
                self._abandon(task)

    def _event(self, item: Any) -> Event:
        kind, raw, num, den = item
        if kind == "status":
            return Event(kind, None, num, den)
        from ..serializers import decode
        return Event(kind, decode(self._settings.serializer, raw or b""))

    def _make_task(self, priority: str, background: bool, function: _args.Name, workload: Any,
                   unique: Optional[_args.Name]) -> Task:
        self._check_open()
        fn = _args.function_name(function)
        key = _args.unique_key(unique)
        data = encode(self._settings.serializer, workload, "workload")
        uq = key or _unique.new_unique()
        task = Task(self._book, fn, uq, data, ADD_TASK[priority, background], background,  # type: ignore
                    self._settings.serializer, key)
        return task

    async def _job(self, priority: str, background: bool, function: _args.Name, workload: Any,
                   unique: Optional[_args.Name]) -> Any:
        task = self._make_task(priority, background, function, workload, unique)
        fut = self._enqueue(task)
        try:
            timeout = self._settings.timeout
            if timeout >= 0:
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), timeout / 1000.0)
                except asyncio.TimeoutError:
                    raise self._timeout_error("submitting job to %r" % task._function) from None
            return await fut
        finally:
            if not fut.done() or fut.cancelled():
                self._abandon(task)

    async def job_status(self, job_handle: Union[str, bytes],
                         server: Optional[str] = None) -> Dict[str, Any]:
        """The status of a job, from its own server (as pygear.Client.job_status)."""
        handle = _args.job_handle(job_handle)
        links = self._status_links(handle.decode("utf-8", "replace"), server)
        answers = []
        for link in links:
            task = Task(self._book, b"", b"", b"", "status", False,  # type: ignore[arg-type]
                        self._settings.serializer, None, status_of=handle)
            task._pin = link
            fut = self._enqueue(task)
            try:
                await fut
            finally:
                if not fut.done():
                    self._abandon(task)
            if task._known or len(links) == 1:
                answers.append((link, task._status()))
        if len(answers) > 1:
            raise ERROR("job handle %r is known to several servers (%s): handles are unique "
                        "only per server; pass server=" % (
                            handle.decode(), ", ".join(link.name for link, _ in answers)))
        if answers:
            return answers[0][1]
        return {"is_known": False, "is_running": False, "numerator": 0, "denominator": 0}

    def _status_links(self, handle: str, server: Optional[str]) -> List[Link]:
        self._check_open()
        if server is not None:
            (wanted,) = _args.parse_servers(server)
            for link in self._links:
                if link.server == wanted:
                    return [link]
            raise ValueError("%s is not one of this client's servers" % server)
        issuer = self._issuer(handle)
        if issuer is not None:
            return [issuer]
        if not self._links:
            raise error_for(RETURN_CODES["NO_SERVERS"], "job status failed: no job server was given")
        return list(self._links)

    async def unique_status(self, unique: Union[str, bytes]) -> Dict[str, Any]:
        """The status of the job with this unique key (asked of the blocking
        API's way, in the executor: gearmand answers it at once)."""
        from ..client import Client as BlockingClient
        key = _args.unique_key(unique)
        if key is None:
            raise TypeError("unique key must be str or bytes")
        self._check_open()
        loop = asyncio.get_running_loop()
        settings = self._settings

        def ask() -> Dict[str, Any]:
            with BlockingClient([format_server(s) for s in settings.servers]) as c:
                c.set_timeout(settings.timeout)
                return c.unique_status(key)
        return await loop.run_in_executor(None, ask)

    async def echo(self, data: Union[str, bytes]) -> None:
        """Ping every server (each over its own connection, in the executor)."""
        from ..client import Client as BlockingClient
        payload = _args.exact_bytes(data, "echo data")
        self._check_open()
        settings = self._settings

        def ping() -> None:
            with BlockingClient([format_server(s) for s in settings.servers]) as c:
                c.set_timeout(settings.timeout)
                c.echo(payload)
        await asyncio.get_running_loop().run_in_executor(None, ping)

    # --- the engine -------------------------------------------------------------------
    def _enqueue(self, task: Task) -> "asyncio.Future[Any]":
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._book.futures[task] = fut
        metrics = self._settings.metrics
        if metrics is not None and task._status_of is None:
            metrics.submitted(task._function)
            task._started = loop.time()
        self._waiting.append(task)
        self._kick()
        return fut

    def _kick(self) -> None:
        if not self._scheduled and self._loop is not None and not self._closed:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _abandon(self, task: Task) -> None:
        """Nobody awaits ``task`` any more."""
        fut = self._book.futures.pop(task, None)
        if fut is not None and not fut.done():
            fut.cancel()
        try:
            self._waiting.remove(task)
            return
        except ValueError:
            pass
        gen = task._gen
        if gen is not None and task in gen.live:
            task._abandoned = True
            gen.abandoned += 1
            self._maybe_retire(task._link, gen)

    def _run(self) -> None:
        """Place waiting tasks, run every C client with live tasks, settle."""
        self._scheduled = False
        if self._closed:
            return
        self._place()
        for link, gens in list(self._gens.items()):
            for gen in list(gens):
                if gen.live:
                    self._run_generation(link, gen)
        self._settle()
        self._tick_while_busy()

    def _place(self) -> None:
        links = self._links
        if not links and self._waiting:
            exc = error_for(RETURN_CODES["NO_SERVERS"], "no job server was given")
            while self._waiting:
                self._fail(self._waiting.popleft(), exc)
            return
        while self._waiting:
            task = self._waiting[0]
            link = task._pin or self._choose(task)
            if link is None:
                return
            gen = self._current(link)
            if gen is None:
                return                     # connecting: placed once it is up
            if len(gen.live) >= WINDOW:
                return
            key = job_key(task)
            holder = gen.keyed.get(key) if key is not None else None
            if holder is not None:
                if not holder._abandoned:
                    return                 # sent once that one ended
                gen.closed_to_new = True   # nobody awaits that one, which may never end
                continue
            if task._status_of is not None and not may_ask(gen.live, task._status_of):
                return                     # one round trip later
            self._waiting.popleft()
            self._submit(link, gen, task)

    def _choose(self, task: Task) -> Optional[Link]:
        order = self._placement.order(self._links, task._key)
        up = [link for link in order if link.health.up] or order
        return up[0] if up else None

    def _current(self, link: Link) -> Optional[_Generation]:
        gens = self._gens.get(link)
        if gens and gens[-1].cc.ptr and gens[-1].abandoned < RETIRE_AFTER and \
                not gens[-1].closed_to_new:
            return gens[-1]
        if link not in self._connecting:
            self._connect(link)
        return None

    def _connect(self, link: Link) -> None:
        loop = self._loop
        assert loop is not None
        cc = CClient(link, _events.batch_callbacks())
        deadline = Deadline(self._settings.connect_timeout + 1000)

        def open_it() -> None:
            _signals.block_forever()      # an executor thread: never the signals' target
            cc.open(self, deadline)       # type: ignore[arg-type]

        fut = loop.run_in_executor(None, open_it)
        self._connecting[link] = fut     # type: ignore[assignment]

        def opened(f: "asyncio.Future[Any]") -> None:
            self._connecting.pop(link, None)
            if self._closed:
                cc.discard()
                return
            exc = f.exception()
            if exc is not None:
                link.failed_with(exc)
                self._connect_failed(link, exc)
            else:
                gen = _Generation(cc)
                self._gens.setdefault(link, []).append(gen)
                self._watch(link, gen)
            self._kick()
        fut.add_done_callback(opened)

    def _connect_failed(self, link: Link, exc: BaseException) -> None:
        """The tasks waiting for ``link`` go to another server, or fail."""
        others = [l for l in self._links if l is not link and l.health.up]
        if others and server_failure(exc):
            return                         # _choose places them elsewhere now it is down
        keep: Deque[Task] = collections.deque()
        while self._waiting:
            task = self._waiting.popleft()
            if (task._pin or self._choose(task)) is link:
                self._fail(task, exc)
            else:
                keep.append(task)
        self._waiting = keep

    def _watch(self, link: Link, gen: _Generation) -> None:
        watch = gen.cc.watch
        if watch is not None and watch.fd is not None and self._loop is not None:
            fd = watch.fd
            gen.reader = fd
            self._loop.add_reader(fd, _weakly, weakref.ref(self), Client._readable, link, gen)

    def _readable(self, link: Link, gen: _Generation) -> None:
        cc = gen.cc
        if cc.ptr:
            cc.set_timeout(1)             # libgearman reads what its own poll marked ready
            _lib.gearman_client_wait(cc.ptr)
        self._run()

    def _submit(self, link: Link, gen: _Generation, task: Task) -> None:
        cc = gen.cc
        if task._status_of is not None:
            addr = _lib.gearman_client_add_task_status(cc.ptr, None, None, task._status_of,
                                                       byref(self._rc))
        else:
            data = task._workload
            addr = getattr(_lib, task._c_name)(cc.ptr, None, None, task._fn, task._uq,
                                               data or None, len(data), byref(self._rc))
        if not addr:
            self._fail(task, cc.error(self._rc.value, "adding a task for %r" % task._function))
            return
        task._addr, task._link, task._server = addr, link, link.name
        task._gen = gen
        task._state = "submitted"
        gen.live.add(task)
        key = job_key(task)
        if key is not None:
            gen.keyed[key] = task
        _events.LIVE[addr] = task

    def _run_generation(self, link: Link, gen: _Generation) -> None:
        cc = gen.cc
        token = _signals.block()           # the trampolines are Python that C calls
        try:
            rc = _lib.gearman_client_run_tasks(cc.ptr)
        finally:
            _signals.restore(token)
        if rc in (SUCCESS, IO_WAIT, PAUSE):
            return
        failure = cc.error(rc, "running tasks on %s" % link.name)
        if rc in SERVER_FAILURES:
            link.failed_with(failure)
            self._requeue(link, gen)
        else:
            # A job-level error for the whole run (the server refused a job):
            # the oldest unanswered task takes it.
            pending = [t for t in gen.live if t._event is None]
            if pending:
                self._fail(pending[0], failure)

    def _requeue(self, link: Link, gen: _Generation) -> None:
        """``link`` failed: its unanswered tasks go to another server."""
        back = []
        for task in list(gen.live):
            if task._addr is not None:
                _events.LIVE.pop(task._addr, None)
                task._addr = None
            if task._state == "finished":
                continue
            if task._abandoned:
                continue
            task.reset()
            task._server = None
            back.append(task)
        gen.live.clear()
        self._drop_generation(link, gen)
        self._waiting.extendleft(reversed(back))
        self._kick()

    def _settle(self) -> None:
        """Free the C side of ended tasks; answer their futures."""
        ended, self._book.ended_tasks = self._book.ended_tasks, []
        for task in ended:
            gen = task._gen
            addr = task._addr
            if addr is not None and gen is not None and task in gen.live:
                gen.live.discard(task)
                key = job_key(task)
                if key is not None and gen.keyed.get(key) is task:
                    del gen.keyed[key]
                _events.LIVE.pop(addr, None)
                task._addr = None
                _lib.gearman_task_free(addr)
                if task._abandoned:
                    gen.abandoned -= 1
            self._answer(task)
            if gen is not None:
                self._maybe_retire(task._link, gen)
            if task._background and task._handle and task._link is not None:
                self._issued(task._handle, task._link)

    def _answer(self, task: Task) -> None:
        fut = self._book.futures.pop(task, None)
        if fut is None or fut.done():
            return
        if task._status_of is not None:
            fut.set_result(task._status())
        elif task._background:
            fut.set_result({"result": None, "job_handle": task._handle, "server": task._server})
        elif task._rc == SUCCESS:
            try:
                fut.set_result(task.result())
            except Exception as exc:       # the result would not deserialize
                fut.set_exception(exc)
        elif task._rc == WORK_EXCEPTION:
            fut.set_exception(error_for(WORK_EXCEPTION, "submitting job to %r: the worker "
                                        "raised an exception" % task._function, task.result()))
        elif task._rc == WORK_FAIL:
            fut.set_exception(error_for(WORK_FAIL, "submitting job to %r: the worker failed "
                                        "the job" % task._function))
        else:
            fut.set_exception(error_for(task._rc, "submitting job to %r failed: %s"
                                        % (task._function, task._error or "")))

    def _fail(self, task: Task, exc: BaseException) -> None:
        fut = self._book.futures.pop(task, None)
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    def _maybe_retire(self, link: Link, gen: _Generation) -> None:
        """A generation whose live tasks are all abandoned goes (with its C
        tasks) once it holds many; a current one with many abandoned is
        retired (new tasks go to a fresh one)."""
        if gen.abandoned and gen.abandoned >= len(gen.live) and \
                (gen.abandoned >= 64 or gen is not self._gens.get(link, [None])[-1]):
            for task in list(gen.live):
                if task._addr is not None:
                    _events.LIVE.pop(task._addr, None)
                    task._addr = None
            gen.live.clear()
            self._drop_generation(link, gen)

    def _drop_generation(self, link: Link, gen: _Generation) -> None:
        if gen.reader is not None and self._loop is not None:
            self._loop.remove_reader(gen.reader)
            gen.reader = None
        gens = self._gens.get(link)
        if gens and gen in gens:
            gens.remove(gen)
        for task in list(gen.live):
            if task._addr is not None:
                _events.LIVE.pop(task._addr, None)
                task._addr = None
        gen.cc.discard()

    def _tick_while_busy(self) -> None:
        busy = any(gen.live for gens in self._gens.values() for gen in gens) or \
            bool(self._waiting)
        if busy and self._ticker is None and self._loop is not None:
            self._ticker = self._loop.call_later(TICK, _weakly, weakref.ref(self), Client._tick)

    def _tick(self) -> None:
        self._ticker = None
        for gens in self._gens.values():
            for gen in gens:
                if gen.live and gen.cc.ptr:
                    gen.cc.set_timeout(1)
                    _lib.gearman_client_wait(gen.cc.ptr)
        self._run()

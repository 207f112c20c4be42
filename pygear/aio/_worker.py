"""``pygear.aio.Worker``: job functions, coroutines or plain, N at a time.

libgearman runs one job at a time per C worker, inside
``gearman_worker_work`` (the job function is called from C and its reply
sent before the call returns).  So ``serve(concurrency=N)`` runs N slots,
each a thread with a blocking ``pygear.Worker`` of its own (its own
connection to every server, and so everything the blocking Worker does:
failover, reconnecting, re-registering, the one wait loop).  A plain
``def`` function runs in its slot's thread (the thread pool is the slots);
an ``async def`` runs in the event loop, while its slot waits for it: its
``await job.send_status(...)`` is a send from another thread on a job whose
function is running, which the blocking Worker allows (pygear/_job.py).
Slot threads block every signal, so Ctrl-C reaches the loop's thread.

``stop()`` lets every running job finish, then ``serve`` returns; with a
``timeout``, jobs still running after it are cancelled and end as failed.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Set, Tuple, Union

from .. import _args, _signals
from .._job import Job
from ..serializers import JSON, check_serializer
from ..worker import Worker as BlockingWorker

Servers = Union[str, Iterable[str]]
_SLICE_MS = 200          # how often an idle slot looks at the stop flag


class AioJob:
    """What an ``async def`` job function gets: the job, with awaitable sends."""

    __slots__ = ("_job",)

    def __init__(self, job: Job) -> None:
        self._job = job

    def workload(self) -> Any:
        """The deserialized workload."""
        return self._job.workload()

    def raw_workload(self) -> bytes:
        """The workload's bytes."""
        return self._job.raw_workload()

    def handle(self) -> str:
        return self._job.handle()

    def function_name(self) -> str:
        return self._job.function_name()

    def unique(self) -> Optional[str]:
        return self._job.unique()

    async def send_status(self, numerator: int, denominator: int) -> None:
        """WORK_STATUS (progress)."""
        self._job.send_status(numerator, denominator)

    async def send_data(self, obj: Any) -> None:
        """A WORK_DATA chunk."""
        self._job.send_data(obj)

    async def send_warning(self, obj: Any) -> None:
        """A WORK_WARNING."""
        self._job.send_warning(obj)


class Worker:
    """An asyncio Gearman worker.

    ::

        w = aio.Worker("h1:4730,h2:4730")

        @w.function("reverse")
        async def reverse(job):
            return job.workload()[::-1]

        await w.serve(concurrency=100)     # until cancelled or stop()
    """

    def __init__(self, servers: Optional[Servers] = None) -> None:
        self._servers: List[Tuple[str, int]] = []
        if servers is not None:
            self.add_servers(servers)
        self._functions: Dict[str, Tuple[Callable[..., Any], int]] = {}
        self._serializer: Any = JSON
        self._identifier: Optional[str] = None
        self._stop = threading.Event()
        self._running: Set["asyncio.Future[Any]"] = set()
        self._serving: Optional["asyncio.Future[Any]"] = None

    # --- settings --------------------------------------------------------------
    def add_server(self, host: str = "localhost", port: int = _args.DEFAULT_PORT) -> None:
        """Add one job server."""
        server = (_args.check_host(host), _args.check_port(port))
        if server not in self._servers:
            self._servers.append(server)

    def add_servers(self, servers: Servers) -> None:
        """Add servers: "h1:4730,h2" or a list of "host[:port]"."""
        for server in _args.parse_servers(servers):
            if server not in self._servers:
                self._servers.append(server)

    def set_serializer(self, serializer: Any) -> None:
        """pygear.JSON (default), pygear.RAW, pygear.PICKLE or your own."""
        self._serializer = check_serializer(serializer)

    def set_identifier(self, identifier: str) -> None:
        """The worker id gearmand shows (each slot adds its number)."""
        _args.identifier(identifier)
        self._identifier = identifier

    def add_function(self, name: str, fn: Callable[..., Any], timeout: int = 0) -> None:
        """Serve ``name`` with ``fn(job)``: an ``async def`` runs in the loop,
        a plain function in a slot thread.  ``timeout`` (seconds): for a
        coroutine, pygear's limit (it is cancelled, the job fails); for a
        plain function, gearmand's (which requeues the job when it fires)."""
        if not callable(fn):
            raise TypeError("job function must be callable")
        _args.function_name(name)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
            raise ValueError("timeout must be an int of seconds >= 0")
        self._functions[str(name)] = (fn, timeout)

    def function(self, name: str, timeout: int = 0) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of add_function."""
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add_function(name, fn, timeout)
            return fn
        return register

    # --- serving ---------------------------------------------------------------
    async def serve(self, concurrency: int = 1) -> None:
        """Run up to ``concurrency`` jobs at once until cancelled or stop()."""
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError("concurrency must be an int >= 1")
        if not self._functions:
            raise ValueError("no functions: add_function() or @worker.function() first")
        if not self._servers:
            raise ValueError("no servers: aio.Worker('host:port') or add_server()")
        loop = asyncio.get_running_loop()
        self._stop.clear()
        done = loop.create_future()
        self._serving = done
        remaining = [concurrency]
        errors: List[BaseException] = []

        def finished(exc: Optional[BaseException]) -> None:
            if exc is not None:
                errors.append(exc)
                self._stop.set()
            remaining[0] -= 1
            if remaining[0] == 0 and not done.done():
                done.set_result(None)

        slots = [threading.Thread(target=self._slot, args=(loop, i, finished),
                                  name="pygear-aio-worker-%d" % i, daemon=True)
                 for i in range(concurrency)]
        for thread in slots:
            thread.start()
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            self._stop.set()                        # let running jobs finish
            await asyncio.shield(done)
            raise
        finally:
            self._stop.set()
            self._serving = None
        if errors:
            raise errors[0]

    async def stop(self, timeout: Optional[float] = None) -> None:
        """Let the running jobs finish, then serve() returns; after
        ``timeout`` seconds, running coroutines are cancelled (their jobs fail)."""
        self._stop.set()
        serving = self._serving
        if serving is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(serving), timeout)
        except asyncio.TimeoutError:
            for fut in list(self._running):
                fut.cancel()
            await asyncio.shield(serving)

    def _slot(self, loop: asyncio.AbstractEventLoop, index: int,
              finished: Callable[[Optional[BaseException]], None]) -> None:
        _signals.block_forever()
        error: Optional[BaseException] = None
        try:
            worker = BlockingWorker()
            for host, port in self._servers:
                worker.add_server(host, port)
            try:
                worker.set_serializer(self._serializer)
                if self._identifier:
                    worker.set_identifier("%s-%d" % (self._identifier, index))
                for name, (fn, timeout) in self._functions.items():
                    # A coroutine's timeout is pygear's alone: gearmand's own
                    # (CAN_DO_TIMEOUT) requeues the job when it fires, at the
                    # same instant, so the WORK_FAIL is refused and the job
                    # runs again, and again, instead of failing.
                    c_timeout = 0 if inspect.iscoroutinefunction(fn) else timeout
                    worker.add_function(name, self._bridge(loop, fn, timeout), timeout=c_timeout)
                worker.set_timeout(_SLICE_MS)
                worker.serve(until=self._stop.is_set)
            finally:
                worker.close()
        except BaseException as exc:
            error = exc
        finally:
            loop.call_soon_threadsafe(finished, error)

    def _bridge(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any],
                timeout: int) -> Callable[[Job], Any]:
        if not inspect.iscoroutinefunction(fn):
            return fn                          # runs in the slot thread itself

        def run(job: Job) -> Any:
            async def call() -> Any:
                coro: Awaitable[Any] = fn(AioJob(job))
                if timeout:
                    return await asyncio.wait_for(coro, timeout)
                return await coro

            def start() -> "asyncio.Future[Any]":
                fut = asyncio.ensure_future(call())
                self._running.add(fut)
                fut.add_done_callback(self._running.discard)
                return fut

            waiter = asyncio.run_coroutine_threadsafe(_await(start), loop)
            try:
                return waiter.result()
            # A cancelled coroutine shows here as concurrent.futures'
            # CancelledError (waiter is a concurrent Future), which is not
            # asyncio's: both, or stop(timeout) sends WORK_EXCEPTION.
            except (asyncio.CancelledError, concurrent.futures.CancelledError,
                    asyncio.TimeoutError):
                job.send_fail()                # stopped, or past its timeout: failed
                return None
        return run


async def _await(start: Callable[[], "asyncio.Future[Any]"]) -> Any:
    return await start()

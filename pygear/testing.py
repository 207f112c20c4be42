"""A pytest plugin that gives a test suite a real gearmand.

Registered through the ``pytest11`` entry point, so installing pygear is
enough; ``-p pygear.testing`` loads it explicitly.

Fixtures:

- ``gearmand`` (session): the server named by ``GEARMAN_SERVER=host:port``;
  else a private gearmand on a free loopback port, stopped after the
  session; else the test is skipped, saying why.  Has ``.host``, ``.port``
  and ``.address``.
- ``gearman_client`` / ``gearman_worker``: a Client / Worker connected to
  it, closed after the test.
- ``gearman_worker_process``: ``start(functions, serializer="json")`` runs
  a worker serving ``{"name": callable}`` in a child process (spawn, not
  fork) until the test ends.
- ``gearmand_cluster``: three private gearmands for one test (always
  private, even with ``GEARMAN_SERVER`` set), with ``.addresses``,
  ``.servers``, ``kill(i)`` and ``restart(i)``.  Ask for other options with
  ``@pytest.mark.gearmand_cluster(count=2, queue="sqlite")`` (or indirect
  parametrization with a dict); ``gearmand_cluster_factory(count, queue)``
  makes as many clusters as a test wants.
"""
from __future__ import annotations

import multiprocessing
import os
import re
import socket
import time
import uuid
import warnings
from typing import Callable, Dict, Iterable, Iterator, List, Optional

import pytest

from ._args import parse_servers
from ._server import GearmandCluster, GearmandProcess, find_gearmand

ENV_SERVER = "GEARMAN_SERVER"
NO_GEARMAND = ("no gearmand: set %s=host:port or install gearmand "
               "(apt-get install gearman-job-server)" % ENV_SERVER)


class GearmandServer:
    """Where the test gearmand listens (``process`` is None when external)."""

    def __init__(self, host: str, port: int, process: Optional[GearmandProcess] = None) -> None:
        self.host = host
        self.port = port
        self.process = process

    @property
    def address(self) -> str:
        if ":" in self.host:
            return "[%s]:%d" % (self.host, self.port)
        return "%s:%d" % (self.host, self.port)

    @property
    def external(self) -> bool:
        return self.process is None

    def __repr__(self) -> str:
        return "<gearmand %s%s>" % (self.address, " (external)" if self.external else "")


def _wait_for_named(named: str, host: str, port: int, timeout: float = 10.0) -> None:
    """Until the GEARMAN_SERVER answers an admin ``version``; fails at once
    when it refuses connections or its name does not resolve (nothing will
    change that by waiting), else after ``timeout``."""
    from .admin import Admin
    from .errors import GearmanError
    hint = ("start it (docker compose up -d gearmand) or unset %s" % ENV_SERVER)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=2.0).close()
            with Admin(host, port, timeout=2.0) as admin:   # a port forwarder accepts
                admin.version()                             # before gearmand is up
            return
        except ConnectionRefusedError as exc:
            pytest.fail("%s=%s refuses connections (%s): %s"
                        % (ENV_SERVER, named, exc.strerror or exc, hint), pytrace=False)
        except socket.gaierror as exc:
            pytest.fail("%s=%s: cannot resolve %s (%s)" % (ENV_SERVER, named, host, exc),
                        pytrace=False)
        except (OSError, GearmanError) as exc:
            if time.monotonic() > deadline:
                pytest.fail("%s=%s does not answer within %.0f s (%s): %s"
                            % (ENV_SERVER, named, timeout, exc, hint), pytrace=False)
            time.sleep(0.1)


def start_gearmand() -> GearmandServer:
    """The GEARMAN_SERVER, or a fresh private gearmand; skips when neither."""
    named = os.environ.get(ENV_SERVER)
    if named:
        (host, port), = parse_servers(named)
        _wait_for_named(named, host, port)
        return GearmandServer(host, port)
    if find_gearmand() is None:
        pytest.skip(NO_GEARMAND)
    process = GearmandProcess().start()
    return GearmandServer(process.host, process.port, process)


@pytest.fixture(scope="session")
def gearmand(request) -> Iterator[GearmandServer]:
    server = start_gearmand()
    try:
        yield server
    finally:
        if server.process is not None:
            server.process.stop()
        else:
            _leave_clean(server, request.config)


@pytest.fixture
def gearmand_cluster_factory() -> Iterator[Callable[..., GearmandCluster]]:
    """``make(count=3, queue=None)`` starts a cluster of private gearmands;
    every cluster made is stopped when the test ends."""
    if find_gearmand() is None:
        pytest.skip("no gearmand binary, and gearmand_cluster starts its own "
                    "(apt-get install gearman-job-server)")
    clusters: List[GearmandCluster] = []

    def make(count: int = 3, queue: Optional[str] = None) -> GearmandCluster:
        cluster = GearmandCluster(count, queue=queue)
        clusters.append(cluster)
        return cluster.start()

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop()


@pytest.fixture
def gearmand_cluster(request, gearmand_cluster_factory) -> GearmandCluster:
    """Three private gearmands, or what ``@pytest.mark.gearmand_cluster(...)``
    (or an indirect parameter: a count or a dict) asks for."""
    options: Dict = {}
    marker = request.node.get_closest_marker("gearmand_cluster")
    if marker is not None:
        options.update(zip(("count", "queue"), marker.args))
        options.update(marker.kwargs)
    param = getattr(request, "param", None)
    if param is not None:
        options.update(param if isinstance(param, dict) else {"count": param})
    return gearmand_cluster_factory(**options)


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "gearmand_cluster(count=3, queue=None): how many private gearmands "
        "the gearmand_cluster fixture starts; queue='sqlite' keeps background jobs "
        "across kill(i) and restart(i)")


def _connected(cls, server: GearmandServer):
    """A Client or Worker on ``server`` with a 10 s timeout, closed after."""
    obj = cls()
    obj.add_server(server.host, server.port)
    obj.set_timeout(10000)
    try:
        yield obj
    finally:
        obj.close()


@pytest.fixture
def gearman_client(gearmand):
    import pygear
    yield from _connected(pygear.Client, gearmand)


@pytest.fixture
def gearman_worker(gearmand):
    import pygear
    yield from _connected(pygear.Worker, gearmand)


def entry_point_installed() -> bool:
    """Whether pygear's pytest11 entry point is installed, so pytest loads
    this plugin by itself (naming it again would register it twice)."""
    try:
        from importlib import metadata
        eps = metadata.entry_points()
        group = eps.select(group="pytest11") if hasattr(eps, "select") else \
            eps.get("pytest11", [])  # type: ignore[arg-type]
        return any(ep.value.startswith("pygear.testing") for ep in group)
    except Exception:
        return False


# Every name unique_name() gave in this process, in order; a session's
# share starts where it was at pytest_sessionstart (pytester runs nest).
_generated: List[str] = []
_FIRST_NAME = pytest.StashKey[int]()


def unique_name(prefix: str = "fn") -> str:
    """A function name no other test uses, so queues never mix.  On a
    shared server (GEARMAN_SERVER), the session's end drains and drops the
    functions so named."""
    name = "%s_%s" % (prefix, uuid.uuid4().hex[:12])
    _generated.append(name)
    return name


def pytest_sessionstart(session) -> None:
    session.config.stash[_FIRST_NAME] = len(_generated)


def _leave_clean(server: GearmandServer, config) -> None:
    first = config.stash.get(_FIRST_NAME, 0)
    names, _generated[first:] = _generated[first:], []
    try:
        left = release_functions(server.host, server.port, names)
    except Exception as exc:   # the server went away: say so, do not fail the run
        left = ["could not clean up %d names: %r" % (len(names), exc)]
    if left:
        warnings.warn("left on %s: %s" % (server.address, "; ".join(left)))


_HEX12 = re.compile(r"(?=([0-9a-f]{12}))")


def release_functions(host: str, port: int, names: Iterable[str],
                      timeout: float = 30.0) -> List[str]:
    """On a shared gearmand, finish every job queued for the functions
    ``names`` (a throwaway worker takes each and completes it) and drop
    those functions.  Returns what could not be removed, and why.

    Jobs are drained, not cancelled: gearmand 1.1.20 keeps a cancelled job
    queued (``ignore_job``) until a worker comes, and dropping a function
    that still has jobs leaves them pointing at freed memory."""
    from .admin import Admin
    from .errors import ERROR
    # Every function whose name contains one of ours is ours too: a
    # worker's namespace prefixes it ("ns1" + name), tests derive names
    # from one (name + "_raw").  Names end in 12 hex digits (unique_name).
    by_id: Dict[str, List[str]] = {}
    for name in names:
        by_id.setdefault(name[-12:], []).append(name)

    def ours(function: str) -> bool:
        return any(n in function for found in _HEX12.findall(function)
                   for n in by_id.get(found, ()))

    deadline = time.monotonic() + timeout
    with Admin(host, port, timeout=10.0) as admin:
        def rows():
            return {r["function"]: r for r in admin.status() if ours(r["function"])}

        mine = rows()
        queued = sorted(name for name, row in mine.items() if row["total"])
        if queued:
            _drain(host, port, queued, lambda: any(rows().get(n, {}).get("total")
                                                   for n in queued), deadline)
        left = []
        for name in sorted(mine):
            while True:
                try:
                    admin.drop_function(name)
                    break
                except ERROR as exc:   # our drain worker may not be gone yet
                    if time.monotonic() > deadline:
                        row = rows().get(name, {})
                        left.append("%s (%s jobs, %s workers: %s)" % (
                            name, row.get("total"), row.get("available_workers"), exc))
                        break
                    time.sleep(0.05)
        return left


def _drain(host: str, port: int, functions: List[str], busy: Callable[[], bool],
           deadline: float) -> None:
    import pygear
    worker = pygear.Worker()
    try:
        worker.add_server(host, port)
        worker.set_serializer(pygear.RAW)
        worker.set_timeout(100)
        for name in functions:
            worker.add_function(name, 0, lambda job: b"")
        while time.monotonic() < deadline:
            try:
                worker.work()
                continue
            except pygear.TIMEOUT:
                pass
            if not busy():
                return
    finally:
        worker.close()


def _serve(host: str, port: int, functions: Dict[str, Callable], serializer: str,
           ready, stop) -> None:
    import pygear
    worker = pygear.Worker()
    worker.add_server(host, port)
    worker.set_serializer({"json": pygear.JSON, "raw": pygear.RAW,
                           "pickle": pygear.PICKLE}[serializer])
    for name, fn in functions.items():
        worker.add_function(name, 0, fn)
    worker.set_timeout(100)
    ready.set()
    worker.serve(until=stop.is_set)
    worker.close()


class WorkerProcesses:
    """Child processes serving Python callables; all stopped at teardown."""

    def __init__(self, server: GearmandServer) -> None:
        self.server = server
        self._ctx = multiprocessing.get_context("spawn")
        self._children: List = []
        self._registered: Dict[str, int] = {}

    def start(self, functions: Dict[str, Callable], serializer: str = "json",
              count: int = 1, timeout: float = 30.0):
        """Start ``count`` worker processes; returns when each registered.
        The callables must be importable (module-level) for spawn."""
        started = []
        for _ in range(count):
            ready, stop = self._ctx.Event(), self._ctx.Event()
            proc = self._ctx.Process(target=_serve, daemon=True,
                                     args=(self.server.host, self.server.port,
                                           functions, serializer, ready, stop))
            proc.start()
            self._children.append((proc, stop))
            started.append((proc, ready))
        deadline = time.monotonic() + timeout
        for proc, ready in started:
            while not ready.wait(0.1):
                if proc.exitcode is not None:
                    raise RuntimeError("worker process %d exited with %s before it "
                                       "started" % (proc.pid or 0, proc.exitcode))
                if time.monotonic() > deadline:
                    raise RuntimeError("worker process %d did not start within %.0fs"
                                       % (proc.pid or 0, timeout))
        self._wait_registered(list(functions), count, deadline)
        return [proc for proc, _ in started]

    def _wait_registered(self, names: List[str], count: int, deadline: float) -> None:
        """Until gearmand lists ``count`` more workers for every name (CAN_DO
        goes out with the first grab, a moment after the child started)."""
        from .admin import Admin
        wanted = {name: self._registered.get(name, 0) + count for name in names}
        with Admin(self.server.host, self.server.port, timeout=5.0) as admin:
            while True:
                have = {str(row["function"]): int(row["available_workers"])
                        for row in admin.status()}
                if all(have.get(name, 0) >= n for name, n in wanted.items()):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("gearmand did not see workers for %s in time"
                                       % ", ".join(sorted(wanted)))
                time.sleep(0.02)
        self._registered.update(wanted)

    def stop_all(self) -> None:
        for proc, stop in self._children:
            stop.set()
        for proc, stop in self._children:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        self._children = []
        self._registered = {}


@pytest.fixture
def gearman_worker_process(gearmand):
    workers = WorkerProcesses(gearmand)
    try:
        yield workers
    finally:
        workers.stop_all()


def pytest_report_header(config) -> List[str]:
    try:
        from . import _lib
        _lib.load()
        lib = "libgearman %s (%s)" % (_lib.version, _lib.dll_file)
    except Exception as exc:   # the header must never break a run
        lib = "libgearman not loaded: %s" % exc
    server = os.environ.get(ENV_SERVER) or find_gearmand() or "no gearmand found"
    return ["pygear: %s; gearmand: %s" % (lib, server)]

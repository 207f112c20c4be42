"""A Client's servers: one ``Link`` each, with its own C clients.

libgearman puts every server of a C client in one connection list and
sends each task to the first idle connection (_workarounds.
LAST_SERVER_GETS_ALL), so it cannot place jobs, and tasks sent to a dead
server wait forever.  pygear gives every server C clients of its own and
decides itself where each job goes (pygear/_placement.py): a failure is
then one server's, and the others go on.

Each Link holds up to two C clients, made on first use:

- ``do``: for ``do*``, job status and the exceptions option; one job at a
  time, so an interrupted call drops only its own job;
- ``batch``: for ``run_tasks``; tasks still in flight after a timeout or
  Ctrl-C stay in it for the next ``run_tasks``, and ``do*`` never runs them.

Ownership: a ``CClient`` owns its ``gearman_client_st`` and frees it in
``discard`` (with its C tasks, which libgearman frees with it); whoever
registered a task in ``_events.LIVE`` removes it before that.
"""
from __future__ import annotations

from ctypes import byref, c_int
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import _events, _lib, _settings
from ._placement import Health
from ._probe import Probe, format_server
from ._sockets import Watch
from ._wait import WAITING, Deadline, drive
from .errors import RETURN_CODES, GearmanError, error_for

if TYPE_CHECKING:
    from .client import Client

SUCCESS = RETURN_CODES["SUCCESS"]
IO_WAIT = RETURN_CODES["IO_WAIT"]
PAUSE_CODES = _events.PAUSE_CODES
TIMEOUT = RETURN_CODES["TIMEOUT"]
# Codes after which the server, not the job, is at fault: it is marked
# down, its C clients dropped, and its jobs go to the next server.
SERVER_FAILURES = frozenset(RETURN_CODES[n] for n in (
    "COULD_NOT_CONNECT", "LOST_CONNECTION", "NO_ACTIVE_FDS", "NOT_CONNECTED",
    "GETADDRINFO", "ERRNO", "INVALID_MAGIC", "INVALID_PACKET", "UNEXPECTED_PACKET",
    "NO_SERVERS"))


def server_failure(exc: BaseException) -> bool:
    return isinstance(exc, GearmanError) and exc.code in SERVER_FAILURES


def _DoRecord() -> Any:
    from ._do import DoJob
    return DoJob.__new__(DoJob)


class CClient:
    """One gearman_client_st talking to one server."""

    __slots__ = ("ptr", "link", "callbacks", "watch", "c_timeout", "version", "rc", "rc_ref",
                 "job", "busy", "record", "worked")

    def __init__(self, link: "Link", callbacks: Any) -> None:
        self.link = link
        self.callbacks = callbacks        # the CFUNCTYPE objects C may call: kept with it
        self.job: Any = None              # the DoJob a do* runs on it (pygear/_do.py)
        self.busy = False                 # a do* is running on it (or was cut short)
        self.worked = False               # a do* ended well on it
        self.ptr: Any = None
        self.watch: Optional[Watch] = None
        self.c_timeout: Optional[int] = None
        self.version = -1
        self.rc = c_int(SUCCESS)          # add_task's out-parameter, reused
        self.rc_ref = byref(self.rc)
        self.record = _DoRecord()         # what a do*'s events said (pygear/_do.py)

    def open(self, client: "Client", deadline: Deadline, alternatives: int = 1) -> None:
        """Check the server (pygear/_probe.py), make the C client from the
        settings record, connect, and ask for exceptions; a server that
        does not manage it within the connect timeout has failed.  With
        ``alternatives`` other servers that could take the job and a finite
        timeout, one server gets at most its share of the time left, so
        that a silent one cannot use up the whole call."""
        settings = client._settings
        link = self.link
        budget = settings.connect_timeout
        left = deadline.left_ms()
        if alternatives > 1 and left >= 0:
            budget = max(1, min(budget, left // alternatives))
        connect = deadline.within(budget)

        def too_slow() -> BaseException:
            if deadline.passed():
                return client._timeout_error("connecting to %s" % link.name)
            return error_for(RETURN_CODES["COULD_NOT_CONNECT"],
                             "the job server %s did not answer within %d ms" % (link.name, budget))

        probe = Probe(link.server)
        try:
            link.rtt = drive(client._gate, connect, probe.step, too_slow)
        finally:
            probe.close()
        ptr = _lib.gearman_client_create(None)
        if not ptr:
            raise MemoryError("gearman_client_create failed")
        self.ptr = ptr
        try:
            _lib.gearman_client_remove_servers(ptr)   # _workarounds.ENV_SERVERS
            _lib.gearman_client_add_options(ptr, _lib.CLIENT_NON_BLOCKING)
            _events.install(ptr, self.callbacks)
            _settings.apply_client(settings, ptr)
            self.version = settings.version
            host, port = link.server
            rc = _lib.gearman_client_add_server(ptr, host.encode("utf-8"), port)
            if rc != SUCCESS:
                raise self.error(rc, "adding the job server %s" % link.name)
            self.watch = Watch(link.server)   # libgearman opens its socket next
            drive(client._gate, connect, self._ask_for_exceptions, too_slow,
                  connection=self.watch)
        except BaseException:
            self.discard()
            raise
        link.health.recovered()

    def _ask_for_exceptions(self, ms: int) -> Any:
        """One slice of the 'exceptions' option (_workarounds.EXCEPTIONS_OPTION)."""
        self.set_timeout(ms)
        if _lib.gearman_client_set_server_option(self.ptr, b"exceptions", 10):
            return True
        rc = _lib.gearman_client_error_code(self.ptr)
        if rc == TIMEOUT:
            return WAITING
        raise self.error(rc, "connecting to %s" % self.link.name)

    def set_timeout(self, ms: int) -> None:
        if ms != self.c_timeout:
            _lib.gearman_client_set_timeout(self.ptr, ms)
            self.c_timeout = ms

    def run_alone(self, ms: int) -> Any:
        """A step of the wait loop: run this C client's one task (do*,
        status) for at most a slice of ``ms``.  A PAUSE is an event of the
        task (_events.pausers): its job reads it, and the run goes on."""
        ptr = self.ptr
        if ms != self.c_timeout:
            self.set_timeout(ms)
        run, wait = _lib.gearman_client_run_tasks, _lib.gearman_client_wait
        while True:
            rc = run(ptr)
            if rc == IO_WAIT:
                rc = wait(ptr)
                if rc == SUCCESS:
                    continue
                return WAITING if rc == TIMEOUT else rc
            if rc in PAUSE_CODES:
                self.job.take(rc)
                continue
            return rc

    def error(self, rc: int, what: str) -> GearmanError:
        raw = _lib.gearman_client_error(self.ptr) if self.ptr else None
        detail = raw.decode("utf-8", "replace") if raw else None
        text = _lib.strerror(rc)
        return error_for(rc, "%s failed: %s" % (what, _explain(rc, text)), detail=detail)

    def errno(self) -> int:
        return int(_lib.gearman_client_errno(self.ptr)) if self.ptr else 0

    def discard(self) -> None:
        """Free the C client and every C task in it
        (_workarounds.UNFINISHED_TASK_FREE: the only safe way to drop an
        unfinished one)."""
        ptr, self.ptr = self.ptr, None
        if self.watch is not None:
            self.watch.release()
            self.watch = None
        if ptr:
            _lib.gearman_client_free(ptr)


_PLAIN_WORDS = {
    "COULD_NOT_CONNECT": "could not connect to the job server",
    "LOST_CONNECTION": "the connection to the job server was lost",
    "GETADDRINFO": "the job server's host name could not be resolved",
    "NO_SERVERS": "no job server was given",
    "TIMEOUT": "timed out",
    "QUEUE_ERROR": "the job server refused the job (its queue for this function is full?)",
}


def _explain(rc: int, text: str) -> str:
    from .errors import describe_returncode
    return _PLAIN_WORDS.get(describe_returncode(rc), text)


class Link:
    """One server of a Client: its health and its C clients."""

    __slots__ = ("server", "name", "health", "do", "batch", "rtt", "live")

    def __init__(self, server: Any, settings: Any = None) -> None:
        self.server = server
        self.name = format_server(server)
        self.health = Health(self.name, settings)
        self.do: Optional[CClient] = None
        self.batch: Optional[CClient] = None
        self.rtt: Optional[float] = None
        self.live = 0                     # batch tasks in its C client

    def do_client(self, client: "Client", deadline: Deadline, alternatives: int = 1) -> CClient:
        cc = self.do
        if cc is not None and cc.ptr and cc.version == client._settings.version and not cc.busy:
            return cc
        if cc is not None:
            cc.discard()
        cc = self.do = CClient(self, _events.pausers())
        try:
            cc.open(client, deadline, alternatives)
        except BaseException as exc:
            self.do = None
            self.failed_with(exc)
            raise
        return cc

    def batch_client(self, client: "Client", deadline: Deadline, alternatives: int = 1) -> CClient:
        cc = self.batch
        if cc is not None and cc.ptr and (cc.version == client._settings.version or self.live):
            return cc
        if cc is not None:
            cc.discard()
        cc = self.batch = CClient(self, _events.batch_callbacks())
        try:
            cc.open(client, deadline, alternatives)
        except BaseException as exc:
            self.batch = None
            self.failed_with(exc)
            raise
        return cc

    def failed_with(self, exc: BaseException) -> None:
        if server_failure(exc):
            self.health.down(str(exc))

    def drop(self, which: Optional[CClient] = None) -> None:
        """Discard one C client (or both): after a failure or an interrupt."""
        for name in ("do", "batch"):
            cc = getattr(self, name)
            if cc is not None and (which is None or cc is which):
                cc.discard()
                setattr(self, name, None)

    def close(self) -> None:
        self.drop()


def on_timeout_of(client: "Client", what: str) -> Callable[[], BaseException]:
    return lambda: client._timeout_error(what)

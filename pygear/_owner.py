"""What Client and Worker share: a settings record, a Gate, their servers,
their lifetime, and the setters and accessors that only touch the record.

Each subclass says what a server is to it (``_new_server``: a Client's
``_link.Link``, a Worker's ``_cworker.WorkerServer``) and how to free its C
handles (``_free``); everything C-side happens in the subclass.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, List, Optional, TypeVar, Union

from . import _args, _lib
from ._args import Server
from ._gate import Gate, setting
from ._settings import Settings
from .errors import RETURN_CODES, GearmanError, error_for
from .serializers import check_serializer

E = TypeVar("E", bound=BaseException)
Servers = Union[str, Iterable[str]]


def verbosity(verbose: Union[int, str]) -> int:
    """A gearman_verbose_t from its name or number."""
    if isinstance(verbose, str):
        try:
            return _lib.VERBOSE_NAMES.index(verbose.upper())
        except ValueError:
            raise ValueError("verbose must be one of %s" % (_lib.VERBOSE_NAMES,))
    if isinstance(verbose, bool) or not isinstance(verbose, int) or \
            not 0 <= verbose < len(_lib.VERBOSE_NAMES):
        raise ValueError("verbose must be 0..%d" % (len(_lib.VERBOSE_NAMES) - 1))
    return verbose


class Owner:
    """A pygear object that owns C handles (see module doc)."""

    _kind = "object"
    _settings: Settings
    _gate: Gate
    _servers_of: List[Any]     # the subclass's per-server objects, in order

    def _setup(self, settings: Settings, servers: Optional[Servers]) -> None:
        _lib.load()   # LibraryNotFound here, saying how to install it
        self._pid = os.getpid()
        self._settings = settings
        self._gate = Gate(self._kind, self._free)
        self._servers_of = []
        self._last_error: Optional[GearmanError] = None
        env = os.environ.get("GEARMAN_SERVERS")
        if env:   # as libgearman does (_workarounds.ENV_SERVERS), but handled by pygear
            self._add(_args.parse_servers(env))
        if servers is not None:
            self._add(_args.parse_servers(servers))

    def _new_server(self, server: Server) -> Any:
        raise NotImplementedError

    def _free(self) -> None:
        raise NotImplementedError

    # --- lifetime -------------------------------------------------------------
    def close(self) -> None:
        """Free the C side.  From inside a callback or job function: when
        the running call returns (a job's reply is still sent).  From another
        thread: a blocked call raises pygear.ERROR ("closed") within one wait
        slice, then the object is freed.  A second close does nothing; any
        later call raises pygear.ERROR."""
        self._gate.close()

    @property
    def closed(self) -> bool:
        return self._gate.closed

    def __enter__(self: Any) -> Any:
        if self._gate.closed:
            raise self._gate.closed_error()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self, _getpid: Callable[[], int] = os.getpid) -> None:
        # Only in the process that made it: after fork() the child shares
        # the parent's sockets and must not tear them down.
        try:
            if not self._gate.closed and self._pid == _getpid():
                self._gate.close(self._free)
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._gate.closed else ",".join(
            s.name for s in self._servers_of) or "no servers"
        return "<pygear.%s %s>" % (type(self).__name__, state)

    # --- servers --------------------------------------------------------------
    @setting
    def add_server(self, host: str = "localhost", port: int = _args.DEFAULT_PORT) -> None:
        """Add one job server."""
        self._add([(_args.check_host(host), _args.check_port(port))])

    @setting
    def add_servers(self, servers: Servers) -> None:
        """Add servers: libgearman's "h1:4730,h2" form, or a list of "host[:port]"."""
        self._add(_args.parse_servers(servers))

    def _add(self, servers: List[Server]) -> None:
        for server in servers:
            if server not in self._settings.servers:
                self._settings.servers.append(server)
                self._servers_of.append(self._new_server(server))

    # --- settings that only the record holds, or that C handles made after take -----
    @setting
    def set_timeout(self, timeout_ms: int) -> None:
        """Milliseconds a blocking call may take in all; -1 waits forever
        (still interruptible by Ctrl-C and by close() from another thread)."""
        self._settings.timeout = _args.check_timeout(timeout_ms)

    def timeout(self) -> int:
        """The timeout in milliseconds (-1: forever)."""
        self._gate.check_open()
        return self._settings.timeout

    @setting
    def set_connect_timeout(self, timeout_ms: int) -> None:
        """How long a server may take to accept and answer a new connection
        before it counts as down (default 5000 ms; the job timeout is separate)."""
        ms = _args.check_timeout(timeout_ms)
        if ms < 1:
            raise ValueError("the connect timeout must be at least 1 ms")
        self._settings.connect_timeout = ms

    def connect_timeout(self) -> int:
        """The connect timeout in milliseconds (set_connect_timeout)."""
        self._gate.check_open()
        return self._settings.connect_timeout

    @setting
    def set_serializer(self, serializer: Any) -> None:
        """How workloads and results are encoded: pygear.JSON (default),
        pygear.RAW, pygear.PICKLE, or any object with loads and dumps."""
        self._settings.serializer = check_serializer(serializer)

    @setting
    def set_identifier(self, identifier: Union[str, bytes]) -> None:
        """The id gearmand shows for this object's connections."""
        self._settings.identifier = _args.identifier(identifier)
        self._settings.changed()

    @setting
    def set_log_fn(self, fn: Callable[[str], Any], verbose: Union[int, str] = "INFO") -> None:
        """Send libgearman's log lines (and pygear's news of servers down and
        back) at ``verbose`` and above to fn(line)."""
        if not callable(fn):
            raise TypeError("log function must be callable")
        self._settings.log_fn = fn
        self._settings.log_verbose = verbosity(verbose)
        self._settings.changed()

    def set_ssl(self, ca_file: Optional[str] = None, certificate: Optional[str] = None,
                key: Optional[str] = None) -> None:
        """Talk TLS to the servers.  Raises pygear.NotSupported, saying why,
        where the loaded libgearman cannot (see pygear.features()), and then
        nothing changed: nothing asked to go over TLS is sent in plaintext."""
        from . import _tls
        files = _tls.check_files(ca_file=ca_file, certificate=certificate, key=key)
        self._set_ssl((files["ca_file"], files["certificate"], files["key"]))

    @setting
    def _set_ssl(self, ssl: Any) -> None:
        from . import _tls
        _tls.require(self._kind)
        self._settings.ssl = ssl
        self._settings.changed()

    # --- errors -------------------------------------------------------------------
    def _record(self, exc: E) -> E:
        """Remember the error: error() and error_code() answer from it."""
        if isinstance(exc, GearmanError):
            self._last_error = exc
        return exc

    def _timeout_error(self, what: str) -> GearmanError:
        return self._record(error_for(RETURN_CODES["TIMEOUT"], "%s failed: timeout of %d ms "
                                      "reached" % (what, self._settings.timeout)))

    def error(self) -> Optional[str]:
        """The text of the last error (kept after later successes, as
        libgearman keeps it)."""
        self._gate.check_open()
        return str(self._last_error) if self._last_error is not None else None

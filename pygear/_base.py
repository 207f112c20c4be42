"""What Client and Worker share: owning a C handle, servers, timeouts,
serializers, logging, and waiting in slices so that Ctrl-C is never held up.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Iterable, List, Optional, Tuple, Union

from . import _lib
from .errors import ERROR, GearmanError, RETURN_CODES, error_for
from .serializers import JSON, check_serializer

SUCCESS = RETURN_CODES["SUCCESS"]
IO_WAIT = RETURN_CODES["IO_WAIT"]
TIMEOUT = RETURN_CODES["TIMEOUT"]
PAUSE = RETURN_CODES["PAUSE"]
NO_JOBS = RETURN_CODES["NO_JOBS"]
NO_ACTIVE_FDS = RETURN_CODES["NO_ACTIVE_FDS"]
# Codes after which the connections are rebuilt and the call tried again.
CONNECTION_CODES = frozenset(RETURN_CODES[n] for n in (
    "COULD_NOT_CONNECT", "LOST_CONNECTION", "NO_ACTIVE_FDS", "NOT_CONNECTED",
    "GETADDRINFO", "ERRNO"))

# The longest libgearman blocks before Python regains control: bounds how
# long a pending SIGINT waits (gearman_wait retries poll() on EINTR).
SLICE_MS = 50
DEFAULT_PORT = 4730

Server = Tuple[str, int]

# libgearman (connection.cc) sets SO_SNDBUF and SO_RCVBUF to 32 KiB on every
# socket, which Linux reports doubled.  On loopback (MSS ~64 KiB) that lets
# one segment be in flight, and the peer's delayed ACK (40 ms) then paces
# every 64 KiB of a large payload: a 1 MiB round trip takes ~0.5 s.
LIBGEARMAN_SOCKET_BUFFER = 2 * 32768
WIDE_SOCKET_BUFFER = 1 << 20


def widen_socket_buffers(ports) -> int:
    """Give libgearman's sockets to ``ports`` 1 MiB buffers (Linux only:
    found through /proc/self/fd by their peer port and the 32 KiB buffers
    libgearman set).  Returns how many sockets were widened; never raises."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return 0
    widened = 0
    for name in names:
        try:
            if not os.readlink("/proc/self/fd/" + name).startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except (OSError, ValueError):
            continue
        try:
            if sock.type == socket.SOCK_STREAM and \
                    sock.family in (socket.AF_INET, socket.AF_INET6) and \
                    sock.getpeername()[1] in ports and \
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == LIBGEARMAN_SOCKET_BUFFER:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WIDE_SOCKET_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, WIDE_SOCKET_BUFFER)
                widened += 1
        except OSError:
            pass
        finally:
            sock.close()   # the duplicate only; libgearman's fd stays open
    return widened


def to_bytes(value: Union[str, bytes], what: str, allow_empty: bool = False) -> bytes:
    """A NUL-free C string argument, checked before it reaches C."""
    if isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    else:
        raise TypeError("%s must be str or bytes, not %s" % (what, type(value).__name__))
    if b"\0" in data:
        raise ValueError("%s contains a NUL byte" % what)
    if not data and not allow_empty:
        raise ValueError("%s is empty" % what)
    return data


def parse_servers(servers: Union[str, Iterable[str]]) -> List[Server]:
    """libgearman's "h1:4730,h2" form, or a list of "host[:port]"."""
    if isinstance(servers, (bytes, bytearray)):
        servers = servers.decode("utf-8")
    if isinstance(servers, str):
        items = [s for s in servers.split(",")]
    else:
        items = list(servers)
    result = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError("server must be a 'host[:port]' str, not %s" % type(item).__name__)
        item = item.strip()
        if not item:
            raise ValueError("empty server name in %r" % (servers,))
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        elif item.count(":") == 1:
            host, port = item.split(":")
        else:
            host, port = item, ""
        result.append((host, _check_port(int(port) if port else DEFAULT_PORT)))
    if not result:
        raise ValueError("no servers given")
    return result


def _check_port(port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError("port must be an int, not %s" % type(port).__name__)
    if not 0 < port < 65536:
        raise ValueError("port %d is out of range 1..65535" % port)
    return port


def check_timeout(ms: Any) -> int:
    if isinstance(ms, bool) or not isinstance(ms, int):
        if isinstance(ms, float) and ms.is_integer():
            ms = int(ms)
        else:
            raise TypeError("timeout must be an int of milliseconds, not %r" % (ms,))
    if ms < -1:
        raise ValueError("timeout must be -1 (forever) or >= 0 ms, not %d" % ms)
    if ms > 2 ** 31 - 1:
        raise ValueError("timeout %d ms is too large" % ms)
    return ms


class Deadline:
    """When a blocking call must give up; None means never."""

    __slots__ = ("at",)

    def __init__(self, timeout_ms: int) -> None:
        self.at = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000.0

    def slice_ms(self) -> int:
        """How long the next wait may block, 0 once the deadline has passed."""
        if self.at is None:
            return SLICE_MS
        left = self.at - time.monotonic()
        if left <= 0:
            return 0
        return max(1, min(SLICE_MS, int(left * 1000 + 0.999)))


def c_names(prefix: str) -> dict:
    """The C functions a Handle calls, by verb: gearman_client_* or gearman_worker_*."""
    verbs = ("create", "free", "error", "errno", "add_server", "remove_servers",
             "set_timeout", "wait", "set_identifier", "set_log_fn", "echo")
    names = {verb: "%s_%s" % (prefix, verb) for verb in verbs}
    names["prefix"] = prefix
    return names


class Handle:
    """Owns one libgearman client or worker.

    Subclasses name their C functions in ``_C`` (``c_names(prefix)``) and
    supply ``_configure()``.
    """

    _C: dict = {}
    _kind = "object"

    def __init__(self) -> None:
        _lib.load()
        self._ptr = None
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._servers: List[Server] = []
        self._timeout = -1
        self._c_timeout: Optional[int] = None
        self._serializer: Any = JSON
        self._log_cb = None          # the CFUNCTYPE object C may call; kept alive
        self._log_verbose = 0
        self._identifier: Optional[bytes] = None
        self._last_error: Optional[GearmanError] = None
        self._free_queue: Deque[Any] = deque()   # C objects dropped by GC, freed by us
        self._running = False        # inside libgearman's run loop (callbacks fire)
        self._buffers_widened = False   # see widen_socket_buffers
        ptr = getattr(_lib, self._C["create"])(None)
        if not ptr:
            raise error_for(RETURN_CODES["MEMORY_ALLOCATION_FAILURE"],
                            "%s_create failed" % self._C["prefix"])
        self._ptr = ptr
        self._configure()

    # --- ownership -------------------------------------------------------------

    def _configure(self) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def _check_open(self) -> None:
        if self._ptr is None:
            raise ERROR("this %s is closed" % self._kind)

    def _p(self):
        ptr = self._ptr
        if ptr is None:
            raise ERROR("this %s is closed" % self._kind)
        if self._running:
            # libgearman is not re-entrant: its run loop is on the stack.
            raise ERROR("this %s cannot be used from inside its own callbacks"
                        % self._kind)
        if self._free_queue:
            self._drain_free_queue()
        return ptr

    def _drain_free_queue(self) -> None:
        while self._free_queue:
            free_fn, obj = self._free_queue.popleft()
            free_fn(obj)

    def _before_free(self) -> None:
        """Hook: detach what points into the C object before it goes."""

    def close(self) -> None:
        """Free the C object; a second close does nothing."""
        with self._lock:
            if self._ptr is None:
                return
            if self._running:
                raise ERROR("this %s cannot be closed from inside its own callbacks"
                            % self._kind)
            self._before_free()
            self._drain_free_queue()
            ptr, self._ptr = self._ptr, None
            getattr(_lib, self._C["free"])(ptr)
            self._log_cb = None

    def __del__(self, _getpid=os.getpid) -> None:
        # Free only in the process that created it: after fork() the child
        # shares the parent's sockets and must not tear them down.
        try:
            if self._ptr is not None and self._pid == _getpid():
                self.close()
        except Exception:
            pass

    def __enter__(self):
        self._p()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else ",".join(
            "%s:%d" % s for s in self._servers) or "no servers"
        return "<pygear.%s %s>" % (type(self).__name__, state)

    def _fail(self, rc: int, what: str, payload: Any = None) -> GearmanError:
        return self._record(error_for(rc, "%s failed: %s" % (what, self._error_text(rc)), payload))

    def _record(self, exc: GearmanError) -> GearmanError:
        """Remember the error: error() and error_code() answer from it even
        after the C object that saw it was replaced."""
        self._last_error = exc
        return exc

    def _timeout_error(self, what: str) -> GearmanError:
        return self._record(error_for(TIMEOUT, "%s failed: timeout of %d ms reached"
                                      % (what, self._timeout)))

    def _error_text(self, rc: Optional[int] = None) -> str:
        text = None
        if self._ptr is not None:
            raw = getattr(_lib, self._C["error"])(self._ptr)
            if raw:
                text = raw.decode("utf-8", "replace")
        if rc is not None:
            name = _lib.strerror(rc)
            if not text:
                return name
            if name not in text:
                return "%s (%s)" % (text, name)
        return text or ""

    # --- servers -----------------------------------------------------------------

    def add_server(self, host: str = "localhost", port: int = DEFAULT_PORT) -> None:
        if not isinstance(host, str):
            raise TypeError("host must be a str, not %s" % type(host).__name__)
        self._add_servers([(host, _check_port(port))])

    def add_servers(self, servers: Union[str, Iterable[str]]) -> None:
        self._add_servers(parse_servers(servers))

    def _add_servers(self, servers: List[Server]) -> None:
        with self._lock:
            ptr = self._p()
            for host, port in servers:
                to_bytes(host, "host")
            for host, port in servers:
                rc = getattr(_lib, self._C["add_server"])(ptr, host.encode(), port)
                if rc != SUCCESS:
                    raise self._fail(rc, "adding server %s:%d" % (host, port))
                self._servers.append((host, port))
            self._servers_changed()

    def remove_servers(self) -> None:
        with self._lock:
            ptr = self._p()
            self._before_free()
            getattr(_lib, self._C["remove_servers"])(ptr)
            self._servers = []
            self._servers_changed()

    def _servers_changed(self) -> None:
        pass

    # --- timeouts and waiting ----------------------------------------------------

    def set_timeout(self, timeout_ms: int) -> None:
        """Milliseconds a blocking call may wait; -1 waits forever."""
        with self._lock:
            self._p()
            self._timeout = check_timeout(timeout_ms)

    def timeout(self) -> int:
        self._p()
        return self._timeout

    def _set_c_timeout(self, ms: int) -> None:
        if ms != self._c_timeout:
            getattr(_lib, self._C["set_timeout"])(self._ptr, ms)
            self._c_timeout = ms

    def _wait(self, deadline: Deadline, what: str) -> int:
        """Block at most one slice for activity; raise TIMEOUT past the
        deadline.  Returning to Python between slices lets signal handlers
        (KeyboardInterrupt) run."""
        ms = deadline.slice_ms()
        if ms == 0:
            raise self._timeout_error(what)
        self._set_c_timeout(ms)
        if not self._buffers_widened:   # libgearman has connected by now
            self._widen_buffers()
        rc = getattr(_lib, self._C["wait"])(self._ptr)
        if rc == TIMEOUT and deadline.slice_ms() == 0:
            raise self._timeout_error(what)
        return rc

    def _widen_buffers(self) -> None:
        self._buffers_widened = True
        widen_socket_buffers({port for _, port in self._servers})

    # --- settings ---------------------------------------------------------------

    def set_serializer(self, serializer: Any) -> None:
        check_serializer(serializer)
        self._p()
        self._serializer = serializer

    def set_identifier(self, identifier: Union[str, bytes]) -> None:
        data = to_bytes(identifier, "identifier")
        if len(data) > _lib.MAX_IDENTIFIER or any(c in data for c in b" \t\r\n"):
            raise ValueError("identifier must be at most %d bytes without whitespace"
                             % _lib.MAX_IDENTIFIER)
        with self._lock:
            rc = getattr(_lib, self._C["set_identifier"])(self._p(), data, len(data))
            if rc != SUCCESS:
                raise self._fail(rc, "setting the identifier")
            self._identifier = data

    def set_log_fn(self, fn: Callable[[str], Any], verbose: Union[int, str] = "INFO") -> None:
        """Send libgearman's log lines at ``verbose`` level and above to fn(line)."""
        if not callable(fn):
            raise TypeError("log function must be callable")
        if isinstance(verbose, str):
            try:
                verbose = _lib.VERBOSE_NAMES.index(verbose.upper())
            except ValueError:
                raise ValueError("verbose must be one of %s" % (_lib.VERBOSE_NAMES,))
        if isinstance(verbose, bool) or not isinstance(verbose, int) or \
                not 0 <= verbose < len(_lib.VERBOSE_NAMES):
            raise ValueError("verbose must be 0..%d" % (len(_lib.VERBOSE_NAMES) - 1))

        def log_line(line, level, context):
            # Never let an exception cross the C frame: a failing logger is muted.
            try:
                fn(line.decode("utf-8", "replace") if line else "")
            except BaseException:
                pass

        with self._lock:
            ptr = self._p()
            cb = _lib.log_fn(log_line)
            getattr(_lib, self._C["set_log_fn"])(ptr, cb, None, verbose)
            self._log_cb = cb   # replaced only after C holds the new one
            self._log_verbose = verbose

    def echo(self, data: Union[str, bytes]) -> None:
        """Ping every server with ``data``; raises when one does not echo it."""
        payload = data.encode("utf-8") if isinstance(data, str) else data
        if not isinstance(payload, (bytes, bytearray)):
            raise TypeError("echo data must be str or bytes")
        payload = bytes(payload)
        with self._lock:
            ptr = self._p()
            self._set_c_timeout(self._timeout)
            rc = getattr(_lib, self._C["echo"])(ptr, payload or None, len(payload))
            if rc != SUCCESS:
                raise self._fail(rc, "echo")

    def error(self) -> Optional[str]:
        """The text of the last error (like libgearman, kept after successes)."""
        self._p()
        if self._last_error is not None:
            return str(self._last_error)
        return self._error_text() or None

    def errno(self) -> int:
        return getattr(_lib, self._C["errno"])(self._p())

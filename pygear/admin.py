"""Admin client for gearmand's text protocol, over plain sockets.

Needs no libgearman, so it works wherever Python does.  One connection is
opened lazily and kept; any failure other than a server ``ERR`` reply closes
it (the stream may be out of step), and the next call reconnects.
"""
from __future__ import annotations

import re
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import unquote_plus

from ._args import DEFAULT_PORT, parse_servers
from .errors import (COULD_NOT_CONNECT, ERROR, GETADDRINFO, LOST_CONNECTION,
                     TIMEOUT, GearmanError)

__all__ = ["Admin", "parse_address"]

# How a command is answered: "OK", "OK <value>", or rows up to ".".
_OK, _VALUE, _ROWS = "ok", "value", "rows"

# gearmand's "create function" drops the last two bytes of the name, assuming
# a CRLF terminator (a bare LF would turn "newf" into "new"); gearadmin sends
# CRLF too.
_EOL = b"\r\n"
# A server that never sends a newline must not exhaust memory.
_MAX_LINE = 16 * 1024 * 1024
_RECV_SIZE = 65536
_MAX_QUEUE = 2 ** 31 - 1   # gearmand reads the size with atoi()
_FORBIDDEN = re.compile(r"[\s\x00]")
_ERR_CODE = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_WORKER_ROW = re.compile(r"(\S+) (\S+) (.*?) :((?: .*)?)\Z", re.DOTALL)


def _decode(raw: bytes) -> str:
    # surrogateescape: a function name that is not UTF-8 still round-trips.
    return raw.decode("utf-8", "surrogateescape")


def _check_name(what: str, value: object) -> str:
    """A function name or job handle, safe to put on one command line."""
    if not isinstance(value, str):
        raise TypeError("%s must be a str, not %s" % (what, type(value).__name__))
    if not value:
        raise ValueError("%s must not be empty" % what)
    if _FORBIDDEN.search(value):
        raise ValueError("%s %r contains whitespace, CR, LF or NUL" % (what, value))
    return value


def _int(field: str, line: str) -> int:
    if not (field.isascii() and field.isdigit()):
        raise _malformed(line)
    return int(field)


def _malformed(line: str) -> ERROR:
    return ERROR("malformed reply from gearmand: %r" % line)


def _server_error(command: str, line: str) -> ERROR:
    """``ERR <CODE> <url+encoded+text>``; some replies (``drop function``)
    carry plain text and no code, so then the code is None."""
    rest = line[4:] if line.startswith("ERR ") else ""
    code, _, text = rest.partition(" ")
    if not _ERR_CODE.match(code):
        code, text = "", rest
    text = unquote_plus(text)
    detail = " ".join(part for part in (code, text) if part) or "ERR"
    return ERROR("gearmand refused %r: %s" % (command, detail),
                 server_code=code or None, text=text)


def _parse_status(row: str) -> Dict[str, Union[str, int]]:
    # rsplit: the function name is the only field that could hold a tab.
    fields = row.rsplit("\t", 3)
    if len(fields) != 4 or not fields[0]:
        raise _malformed(row)
    return {"function": fields[0], "total": _int(fields[1], row),
            "running": _int(fields[2], row),
            "available_workers": _int(fields[3], row)}


def _parse_worker(row: str) -> Dict[str, Union[str, List[str]]]:
    # "<fd> <ip> <client id> :< function>*"; the client id may hold spaces.
    match = _WORKER_ROW.match(row)
    if match is None:
        raise _malformed(row)
    fd, ip, client_id, functions = match.groups()
    return {"fd": fd, "ip_address": ip, "client_id": client_id,
            "functions": functions[1:].split(" ") if functions else []}


def _parse_job(row: str) -> Dict[str, Union[str, int]]:
    fields = row.split("\t")
    if len(fields) != 4 or not fields[0]:
        raise _malformed(row)
    return {"handle": fields[0], "retries": _int(fields[1], row),
            "ignore_job": _int(fields[2], row),
            "job_queued": _int(fields[3], row)}


def _parse_unique(row: str) -> str:
    # Later gearmands append "\t<handle>"; 1.1.20 sends the key alone.
    return row.partition("\t")[0]


def describe_connect_error(exc: BaseException, host: str) -> str:
    """Why a connection to ``host`` failed, in words, with what to check."""
    if isinstance(exc, socket.gaierror):
        return "unknown host %r (%s; check the name)" % (host, exc.strerror or exc)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is gearmand running there, on that port?)"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "no answer in time (a firewall, or the wrong host?)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _port_text(address: str) -> Optional[str]:
    """The port part of ``host:port`` or ``[v6]:port`` as parse_servers
    reads it; None when there is none (``host``, a bare IPv6 address)."""
    if address.startswith("["):
        rest = address.partition("]")[2]
        return rest[1:] if rest.startswith(":") else None
    if address.count(":") == 1:
        return address.partition(":")[2]
    return None


def parse_address(address: str) -> Tuple[str, int]:
    """One job server as ``"host"``, ``"host:port"``, ``"[v6]:port"`` or a
    bare IPv6 address -> ``(host, port)``.

    The ValueError for a bad one says what is wrong with it in words (the
    same words for the Admin and the ``pygear`` command line)."""
    if not isinstance(address, str):
        raise TypeError("a server address must be a 'host:port' str, not %s"
                        % type(address).__name__)
    text = address.strip()
    problem = None
    host, port = "", DEFAULT_PORT
    if not text:
        problem = "it is empty"
    elif "," in text:
        problem = "it names several servers, give one"
    else:
        try:
            [(host, port)] = parse_servers([text])
        except ValueError as exc:
            given: Optional[str] = _port_text(text) or ""
            if str(exc).startswith("no host"):
                given = None
            if given is None:
                problem = "no host before the port"
            else:
                try:
                    problem = "port %d is out of range 1-65535" % int(given)
                except ValueError:
                    problem = "the port %r is not a number" % given
        else:
            if not host:
                problem = "no host before the port"
    if problem is not None:
        raise ValueError("%r is not a server address: %s (write host:port, "
                         "e.g. localhost:4730)" % (address, problem))
    return host, port


class Admin:
    """A connection to one gearmand's admin (text) protocol.

    ``Admin("localhost", 4730)``, ``Admin("localhost:4730")`` and
    ``Admin("[::1]:4730")`` (also a list holding one such string, as
    python-gearman takes) all name one server; without a port, 4730.
    ``timeout`` (seconds, or None to wait forever) bounds each call as a
    whole: connecting, sending and reading the full reply.
    """

    def __init__(self, host: Union[str, Sequence[str]] = "localhost",
                 port: Optional[int] = None, timeout: Optional[float] = 60.0) -> None:
        if isinstance(host, (list, tuple)):
            if len(host) != 1:
                raise ValueError("an Admin talks to one server; give one 'host:port', "
                                 "not %d (use one Admin per server)" % len(host))
            host = host[0]
        if not isinstance(host, str) or not host.strip():
            raise TypeError("host must be a non-empty str such as 'localhost' or "
                            "'localhost:4730', not %r" % (host,))
        given = host
        has_port = bool(_port_text(given.strip()))
        host, parsed_port = parse_address(given)
        if port is None:
            port = parsed_port
        elif isinstance(port, bool) or not isinstance(port, int):
            raise TypeError("port must be an int such as 4730, not %s %r (or give "
                            "'host:port' as the first argument)"
                            % (type(port).__name__, port))
        elif not 0 < port < 65536:
            raise ValueError("port %d is out of range 1-65535" % port)
        elif has_port and port != parsed_port:
            raise ValueError("two ports given: %d in %r and port=%d; give one"
                             % (parsed_port, given, port))
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError("timeout must be a number of seconds or None")
            if not timeout > 0:
                raise ValueError("timeout must be positive, not %r" % timeout)
        self.host = host
        self.port = port
        self.timeout = timeout
        self._sock: Optional[socket.socket] = None
        self._buf = bytearray()
        self._lock = threading.RLock()

    # -- the commands -----------------------------------------------------

    def status(self) -> List[Dict[str, Union[str, int]]]:
        """One row per function the server knows, workers or not."""
        return self._call("status", _ROWS, _parse_status)

    def workers(self) -> List[Dict[str, Union[str, List[str]]]]:
        """Every connection (this one too), with the functions it can do."""
        return self._call("workers", _ROWS, _parse_worker)

    def show_jobs(self) -> List[Dict[str, Union[str, int]]]:
        """``show jobs``: [{"handle", "retries", "ignore_job", "job_queued"}]."""
        return self._call("show jobs", _ROWS, _parse_job)

    def show_unique_jobs(self) -> List[str]:
        """``show unique jobs``: the unique keys of queued jobs."""
        return self._call("show unique jobs", _ROWS, _parse_unique)

    def version(self) -> str:
        """``version``: gearmand's version string."""
        return self._call("version", _VALUE, str)

    def verbose(self) -> str:
        """The server's verbosity level, e.g. ``"ERROR"``."""
        return self._call("verbose", _VALUE, str)

    def getpid(self) -> int:
        """``getpid``: the gearmand process id."""
        return self._call("getpid", _VALUE, lambda value: _int(value, "OK " + value))

    def maxqueue(self, function_name: str, max_queue_size: int) -> bool:
        """Cap the queue of ``function_name``.  gearmand answers OK even for a
        function it does not know, and then ignores the cap."""
        _check_name("function name", function_name)
        if isinstance(max_queue_size, bool) or not isinstance(max_queue_size, int):
            raise TypeError("max_queue_size must be an int, not %s"
                            % type(max_queue_size).__name__)
        if not 0 <= max_queue_size <= _MAX_QUEUE:
            raise ValueError("max_queue_size must be in 0..%d" % _MAX_QUEUE)
        return self._call("maxqueue %s %d" % (function_name, max_queue_size), _OK)

    def shutdown(self, graceful: bool = False) -> bool:
        """Ask the server to stop.  Debian's gearmand 1.1.20 refuses with
        ``ERR UNKNOWN_COMMAND``, raised as ``pygear.ERROR``."""
        result = self._call("shutdown graceful" if graceful else "shutdown", _OK)
        self.close()  # a server that agreed is going away
        return result

    def cancel_job(self, job_handle: str) -> bool:
        """``cancel job HANDLE``: gearmand marks the queued job ignored (it is never run)."""
        return self._call("cancel job %s" % _check_name("job handle", job_handle), _OK)

    def create_function(self, name: str) -> bool:
        """``create function NAME``: gearmand knows the function before any worker does."""
        return self._call("create function %s" % _check_name("function name", name), _OK)

    def drop_function(self, name: str) -> bool:
        """Forget an idle function; refused while it has workers or running jobs."""
        return self._call("drop function %s" % _check_name("function name", name), _OK)

    # -- connection -------------------------------------------------------

    def close(self) -> None:
        """Close the connection; the next command opens a new one."""
        sock, self._sock = self._sock, None
        self._buf.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> "Admin":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()

    def __repr__(self) -> str:
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "<pygear.Admin %s:%d %s>" % (
            host, self.port, "connected" if self._sock is not None else "idle")

    def _address(self) -> str:
        return "[%s]:%d" % (self.host, self.port) if ":" in self.host \
            else "%s:%d" % (self.host, self.port)

    def _remaining(self, deadline: Optional[float], command: str) -> Optional[float]:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise TIMEOUT("%r to gearmand at %s timed out after %gs"
                          % (command, self._address(), self.timeout or 0))
        return left

    def _connect(self, deadline: Optional[float], command: str) -> socket.socket:
        try:
            infos = socket.getaddrinfo(self.host, self.port, socket.AF_UNSPEC,
                                       socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise GETADDRINFO("cannot connect to gearmand at %s: %s"
                              % (self._address(), describe_connect_error(exc, self.host))
                              ) from exc
        failures: List[str] = []
        last: Optional[OSError] = None
        for family, type_, proto, _, sockaddr in infos:
            remaining = self._remaining(deadline, command)
            sock = socket.socket(family, type_, proto)
            try:
                sock.settimeout(remaining)
                sock.connect(sockaddr)
            except socket.timeout as exc:
                sock.close()
                raise TIMEOUT("connecting to gearmand at %s timed out after %gs"
                              % (self._address(), self.timeout or 0)) from exc
            except OSError as exc:
                sock.close()
                failures.append("%s: %s" % (sockaddr[0], describe_connect_error(exc, self.host)))
                last = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        # One reason when every address failed alike ("localhost": ::1 and
        # 127.0.0.1), else each.  The last OSError is the cause.
        reasons = {f.partition(": ")[2] for f in failures}
        detail = reasons.pop() if len(reasons) == 1 else "; ".join(failures) or "no address"
        raise COULD_NOT_CONNECT("cannot connect to gearmand at %s: %s"
                                % (self._address(), detail)) from last

    # -- one exchange -----------------------------------------------------

    def _call(self, command: str, reply: str, parse: Callable[[str], Any] = str) -> Any:
        with self._lock:
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            try:
                if self._sock is None:
                    self._sock = self._connect(deadline, command)
                self._sock.settimeout(self._remaining(deadline, command))
                self._sock.sendall(command.encode("utf-8", "surrogateescape") + _EOL)
                if reply == _ROWS:
                    return [parse(row) for row in self._read_rows(command, deadline)]
                value = self._read_ok(command, deadline, required=reply == _VALUE)
                return True if reply == _OK else parse(value)
            except ERROR as exc:
                # A server ERR line leaves the stream in step; a reply we could
                # not parse (no text) may not have.
                if exc.text is None:
                    self.close()
                raise
            except GearmanError:
                self.close()
                raise
            except socket.timeout as exc:
                self.close()
                raise TIMEOUT("%r to gearmand at %s timed out after %gs"
                              % (command, self._address(), self.timeout or 0)) from exc
            except OSError as exc:
                self.close()
                raise LOST_CONNECTION("connection to gearmand at %s failed during %r: %s"
                                      % (self._address(), command, exc)) from exc
            except BaseException:
                self.close()
                raise

    def _readline(self, command: str, deadline: Optional[float]) -> str:
        """One reply line without its LF or CRLF, however the bytes arrive."""
        assert self._sock is not None
        scanned = 0
        while True:
            end = self._buf.find(b"\n", scanned)
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[:end + 1]
                return _decode(line[:-1] if line.endswith(b"\r") else line)
            if len(self._buf) > _MAX_LINE:
                raise _malformed(_decode(bytes(self._buf[:80])) + "...")
            scanned = len(self._buf)
            self._sock.settimeout(self._remaining(deadline, command))
            chunk = self._sock.recv(_RECV_SIZE)
            if not chunk:
                partial = " after %r" % _decode(bytes(self._buf)) if self._buf else ""
                raise LOST_CONNECTION("gearmand at %s closed the connection mid-reply%s"
                                      % (self._address(), partial))
            self._buf += chunk

    def _read_ok(self, command: str, deadline: Optional[float], required: bool) -> str:
        """``OK`` or ``OK <value>``; returns the value."""
        line = self._readline(command, deadline)
        if line == "OK" and not required:
            return ""
        if line.startswith("OK ") and (line[3:] or not required):
            return line[3:]
        if line == "ERR" or line.startswith("ERR "):
            raise _server_error(command, line)
        raise _malformed(line)

    def _read_rows(self, command: str, deadline: Optional[float]) -> List[str]:
        """The rows of a listing, up to its lone ``.`` line."""
        rows: List[str] = []
        while True:
            line = self._readline(command, deadline)
            if line == ".":
                return rows
            if not rows and (line == "ERR" or line.startswith("ERR ")):
                raise _server_error(command, line)
            rows.append(line)

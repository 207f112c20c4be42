"""Checking what the caller passes, before anything reaches C.

Everything that crosses into C is copied into an exact ``bytes`` first: a
``str`` or ``bytes`` subclass may override ``encode``, ``__bytes__`` or
``__len__``, and C must never be handed a length that is not the buffer's.
"""
from __future__ import annotations

from typing import Any, Iterable, List, Optional, Tuple, Union

from . import _lib

DEFAULT_PORT = 4730
Server = Tuple[str, int]
Name = Union[str, bytes]


def exact_bytes(value: Any, what: str) -> bytes:
    """``value`` (str, bytes-like) as an exact bytes object."""
    if isinstance(value, str):
        return str.encode(value, "utf-8")       # never a subclass's encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(memoryview(value))          # never a subclass's __bytes__
    raise TypeError("%s must be str or bytes, not %s" % (what, type(value).__name__))


def c_string(value: Any, what: str, allow_empty: bool = False,
             limit: Optional[int] = None) -> bytes:
    """A NUL-free C string argument."""
    data = exact_bytes(value, what)
    if b"\0" in data:
        raise ValueError("%s contains a NUL byte" % what)
    if not data and not allow_empty:
        raise ValueError("%s is empty" % what)
    if limit is not None and len(data) >= limit:
        raise ValueError("%s is %d bytes; libgearman allows at most %d"
                         % (what, len(data), limit - 1))
    return data


def function_name(value: Any) -> bytes:
    return c_string(value, "function name", limit=_lib.FUNCTION_MAX_SIZE)


def unique_key(value: Any) -> Optional[bytes]:
    if value is None:
        return None
    return c_string(value, "unique key", limit=_lib.MAX_UNIQUE_SIZE)


def job_handle(value: Any) -> bytes:
    return c_string(value, "job handle", limit=_lib.JOB_HANDLE_SIZE)


def identifier(value: Any) -> bytes:
    data = c_string(value, "identifier")
    if len(data) > _lib.MAX_IDENTIFIER or any(c in data for c in b" \t\r\n"):
        raise ValueError("identifier must be at most %d bytes without whitespace"
                         % _lib.MAX_IDENTIFIER)
    return data


def check_port(port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError("port must be an int, not %s" % type(port).__name__)
    if not 0 < port < 65536:
        raise ValueError("port %d is out of range 1..65535" % port)
    return port


def check_host(host: Any) -> str:
    if not isinstance(host, str):
        raise TypeError("host must be a str, not %s" % type(host).__name__)
    c_string(host, "host")
    return str(host)


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
    return int(ms)


def parse_servers(servers: Union[str, bytes, Iterable[str]]) -> List[Server]:
    """libgearman's "h1:4730,h2" form, or a list of "host[:port]"; IPv6 as "[::1]:4730"."""
    if isinstance(servers, (bytes, bytearray)):
        servers = bytes(servers).decode("utf-8")
    items = str(servers).split(",") if isinstance(servers, str) else list(servers)
    result: List[Server] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError("server must be a 'host[:port]' str, not %s" % type(item).__name__)
        text = item.strip()
        if not text:
            raise ValueError("empty server name in %r" % (servers,))
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        elif text.count(":") == 1:
            host, port = text.split(":")
        else:
            host, port = text, ""
        if not host:
            raise ValueError("no host in server %r" % text)
        if port and not port.isdigit():
            raise ValueError("bad port %r in server %r: a port is a number from 1 to 65535"
                             % (port, text))
        result.append((check_host(host), check_port(int(port) if port else DEFAULT_PORT)))
    if not result:
        raise ValueError("no servers given")
    return result

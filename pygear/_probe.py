"""Is this server a Gearman job server?  Asked over a plain socket before
libgearman is let near it.

libgearman's parser segfaults on replies that are not Gearman
(_workarounds.NON_GEARMAN_PEER): a client pointed at memcached's port dies.
So before any C handle connects to a server, pygear sends the server an
ECHO_REQ itself and reads the ECHO_RES: a server that refuses, stays
silent past the connect timeout, or answers with anything else gets a clear
error and never meets libgearman.  The round trip also measures the
server's latency.

A ``Probe`` is a step for the one wait loop (_wait.drive): it waits at most
one slice at a time, so Ctrl-C, the caller's timeout and close() from
another thread work as in every other blocking call.
"""
from __future__ import annotations

import os
import select
import socket
import struct
import time
from typing import List, Optional, Tuple

from ._wait import WAITING
from .errors import RETURN_CODES, GearmanError, error_for

_ECHO_REQ, _ECHO_RES, _ERROR = 16, 17, 19
_HEADER = struct.Struct(">4sII")


def format_server(server: Tuple[str, int]) -> str:
    host, port = server
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


class Probe:
    """One echo round trip to ``server``; ``step`` returns its latency in
    seconds once the answer is in, raises a GearmanError saying what is wrong."""

    def __init__(self, server: Tuple[str, int], payload: Optional[bytes] = None) -> None:
        self.server = server
        self.name = format_server(server)
        self._payload = payload if payload is not None else \
            b"pygear-probe-" + os.urandom(6).hex().encode()
        self._request = _HEADER.pack(b"\0REQ", _ECHO_REQ, len(self._payload)) + self._payload
        self._expect = _HEADER.size + len(self._payload)
        self._addrs: Optional[List[tuple]] = None
        self._sock: Optional[socket.socket] = None
        self._connected = False
        self._sent = 0
        self._reply = b""
        self._started = 0.0
        self._failures: List[str] = []

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _fail(self, name: str, message: str) -> GearmanError:
        self.close()
        return error_for(RETURN_CODES[name], message)

    def _next_address(self) -> None:
        host, port = self.server
        if self._addrs is None:
            try:
                self._addrs = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise self._fail("GETADDRINFO", "cannot find the job server %s: %s"
                                 % (self.name, exc.strerror or exc))
        self.close()
        if not self._addrs:
            raise self._fail("COULD_NOT_CONNECT", "cannot connect to the job server %s: %s"
                             % (self.name, "; ".join(self._failures) or "no address"))
        family, kind, proto, _, addr = self._addrs.pop(0)
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        self._sock, self._connected, self._sent, self._reply = sock, False, 0, b""
        self._started = time.monotonic()
        err = sock.connect_ex(addr)
        if err == 0:
            self._connected = True
        elif err not in (getattr(os, "EINPROGRESS", 115), getattr(os, "EWOULDBLOCK", 11)):
            self._failures.append(os.strerror(err))
            self._next_address()

    def step(self, ms: int):
        """Advance the echo, waiting at most ``ms``."""
        if self._sock is None:
            self._next_address()
        sock = self._sock
        assert sock is not None
        events = select.POLLOUT if not self._connected or self._sent < len(self._request) \
            else select.POLLIN
        poller = select.poll()
        poller.register(sock, events)
        if not poller.poll(ms):
            return WAITING
        if not self._connected:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._failures.append(os.strerror(err))
                self._next_address()     # raises when no address is left
                return WAITING
            self._connected = True
        try:
            if self._sent < len(self._request):
                self._sent += sock.send(self._request[self._sent:])
                return WAITING           # the next step waits for the answer
            chunk = sock.recv(self._expect - len(self._reply))
        except (BlockingIOError, InterruptedError):
            return WAITING
        except OSError as exc:
            raise self._fail("COULD_NOT_CONNECT", "cannot talk to the job server %s: %s"
                             % (self.name, exc.strerror or exc))
        if not chunk:
            raise self._fail("LOST_CONNECTION", "the job server %s closed the connection "
                             "before answering an echo request" % self.name)
        self._reply += chunk
        if len(self._reply) >= 4 and self._reply[:4] != b"\0RES"[:len(self._reply)]:
            raise self._not_gearman()
        if len(self._reply) < self._expect:
            if len(self._reply) >= _HEADER.size:
                self._check_header()
            return WAITING
        self._check_header()
        if self._reply[_HEADER.size:] != self._payload:
            raise self._not_gearman()
        rtt = time.monotonic() - self._started
        self.close()
        return rtt

    def _check_header(self) -> None:
        magic, command, size = _HEADER.unpack(self._reply[:_HEADER.size])
        if magic != b"\0RES" or command != _ECHO_RES or size != len(self._payload):
            if magic == b"\0RES" and command == _ERROR:
                raise self._fail("SERVER_ERROR", "the job server %s refused an echo request: %r"
                                 % (self.name, self._reply[_HEADER.size:]))
            raise self._not_gearman()

    def _not_gearman(self) -> GearmanError:
        return self._fail("INVALID_MAGIC", "%s is not a Gearman job server: it answered %r "
                          "to an echo request (wrong port?)" % (self.name, self._reply[:40]))

    def timeout_error(self, ms: int) -> GearmanError:
        return self._fail("COULD_NOT_CONNECT", "the job server %s did not answer within %d ms"
                          % (self.name, ms))

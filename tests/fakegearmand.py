"""A job server that misbehaves on purpose, for the tests of what pygear
does when a server stalls or is not Gearman at all.

``FakeGearmand(mode)`` listens on a free loopback port and serves each
connection in a thread of the test process.  It speaks just enough of the
Gearman binary protocol: it answers the first ``echoes`` ECHO_REQs (pygear
checks every server with one before libgearman connects) and OPTION_REQ
(unless ``options=False``), then misbehaves as ``mode`` says:

- ``"silent"``: reads everything, answers nothing more;
- ``"stall_assign"``: answers a grab with the first ``cut`` bytes of a
  JOB_ASSIGN, and never the rest;
- ``"split_assign"``: sends the rest ``gap`` seconds later;
- ``"stall_result"``: answers a grab with a whole JOB_ASSIGN, then stops
  reading that connection (a large WORK_COMPLETE never gets out);
- ``"garbage"``: answers every read with ``garbage`` (memcached's
  ``ERROR\\r\\n``, random bytes, a packet with an unknown command), echoes
  included unless ``echoes`` says otherwise.

With ``idle_grabs=n`` the first n grabs get NO_JOB (and the worker's
PRE_SLEEP a NOOP, ``wake_after`` s later) before a job is assigned.

``events`` lists what it did, in order ("echo", "ignored ECHO_REQ",
"stalled assign", "split assign", "stopped reading", "garbage"), and
``received`` the commands it read; ``wait_event`` waits for an event.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from typing import List, Optional

HEADER = struct.Struct(">4sII")
CAN_DO, PRE_SLEEP, NOOP, GRAB_JOB, NO_JOB, JOB_ASSIGN = 1, 4, 6, 9, 10, 11
ECHO_REQ, ECHO_RES, OPTION_REQ, OPTION_RES = 16, 17, 26, 27
GRAB_JOB_UNIQ, JOB_ASSIGN_UNIQ, GRAB_JOB_ALL, JOB_ASSIGN_ALL = 30, 31, 39, 40

MEMCACHED_ERROR = b"ERROR\r\n"
UNKNOWN_COMMAND = HEADER.pack(b"\0RES", 0xFFFFFFFF, 4) + b"abcd"


def packet(command: int, body: bytes = b"") -> bytes:
    return HEADER.pack(b"\0RES", command, len(body)) + body


def assignment(reply: int, function: bytes) -> bytes:
    """A JOB_ASSIGN* body: handle, function, [unique, [reducer,]] workload."""
    fields = [b"H:fake:1", function]
    if reply != JOB_ASSIGN:
        fields.append(b"fake-unique")
    if reply == JOB_ASSIGN_ALL:
        fields.append(b"")
    return b"\0".join(fields) + b"\0" + b'"workload"'


class FakeGearmand:
    def __init__(self, mode: str, echoes: Optional[int] = None, garbage: bytes = b"",
                 options: bool = True, cut: int = HEADER.size + 4, gap: float = 0.0,
                 idle_grabs: int = 0, wake_after: float = 0.0) -> None:
        assert mode in ("silent", "stall_assign", "split_assign", "stall_result",
                        "garbage"), mode
        self.mode = mode
        self.cut, self.gap = cut, gap      # where an assignment stops (for ``gap`` s)
        self.idle_grabs = idle_grabs       # grabs answered NO_JOB (then NOOP) first
        self.wake_after = wake_after       # seconds before that NOOP
        self.grabs = 0
        self.options = options       # whether OPTION_REQ is answered
        self.garbage = garbage
        # how many ECHO_REQs it answers (None: all)
        self.echoes_left = echoes if echoes is not None else (0 if mode == "garbage" else None)
        self.events: List[str] = []
        self.received: List[int] = []       # the commands read, in order
        self._changed = threading.Condition()
        self._conns: List[socket.socket] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # small buffers, so that a client's large packet fills them at once
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.host, self.port = self._sock.getsockname()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return "%s:%d" % (self.host, self.port)

    def close(self) -> None:
        self._closed = True
        for sock in [self._sock] + self._conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def __enter__(self) -> "FakeGearmand":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _event(self, what: str) -> None:
        with self._changed:
            self.events.append(what)
            self._changed.notify_all()

    def wait_event(self, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while what not in self.events:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the fake server never saw %r (it saw %r; commands %r)"
                                         % (what, self.events, self.received))
                self._changed.wait(left)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= HEADER.size:
                    magic, command, size = HEADER.unpack(buf[:HEADER.size])
                    if self.mode == "garbage" and not (command == ECHO_REQ and self._echo_left()):
                        self._event("garbage")
                        conn.sendall(self.garbage)
                        buf = b""
                        break
                    if len(buf) < HEADER.size + size:
                        break
                    body, buf = buf[HEADER.size:HEADER.size + size], buf[HEADER.size + size:]
                    if not self._answer(conn, command, body):
                        return self._stop_reading(conn)
        except OSError:
            return

    def _echo_left(self) -> bool:
        return self.echoes_left is None or self.echoes_left > 0

    def _answer(self, conn: socket.socket, command: int, body: bytes) -> bool:
        """Answer one packet; False: stop reading this connection."""
        self.received.append(command)
        if command == ECHO_REQ:
            if self._echo_left():
                if self.echoes_left is not None:
                    self.echoes_left -= 1
                conn.sendall(packet(ECHO_RES, body))
                self._event("echo")
            else:
                self._event("ignored ECHO_REQ")
        elif command == OPTION_REQ:
            if self.options:
                conn.sendall(packet(OPTION_RES, body))
            else:
                self._event("ignored OPTION_REQ")
        elif command == CAN_DO:
            self.function = body.split(b"\0")[0]
        elif command in (GRAB_JOB, GRAB_JOB_UNIQ, GRAB_JOB_ALL) and self.mode != "silent":
            self.grabs += 1
            if self.grabs <= self.idle_grabs:
                conn.sendall(packet(NO_JOB))       # the worker sleeps: PRE_SLEEP
                return True
            reply = {GRAB_JOB: JOB_ASSIGN, GRAB_JOB_UNIQ: JOB_ASSIGN_UNIQ,
                     GRAB_JOB_ALL: JOB_ASSIGN_ALL}[command]
            whole = packet(reply, assignment(reply, getattr(self, "function", b"f")))
            if self.mode == "stall_assign":
                conn.sendall(whole[:self.cut])
                self._event("stalled assign")
            elif self.mode == "split_assign":
                conn.sendall(whole[:self.cut])
                time.sleep(self.gap)
                conn.sendall(whole[self.cut:])
                self._event("split assign")
            else:
                conn.sendall(whole)
                return False                       # stall_result
        elif command == PRE_SLEEP and self.grabs <= self.idle_grabs and self.mode != "silent":
            time.sleep(self.wake_after)
            conn.sendall(packet(NOOP))             # wake it: a job is there now
        return True

    def _stop_reading(self, conn: socket.socket) -> None:
        self._event("stopped reading")
        while not self._closed:
            time.sleep(0.05)   # the connection stays open, and unread

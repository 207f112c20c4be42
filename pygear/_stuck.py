"""Breaking a worker out of a C call that would never return.

Two libgearman calls can block forever whatever their timeout: a job reply
(``_job_send`` in libgearman/job.cc retries on TIMEOUT until the packet is
out, so a server that stopped reading holds it) and a receive stuck on a
packet the server never finishes.  Signals are blocked meanwhile, and even
unblocked, ``gearman_wait`` retries poll() on EINTR.

Each C worker is watched from its creation (``watch``) to its end; around
each C call the Worker stamps it (``Watched.since``, ``.deadline``: plain
attribute stores, as this is on every job's path), and clears ``since``
while the job function runs (user code is never counted).  The watchdog
thread looks every 50 ms: when a watched call has run past its deadline,
while a close() from another thread waits, or while a signal is pending
(Ctrl-C the call holds back), it shuts the socket down (pygear/_sockets.py
found it): libgearman fails the call with LOST_CONNECTION, the worker drops
that C worker, and gearmand gives the job to another worker.
"""
from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import time
import weakref
from typing import Any, Optional

from . import _signals

_PERIOD = 0.05
_GRACE = 0.1          # past the deadline, or a signal held this long, before acting


class Watched:
    """What the watchdog knows of one C worker."""

    __slots__ = ("fd", "gate", "since", "deadline", "pending_since", "__weakref__")

    def __init__(self, gate: Any) -> None:
        self.gate = gate
        self.fd: Optional[int] = None           # its socket, once adopted
        self.since: Optional[float] = None      # in a C call since (None: not)
        self.deadline: Optional[float] = None   # that call's deadline (monotonic)
        self.pending_since: Optional[float] = None


_watched: "weakref.WeakSet[Watched]" = weakref.WeakSet()
_thread: Optional[threading.Thread] = None
_start_lock = threading.Lock()


def watch(gate: Any) -> Watched:
    """A new C worker: watched for as long as its Watched lives."""
    global _thread
    w = Watched(gate)
    _watched.add(w)
    if _thread is None:
        with _start_lock:
            if _thread is None:
                _thread = threading.Thread(target=_run, name="pygear-watchdog", daemon=True)
                _thread.start()
    return w


def _signal_pending() -> bool:
    try:
        pending = signal.sigpending()
    except (AttributeError, OSError):
        return False
    return any(signal.getsignal(sig) not in (signal.SIG_DFL, signal.SIG_IGN, None)
               for sig in pending)


def _shut(fd: int) -> None:
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        # no lingering over what the server never read: libgearman's own
        # close() would otherwise wait up to its SO_LINGER time
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def _run() -> None:
    _signals.block_forever()
    while True:
        time.sleep(_PERIOD)
        busy = [w for w in list(_watched) if w.since is not None and w.fd is not None]
        if not busy:
            continue
        now = time.monotonic()
        pending = _signal_pending()
        for w in busy:
            if pending:
                if w.pending_since is None:
                    w.pending_since = now
            else:
                w.pending_since = None
            late = w.deadline is not None and now > w.deadline + _GRACE
            held = w.pending_since is not None and now - w.pending_since > _GRACE
            if late or held or getattr(w.gate, "close_requested", False):
                fd, w.fd = w.fd, None      # once is enough: the C worker is dropped after
                if fd is not None:
                    _shut(fd)

"""Breaking a worker out of a C call that would never return.

Two libgearman calls can block forever whatever their timeout: a job reply
(``_job_send`` in libgearman/job.cc retries on TIMEOUT until the packet is
out, so a server that stopped reading holds it) and a receive stuck on a
packet the server never finishes.  Signals are blocked meanwhile, and even
unblocked, ``gearman_wait`` retries poll() on EINTR.

The watchdog thread below watches each such call of a worker's C handle,
with the socket it uses (pygear/_sockets.py).  When the call's deadline has
passed, a close() from another thread is waiting, or a signal is pending
(Ctrl-C while the call holds it back), it shuts the socket down: libgearman
then fails the call with LOST_CONNECTION, the worker drops that C handle,
and gearmand gives the job to another worker.  Time spent in the job
function itself (user code) is never counted.
"""
from __future__ import annotations

import itertools
import os
import signal
import socket
import threading
import time
from typing import Any, Dict, Optional

from . import _signals

_PERIOD = 0.05
_GRACE = 0.1          # past the deadline before the socket is shut


class _Call:
    __slots__ = ("fd", "deadline", "gate", "paused", "pending_since")

    def __init__(self, fd: int, deadline: Optional[float], gate: Any) -> None:
        self.fd, self.deadline, self.gate = fd, deadline, gate
        self.paused = False
        self.pending_since: Optional[float] = None


_calls: Dict[int, _Call] = {}
_ids = itertools.count(1)
_wake = threading.Event()
_thread: Optional[threading.Thread] = None
_start_lock = threading.Lock()


def watch(fd: Optional[int], deadline: Optional[float], gate: Any) -> int:
    """A C call on ``fd`` starts; returns its token (0: not watched)."""
    if fd is None:
        return 0
    token = next(_ids)
    _calls[token] = _Call(fd, deadline, gate)
    if _thread is None:
        _start()
    _wake.set()
    return token


def done(token: int) -> None:
    if token:
        _calls.pop(token, None)


def pause(token: int, paused: bool) -> None:
    call = _calls.get(token)
    if call is not None:
        call.paused = paused


def _start() -> None:
    global _thread
    with _start_lock:
        if _thread is None:
            thread = threading.Thread(target=_run, name="pygear-watchdog", daemon=True)
            thread.start()
            _thread = thread


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
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def _run() -> None:
    _signals.block_forever()
    while True:
        if not _calls:
            _wake.clear()
            _wake.wait()
        time.sleep(_PERIOD)
        now = time.monotonic()
        pending = None
        for call in list(_calls.values()):
            if call.paused:
                continue
            late = call.deadline is not None and now > call.deadline + _GRACE
            if pending is None:
                pending = _signal_pending()
            if pending:
                if call.pending_since is None:
                    call.pending_since = now
            else:
                call.pending_since = None
            held = call.pending_since is not None and now - call.pending_since > _GRACE
            if late or held or getattr(call.gate, "close_requested", False):
                _shut(call.fd)
                call.deadline = None
                call.paused = True      # once is enough

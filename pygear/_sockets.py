"""Finding the socket libgearman opened for one C handle, in O(1).

libgearman 1.1 gives no public way to get a connection's file descriptor.
pygear needs it for two things: to widen its buffers (see
_workarounds.SMALL_SOCKET_BUFFERS) and to wait on several servers' C
handles at once (one poll() over their sockets).  ``socket()`` returns the
lowest free descriptor, and libgearman opens its socket right after looking
the server up (nothing else is opened between, checked with strace on
1.1.20), so the lowest free descriptor just before a fresh C handle's first
call is, in a single-threaded moment, the one it will get.  ``Watch``
records that guess and, once the connection is up, checks it: a TCP socket
connected to the server's port, with the 32 KiB buffers libgearman sets
(Linux reports them doubled), not claimed by another handle.  A wrong guess
(another thread opened a file meanwhile) is dropped, never scanned for: the
handle then works without the extras.

Each adopted socket is claimed in a process-wide table until its C handle
is freed, so two handles never take the same descriptor, and a descriptor
reused after a reconnect is noticed by its inode.
"""
from __future__ import annotations

import logging
import os
import socket
import stat
import threading
from typing import Dict, Optional, Tuple

from ._workarounds import SMALL_SOCKET_BUFFERS

log = logging.getLogger("pygear")

_ENV_WIDEN = "PYGEAR_WIDEN_BUFFERS"
WIDE_SOCKET_BUFFER = 1 << 20
_LIBGEARMAN_BUFFER = 2 * 32768           # what Linux reports for its 32 KiB
_TRIES = 200                             # slices to wait for the connection to be up

_claimed: Dict[int, int] = {}            # fd -> inode, of every adopted socket
_claimed_lock = threading.Lock()


def widening_enabled() -> bool:
    return os.environ.get(_ENV_WIDEN, "1") != "0" and SMALL_SOCKET_BUFFERS.applies()


def lowest_free_fd() -> int:
    fd = os.open(os.devnull, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    os.close(fd)
    return fd


def _inode(fd: int) -> Optional[int]:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_ino if stat.S_ISSOCK(st.st_mode) else None


class Watch:
    """The socket of one C handle's connection to ``server``: guessed
    before its first call, adopted once it is up."""

    __slots__ = ("server", "fd", "inode", "unadopted", "_tries", "_guess")

    def __init__(self, server: Tuple[str, int]) -> None:
        self.server = server
        self.fd: Optional[int] = None       # known once adopted
        self.inode: Optional[int] = None
        self._tries = 0
        try:
            self._guess: Optional[int] = lowest_free_fd()
        except OSError:
            self._guess = None
        self.unadopted = self._guess is not None

    def adopt(self) -> None:
        """Check the guess once the connection is up (called by drive after
        each slice until it settles)."""
        fd = self._guess
        if fd is None:
            self.unadopted = False
            return
        self._tries += 1
        inode = _inode(fd)
        if inode is None:
            self._give_up("fd %d is not a socket" % fd)
            return
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError as exc:
            self._give_up(str(exc))
            return
        try:
            if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
                self._give_up("fd %d is not a TCP socket" % fd)
                return
            try:
                peer = sock.getpeername()
            except OSError:
                if self._tries >= _TRIES:
                    self._give_up("fd %d never connected" % fd)
                return                       # not up yet: try after the next slice
            if peer[1] != self.server[1] or \
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < _LIBGEARMAN_BUFFER // 2:
                self._give_up("fd %d is another socket (peer %r)" % (fd, peer))
                return
            with _claimed_lock:
                if _claimed.get(fd) == inode:
                    self._give_up("fd %d belongs to another handle" % fd)
                    return
                _claimed[fd] = inode
            self.fd, self.inode, self.unadopted, self._guess = fd, inode, False, None
            if widening_enabled() and \
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == _LIBGEARMAN_BUFFER:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WIDE_SOCKET_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, WIDE_SOCKET_BUFFER)
        except OSError as exc:
            self._give_up(str(exc))
        finally:
            sock.close()                     # the duplicate only

    def _give_up(self, why: str) -> None:
        log.debug("socket of the connection to %s:%d not found (%s); going on without it",
                  self.server[0], self.server[1], why)
        self.unadopted = False
        self._guess = None

    def current(self) -> bool:
        """Whether the adopted descriptor is still the same socket (after a
        reconnect libgearman may have opened another)."""
        return self.fd is not None and _inode(self.fd) == self.inode

    def release(self) -> None:
        """The C handle is freed: its descriptor is no longer claimed."""
        fd, self.fd = self.fd, None
        if fd is not None:
            with _claimed_lock:
                if _claimed.get(fd) == self.inode:
                    del _claimed[fd]
        self.unadopted = False
        self._guess = None

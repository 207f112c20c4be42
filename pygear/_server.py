"""Start and stop a private gearmand on a free loopback port.

Used by the pytest plugin (pygear.testing), ``make demo`` and the benchmarks.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Iterator, List, Optional

QUEUES = (None, "sqlite")   # "sqlite": gearmand -q libsqlite3, jobs survive a restart


def find_gearmand() -> Optional[str]:
    """The gearmand binary on PATH or in /usr/sbin, else None."""
    found = shutil.which("gearmand")
    if found:
        return found
    for candidate in ("/usr/sbin/gearmand", "/usr/local/sbin/gearmand"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError("gearmand did not listen on %s:%d within %.1fs"
                                   % (host, port, timeout))
            time.sleep(0.02)


class GearmandProcess:
    """A gearmand we started; ``stop()`` kills it and removes its temp dir.

    ``queue="sqlite"`` keeps background jobs in ``<tmpdir>/queue.db``
    (``-q libsqlite3``), which ``kill()`` and ``restart()`` keep."""

    def __init__(self, port: Optional[int] = None, host: str = "127.0.0.1",
                 binary: Optional[str] = None, extra_args: Optional[List[str]] = None,
                 threads: int = 0, queue: Optional[str] = None) -> None:
        if queue not in QUEUES:
            raise ValueError("queue must be one of %s, not %r" % (QUEUES, queue))
        self.binary = binary or find_gearmand()
        if self.binary is None:
            raise FileNotFoundError("no gearmand binary on PATH or in /usr/sbin "
                                    "(apt-get install gearman-job-server)")
        self.host = host
        self.port = port or free_port(host)
        self.extra_args = list(extra_args or [])
        self.threads = threads
        self.queue = queue
        self.tmpdir: Optional[str] = None
        self.proc: Optional[subprocess.Popen] = None

    @property
    def address(self) -> str:
        return "%s:%d" % (self.host, self.port)

    def start(self, timeout: float = 10.0) -> "GearmandProcess":
        if self.tmpdir is None:
            self.tmpdir = tempfile.mkdtemp(prefix="pygear-gearmand-")
        args = [self.binary, "--listen", self.host, "--port", str(self.port),
                "--threads", str(self.threads),
                "--log-file", os.path.join(self.tmpdir, "gearmand.log"),
                "--pid-file", os.path.join(self.tmpdir, "gearmand.pid"),
                "--verbose", "ERROR"] + self.extra_args
        if self.queue == "sqlite":
            args += ["--queue-type", "libsqlite3",
                     "--libsqlite3-db", os.path.join(self.tmpdir, "queue.db")]
        self.proc = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            wait_for_port(self.host, self.port, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Stop the process at once (SIGKILL), keeping the temp dir for a restart."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def restart(self, timeout: float = 10.0) -> "GearmandProcess":
        self.kill()
        deadline = time.monotonic() + timeout
        while True:  # the port may linger briefly after the kill
            try:
                return self.start(timeout=max(0.5, deadline - time.monotonic()))
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def stop(self) -> None:
        self.kill()
        tmpdir, self.tmpdir = self.tmpdir, None
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def __enter__(self) -> "GearmandProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class GearmandCluster:
    """Several private gearmands on free loopback ports, each with its own
    temp dir (and queue file); ``stop()`` stops them all, by pid."""

    def __init__(self, count: int = 3, queue: Optional[str] = None,
                 host: str = "127.0.0.1", extra_args: Optional[List[str]] = None) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive int, not %r" % (count,))
        self.queue = queue
        self.servers: List[GearmandProcess] = [
            GearmandProcess(host=host, queue=queue, extra_args=extra_args)
            for _ in range(count)]
        # Ports are chosen up front, so no two members are given the same one.
        ports = set()
        for server in self.servers:
            while server.port in ports:
                server.port = free_port(host)
            ports.add(server.port)

    @property
    def addresses(self) -> List[str]:
        return [server.address for server in self.servers]

    def __len__(self) -> int:
        return len(self.servers)

    def __iter__(self) -> Iterator[GearmandProcess]:
        return iter(self.servers)

    def start(self, timeout: float = 10.0) -> "GearmandCluster":
        try:
            for server in self.servers:
                server.start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, i: int) -> None:
        """SIGKILL server ``i``; its port and queue file are kept for restart(i)."""
        self.servers[i].kill()

    def restart(self, i: int, timeout: float = 10.0) -> GearmandProcess:
        """Start server ``i`` again on the same port (killing it first if it
        runs); returns once it listens."""
        return self.servers[i].restart(timeout)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> "GearmandCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return "<gearmand cluster %s%s>" % (",".join(self.addresses),
                                          " (queue=%s)" % self.queue if self.queue else "")

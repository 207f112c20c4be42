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
from typing import List, Optional


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
    """A gearmand we started; ``stop()`` kills it and removes its temp dir."""

    def __init__(self, port: Optional[int] = None, host: str = "127.0.0.1",
                 binary: Optional[str] = None, extra_args: Optional[List[str]] = None,
                 threads: int = 0) -> None:
        self.binary = binary or find_gearmand()
        if self.binary is None:
            raise FileNotFoundError("no gearmand binary on PATH or in /usr/sbin "
                                    "(apt-get install gearman-job-server)")
        self.host = host
        self.port = port or free_port(host)
        self.extra_args = list(extra_args or [])
        self.threads = threads
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
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            wait_for_port(self.host, self.port, timeout)
        except BaseException:
            self.stop()
            raise
        return self

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

"""What the command-line tests share: the `pygear` console script run in a
subprocess against the session's gearmand, and worker processes for the
length of a block."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import pygear

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(os.path.dirname(sys.executable), "pygear")
# The installed console script when it runs this checkout, else `python -m pygear`.
CLI = [SCRIPT] if os.access(SCRIPT, os.X_OK) else [sys.executable, "-m", "pygear"]
needs_c_tools = pytest.mark.skipif(
    not (shutil.which("gearman") and shutil.which("gearadmin")),
    reason="the C tools gearman and gearadmin are not installed (gearman-tools)")


def cli_env(gearmand):
    """The environment a `pygear` subprocess runs in: this checkout first on
    PYTHONPATH, and the session's gearmand as $GEARMAN_SERVERS."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in
                                                  [env.get("PYTHONPATH")] if p])
    env["GEARMAN_SERVERS"] = gearmand.address
    return env


def read_pty(master: int) -> bytes:
    """What was written to a pty's other end, once its writer closed it."""
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:   # EIO: every writer is gone
            break
        if not chunk:
            break
        seen += chunk
    return seen


def watch_rounds(proc, count: int, marker: bytes = b"Every ") -> bytes:
    """The stdout of `pygear admin status --watch` up to its count-th round."""
    seen = b""
    while seen.count(marker) < count:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        seen += line
    return seen


def pygear_cli(env, *args, input=None, timeout=30, **kw):
    return subprocess.run(CLI + list(args), input=input, env=env, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, **kw)


def workers_for(gearmand, function):
    with pygear.Admin(gearmand.host, gearmand.port, timeout=5) as admin:
        for row in admin.status():
            if row["function"] == function:
                return row
    return {"function": function, "total": 0, "running": 0, "available_workers": 0}


def wait_until(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.05)


@contextlib.contextmanager
def background(env, gearmand, function, args, workers=1, cli=True):
    """A worker process (`pygear work ...` or a C `gearman -w`) serving
    ``function`` for the length of the block, stopped with SIGTERM."""
    cmd = CLI + args if cli else args
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_until(lambda: proc.poll() is not None or
                   workers_for(gearmand, function)["available_workers"] >= workers,
                   what="workers for %s" % function)
        assert proc.poll() is None, proc.communicate(timeout=5)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()

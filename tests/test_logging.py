"""Logging (SPEC "Logging and metrics"): what pygear does reaches the
``pygear`` logger: servers down and back, failover, a job function that
raised (with its traceback), and libgearman's own lines (``pygear.libgearman``,
DEBUG); the command line shows them with -v."""
import logging
import subprocess
import sys
import time

import pytest

import pygear
from pygear._server import GearmandProcess
from pygear.testing import unique_name

from .faultkit import dead_port

pytestmark = pytest.mark.timeout(60)


def _messages(caplog, level=logging.INFO, logger="pygear"):
    return [r.getMessage() for r in caplog.records
            if r.levelno >= level and r.name.startswith(logger)]


def test_pygear_logs_through_a_null_handler_by_default():
    handlers = logging.getLogger("pygear").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_a_server_down_and_the_failover_are_logged(caplog, gearmand, gearman_worker_process):
    fn = unique_name("log_fail")
    gearman_worker_process.start({fn: pygear_echo})
    caplog.set_level(logging.INFO, logger="pygear")
    down = "127.0.0.1:%d" % dead_port()
    with pygear.Client([down, gearmand.address]) as c:
        c.set_timeout(10000)
        for i in range(4):      # round-robin: the dead one comes first at least once
            assert c.do(fn, i) == i
    msgs = _messages(caplog)
    assert any("job server %s is down" % down in m for m in msgs), msgs
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "is down" in
                r.getMessage()]
    assert len(warnings) == 1      # once, not at every retry


def pygear_echo(job):
    return job.workload()


def test_a_worker_logs_losing_and_regaining_its_server(caplog):
    caplog.set_level(logging.DEBUG, logger="pygear")
    with GearmandProcess() as g:
        fn = unique_name("log_worker")
        w = pygear.Worker(g.address)
        w.add_function(fn, pygear_echo)
        w.set_timeout(100)
        try:
            with pytest.raises(pygear.TIMEOUT):
                w.work()       # connected, idle
            g.kill()
            deadline = time.monotonic() + 5
            while not any("is down" in m for m in _messages(caplog)):
                assert time.monotonic() < deadline, _messages(caplog)
                with pytest.raises(pygear.TIMEOUT):
                    w.work()
            g.start()
            deadline = time.monotonic() + 5
            while not any("is up again" in m for m in _messages(caplog)):
                assert time.monotonic() < deadline, _messages(caplog)
                with pytest.raises(pygear.TIMEOUT):
                    w.work()
        finally:
            w.close()


def test_a_raising_job_function_is_logged_with_its_traceback(caplog, gearmand):
    caplog.set_level(logging.WARNING, logger="pygear")
    fn = unique_name("log_raise")

    def boom(job):
        raise ValueError("the reason")

    with pygear.Worker(gearmand.address) as w, pygear.Client(gearmand.address) as c:
        w.add_function(fn, boom)
        w.set_timeout(5000)
        c.set_timeout(5000)
        c.do_background(fn, 1)
        w.work()
    records = [r for r in caplog.records if r.name == "pygear" and r.levelno == logging.WARNING
               and fn in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info and records[0].exc_info[0] is ValueError
    assert "the reason" in logging.Formatter().formatException(records[0].exc_info)


def test_libgearman_lines_reach_pygear_libgearman_at_debug(caplog):
    """libgearman says nothing while all goes well; a server that drops
    the connection under a running job makes it talk."""
    caplog.set_level(logging.DEBUG, logger="pygear.libgearman")
    with GearmandProcess() as g:
        with pygear.Client(g.address) as c:
            c.set_timeout(3000)
            c.do_background(unique_name("log_lib"), 1)      # connected
            g.kill()
            with pytest.raises(pygear.GearmanError):
                c.do(unique_name("log_lib"), 2)
    lines = [r for r in caplog.records if r.name == "pygear.libgearman"]
    assert lines and all(r.levelno == logging.DEBUG for r in lines)
    # pygear's own slicing (50 ms waits) is not libgearman's news
    assert not any("timeout reached" in r.getMessage() for r in lines)


def test_the_command_line_shows_them_with_v(gearmand):
    hole = dead_port()
    out = subprocess.run(
        [sys.executable, "-m", "pygear", "-v", "--server", "127.0.0.1:%d" % hole,
         "--server", gearmand.address, "--timeout", "5", "submit", "--background",
         unique_name("log_cli"), "x"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("H:")

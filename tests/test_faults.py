"""Faults (issue 4, item 5), each against private gearmands that the test
kills and restarts on the same port: workers and clients carry on, several
servers fail over, a worker killed mid-job has its job retried elsewhere,
and a background submission reported as successful really is on a server
while a failed one raises and returns no handle."""
import os
import tempfile
import threading
import time

import pytest

import pygear
import pygear._taskbook
from pygear._server import find_gearmand
from pygear.testing import unique_name

from .faultkit import BlackHole, dead_port, wait_workers

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(find_gearmand() is None, reason="needs a gearmand binary")]


def client_for(*addresses, timeout=10000):
    c = pygear.Client()
    for a in addresses:
        c.add_servers(a)
    c.set_timeout(timeout)
    return c


def jobs_on(g):
    with pygear.Admin(g.host, g.port, timeout=5) as admin:
        return {j["handle"]: j for j in admin.show_jobs()}


# --- gearmand killed and restarted on the same port -----------------------------

def test_worker_and_client_survive_gearmand_restart(servers, workers):
    g = servers()
    fn = unique_name("restart")
    w = workers(g.address, {fn: "echo"})
    wait_workers(g.host, g.port, fn)
    with client_for(g.address) as c:
        assert c.do(fn, "before") == "before"
        for round_ in range(2):
            g.restart()
            # the worker reconnects and registers again by itself
            wait_workers(g.host, g.port, fn, timeout=15)
            assert w.alive(), w.stderr()
            # the client's next call succeeds
            assert c.do(fn, ["after", round_]) == ["after", round_]
            t = c.add_task(fn, "task")
            c.run_tasks()
            assert t.result() == "task"
    assert w.alive(), w.stderr()


@pytest.mark.parametrize("window", [1000, 2])
def test_task_client_survives_gearmand_restart(servers, workers, monkeypatch, window):
    """A client that used the task API (libgearman's own stays stuck after
    a restart) gets its next run_tasks through; also when most of the batch
    waits in Python (a window of 2 tasks in C)."""
    monkeypatch.setattr(pygear._taskbook, "WINDOW", window)
    g = servers()
    fn = unique_name("restart_t")
    workers(g.address, {fn: "echo"})
    wait_workers(g.host, g.port, fn)
    with client_for(g.address) as c:
        tasks = [c.add_task(fn, i) for i in range(5)]
        c.run_tasks()
        assert [t.result() for t in tasks] == list(range(5))
        g.restart()
        wait_workers(g.host, g.port, fn, timeout=15)
        tasks = [c.add_task(fn, i) for i in range(5)]
        c.run_tasks()
        assert [t.result() for t in tasks] == list(range(5))
        h = c.do_background(unique_name("bg"), 1)["job_handle"]
        assert h in jobs_on(g)


def test_restart_under_live_traffic(servers, workers):
    """A client hammering do() while gearmand is killed and restarted: calls
    during the outage raise GearmanErrors (never hang, never crash), and
    once the worker is back every call succeeds again."""
    g = servers()
    fn = unique_name("traffic")
    w = workers(g.address, {fn: "echo"})
    wait_workers(g.host, g.port, fn)
    stop = threading.Event()
    outcomes = {"ok": 0, "error": 0, "wrong": 0, "other": []}

    def hammer():
        with client_for(g.address, timeout=2000) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if c.do(fn, i) == i:
                        outcomes["ok"] += 1
                    else:
                        outcomes["wrong"] += 1
                except pygear.GearmanError:
                    outcomes["error"] += 1
                    time.sleep(0.01)
                except BaseException as exc:
                    outcomes["other"].append(repr(exc))
                    return

    t = threading.Thread(target=hammer, daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        for _ in range(3):
            g.restart()
            wait_workers(g.host, g.port, fn, timeout=15)
            time.sleep(0.3)
        ok_before = outcomes["ok"]
        time.sleep(1.0)
        assert outcomes["ok"] > ok_before, outcomes
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()
    assert outcomes["wrong"] == 0 and outcomes["other"] == [], outcomes
    assert w.alive(), w.stderr()


def test_in_process_worker_survives_restart(servers):
    """A Worker in this process: work() while gearmand is down raises at most
    TIMEOUT, and it serves again after the restart without being rebuilt."""
    g = servers()
    fn = unique_name("inproc")
    w = pygear.Worker()
    w.add_server(g.host, g.port)
    w.add_function(fn, 0, lambda job: job.workload() * 2)
    w.set_timeout(300)
    results = []
    try:
        with client_for(g.address) as c:
            c.do_background(fn, 1)
            w.work()
            g.kill()
            for _ in range(3):
                with pytest.raises(pygear.TIMEOUT):
                    w.work()
            g.start()
            deadline = time.monotonic() + 15
            h = None
            while time.monotonic() < deadline:
                try:
                    w.work()   # reconnects, registers again
                except pygear.TIMEOUT:
                    pass
                if h is None:
                    try:
                        h = c.do_background(fn, 21)["job_handle"]
                    except pygear.GearmanError:
                        continue
                elif not c.job_status(h)["is_known"]:
                    results.append("done")
                    break
            assert results == ["done"]
    finally:
        w.close()


# --- several servers, the first one down ----------------------------------------------

@pytest.mark.parametrize("first", ["refused", "killed", "black_hole"])
def test_multi_server_first_down(servers, workers, first):
    live = servers()
    fn = unique_name("multi")
    hole = None
    if first == "refused":
        down = "127.0.0.1:%d" % dead_port()
    elif first == "killed":
        other = servers()
        down = other.address
    else:
        hole = BlackHole()
        down = hole.address
    try:
        workers(live.address + ("," + down if first == "killed" else ""), {fn: "echo"},
                lenient=True)
        wait_workers(live.host, live.port, fn)
        # black hole: only a timeout can tell it is dead, so give each call time
        with client_for(down, live.address, timeout=3000 if hole else 10000) as c:
            if first == "killed":
                assert c.do(fn, "both up") == "both up"
                other.kill()
            for i in range(3):
                assert c.do(fn, i) == i
                assert c.do_high(fn, i) == i
                h = c.do_background(unique_name("multi_bg"), i)["job_handle"]
                assert h in jobs_on(live)
                tasks = [c.add_task(fn, [i, k]) for k in range(4)]
                c.run_tasks()
                assert [t.result() for t in tasks] == [[i, k] for k in range(4)]
    finally:
        if hole is not None:
            hole.close()


def test_multi_server_first_killed_mid_session_tasks(servers, workers):
    a, b = servers(), servers()
    fn = unique_name("multi_t")
    workers(a.address + "," + b.address, {fn: "echo"}, lenient=True)
    wait_workers(a.host, a.port, fn)
    wait_workers(b.host, b.port, fn)
    with client_for(a.address, b.address) as c:
        tasks = [c.add_task(fn, i) for i in range(10)]
        c.run_tasks()
        assert [t.result() for t in tasks] == list(range(10))
        a.kill()
        tasks = [c.add_task(fn, i) for i in range(10)]
        bg = c.add_task_background(unique_name("multi_tbg"), "x")
        c.run_tasks()
        assert [t.result() for t in tasks] == list(range(10))
        assert bg.job_handle() in jobs_on(b)


# --- a worker killed mid-job ---------------------------------------------------------------

def test_worker_killed_mid_job_is_retried_elsewhere(servers, workers):
    g = servers()
    fn = unique_name("midjob")
    w1 = workers(g.address, {fn: "sleep_mark"})
    w2 = workers(g.address, {fn: "sleep_mark"})
    wait_workers(g.host, g.port, fn, 2)
    by_pid = {w1.pid: w1, w2.pid: w2}
    marks = tempfile.mkdtemp(prefix="pygear-midjob-")
    result = {}

    def submit():
        try:
            with client_for(g.address, timeout=30000) as c:
                result["pid"] = c.do(fn, {"dir": marks, "sleep": 1.5})
        except BaseException as exc:
            result["error"] = exc

    t = threading.Thread(target=submit, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while not os.listdir(marks):
            assert time.monotonic() < deadline, "no worker took the job"
            time.sleep(0.01)
        first = int(os.listdir(marks)[0])
        by_pid[first].kill()
        t.join(30)
        assert not t.is_alive(), "the client is still waiting"
        assert "error" not in result, result
        survivor = (set(by_pid) - {first}).pop()
        assert result["pid"] == survivor
        assert sorted(int(p) for p in os.listdir(marks)) == sorted(by_pid)
    finally:
        for name in os.listdir(marks):
            os.unlink(os.path.join(marks, name))
        os.rmdir(marks)


# --- background submissions: success means it is there, failure raises ----------------------

def test_background_success_is_on_the_server(servers):
    g = servers()
    fn = unique_name("bg_there")
    with client_for(g.address) as c:
        handles = [c.do_background(fn, i)["job_handle"] for i in range(5)]
        handles += [c.do_low_background(fn, "low")["job_handle"],
                    c.do_high_background(fn, "high")["job_handle"]]
        t = c.add_task_background(fn, "task")
        c.run_tasks()
        handles.append(t.job_handle())
        on_server = jobs_on(g)
        for h in handles:
            assert h in on_server, (h, on_server)
            status = c.job_status(h)
            assert status["is_known"] and not status["is_running"]


@pytest.mark.parametrize("method", ["do_background", "do_high_background", "do", "add_task"])
def test_submission_to_dead_server_raises(method):
    c = client_for("127.0.0.1:%d" % dead_port(), timeout=3000)
    try:
        start = time.monotonic()
        with pytest.raises(pygear.GearmanError) as info:
            result = getattr(c, method)(unique_name("dead"), 1)
            if method == "add_task":
                c.run_tasks()
            pytest.fail("returned %r" % (result,))
        assert isinstance(info.value, (ConnectionError, TimeoutError)), info.value
        assert time.monotonic() - start < 5
    finally:
        c.close()


def test_submission_to_black_hole_times_out_without_handle():
    hole = BlackHole()
    try:
        c = client_for(hole.address, timeout=300)
        with pytest.raises(pygear.TIMEOUT):
            c.do_background(unique_name("hole"), 1)
        c.close()
    finally:
        hole.close()


def test_submission_to_killed_server_raises_then_recovers(servers):
    g = servers()
    fn = unique_name("killed_sub")
    with client_for(g.address, timeout=3000) as c:
        c.do_background(fn, 0)
        g.kill()
        with pytest.raises(pygear.GearmanError) as info:
            c.do_background(fn, 1)
        assert isinstance(info.value, (ConnectionError, TimeoutError)), info.value
        g.start()
        h2 = c.do_background(fn, 2)["job_handle"]
        # no persistent queue: the old job died with the server (the new
        # gearmand numbers handles from 1 again, so compare counts)
        assert list(jobs_on(g)) == [h2]


def test_full_queue_raises_and_creates_nothing(servers):
    g = servers()
    fn = unique_name("full")
    with pygear.Admin(g.host, g.port, timeout=5) as admin:
        admin.create_function(fn)
        admin.maxqueue(fn, 2)
    with client_for(g.address, timeout=3000) as c:
        ok = [c.do_background(fn, i)["job_handle"] for i in range(2)]
        before = jobs_on(g)
        with pytest.raises(pygear.GearmanError):
            c.do_background(fn, 3)
        assert jobs_on(g) == before
        assert all(h in before for h in ok)

"""The GIL and threads (issue 4, item 2): other threads run while libgearman
blocks; one Client per thread works in parallel; one object shared by
threads is serialized by its lock and never corrupts memory."""
import threading
import time

import pytest

import pygear
from pygear.testing import unique_name

from .faultkit import connected_client, describe, last_json, run_python, serve_echo

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def echo_fn(gearmand):
    yield from serve_echo(gearmand, "thr_echo", 2)


def _client(gearmand, timeout=20000):
    return connected_client(gearmand, timeout)


def run_threads(targets, timeout=90):
    """Run the callables in threads; re-raise the first error of any."""
    errors = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as exc:   # noqa: B902 - reported below
                errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads still running: a deadlock?"
    if errors:
        raise errors[0]


class Ticker:
    """A thread counting 10 ms sleeps; if the GIL were held through each
    50 ms C wait, it could tick only once per wait."""

    def __init__(self):
        self.ticks = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            time.sleep(0.01)
            self.ticks += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


def test_gil_released_while_client_blocks(gearmand):
    with _client(gearmand, timeout=600) as c, Ticker() as ticker:
        with pytest.raises(pygear.TIMEOUT):
            c.do(unique_name("nobody"), "x")
    # ~60 possible; 12 if the GIL were held through each slice
    assert ticker.ticks >= 30, ticker.ticks


def test_gil_released_while_run_tasks_blocks(gearmand):
    with _client(gearmand, timeout=600) as c, Ticker() as ticker:
        c.add_task(unique_name("nobody"), "x")
        with pytest.raises(pygear.TIMEOUT):
            c.run_tasks()
    assert ticker.ticks >= 30, ticker.ticks


@pytest.mark.parametrize("method", ["work", "grab_job"])
def test_gil_released_while_worker_blocks(gearmand, method):
    with pygear.Worker() as w, Ticker() as ticker:
        w.add_server(gearmand.host, gearmand.port)
        w.add_function(unique_name("idle"), 0, lambda job: None)
        w.set_timeout(600)
        with pytest.raises(pygear.TIMEOUT):
            getattr(w, method)()
    assert ticker.ticks >= 30, ticker.ticks


def test_one_client_per_thread_in_parallel(gearmand, echo_fn):
    results = {}

    def job(n):
        def run():
            with _client(gearmand) as c:
                got = [c.do(echo_fn, [n, i]) for i in range(200)]
            results[n] = got
        return run

    run_threads([job(n) for n in range(8)])
    assert sorted(results) == list(range(8))
    for n, got in results.items():
        assert got == [[n, i] for i in range(200)]


def test_one_client_per_thread_with_tasks(gearmand, echo_fn):
    results = {}

    def job(n):
        def run():
            with _client(gearmand) as c:
                out = []
                for batch in range(5):
                    tasks = [c.add_task(echo_fn, [n, batch, i]) for i in range(20)]
                    c.run_tasks()
                    out += [t.result() for t in tasks]
            results[n] = out
        return run

    run_threads([job(n) for n in range(6)])
    for n, got in results.items():
        assert got == [[n, b, i] for b in range(5) for i in range(20)]


def test_one_client_shared_by_four_threads(gearmand, echo_fn):
    shared = _client(gearmand)
    results = {}

    def job(n):
        def run():
            got = []
            for i in range(100):
                if i % 10 == 3:
                    t = shared.add_task(echo_fn, [n, i])
                    shared.run_tasks()
                    got.append(t.result())
                elif i % 10 == 7:
                    handle = shared.do_background(unique_name("bg"), i)["job_handle"]
                    assert shared.job_status(handle)["is_known"]
                    got.append([n, i])
                else:
                    got.append(shared.do(echo_fn, [n, i]))
            results[n] = got
        return run

    try:
        run_threads([job(n) for n in range(4)])
    finally:
        shared.close()
    for n in range(4):
        assert results[n] == [[n, i] for i in range(100)]


def test_shared_client_close_races_with_calls(gearmand, echo_fn):
    """close() from one thread while others call: each call succeeds or
    raises pygear.ERROR (closed); nothing crashes."""
    for _ in range(5):
        shared = _client(gearmand)
        outcomes = []

        def caller():
            # Call until the client is closed under us (bounded: 5 s).
            deadline = time.monotonic() + 5
            i = 0
            while time.monotonic() < deadline:
                i += 1
                try:
                    assert shared.do(echo_fn, i) == i
                    outcomes.append("ok")
                except pygear.ERROR:
                    outcomes.append("closed")
                    return

        def closer():
            time.sleep(0.05)
            shared.close()

        run_threads([caller, caller, closer])
        assert outcomes[-1] == "closed"
        assert set(outcomes) <= {"ok", "closed"}


def test_one_worker_shared_by_two_threads(gearmand):
    name = unique_name("shared_w")
    seen = []
    lock = threading.Lock()

    def fn(job):
        with lock:
            seen.append(job.workload())
        return job.workload()

    worker = pygear.Worker()
    worker.add_server(gearmand.host, gearmand.port)
    worker.add_function(name, 0, fn)
    worker.set_timeout(200)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                worker.work()
            except pygear.TIMEOUT:
                pass

    def submit():
        try:
            with _client(gearmand) as c:
                for i in range(60):
                    c.do_background(name, i)
                deadline = time.monotonic() + 30
                while len(seen) < 60 and time.monotonic() < deadline:
                    time.sleep(0.02)
        finally:
            stop.set()

    try:
        run_threads([serve, serve, submit])
    finally:
        worker.close()
    assert sorted(seen) == list(range(60))


MIXED = r"""
import sys, threading, time, json
import pygear
host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
done = []
worker = pygear.Worker()
worker.add_server(host, port)
worker.add_function(name, 0, lambda job: done.append(("work", job.workload())))
worker.set_timeout(200)
stop = threading.Event()

def work():
    while not stop.is_set():
        try:
            worker.work()
        except pygear.TIMEOUT:
            pass

def grab():
    while not stop.is_set():
        try:
            job = worker.grab_job()
        except pygear.TIMEOUT:
            continue
        done.append(("grab", job.workload()))
        job.send_complete("grabbed")

threads = [threading.Thread(target=work), threading.Thread(target=grab)]
for t in threads:
    t.start()
c = pygear.Client()
c.add_server(host, port)
c.set_timeout(10000)
for i in range(40):
    c.do_background(name, i)
deadline = time.monotonic() + 30
while len(done) < 40 and time.monotonic() < deadline:
    time.sleep(0.02)
stop.set()
for t in threads:
    t.join(10)
worker.close()
print(json.dumps(sorted(n for _, n in done)))
"""


def test_worker_shared_work_and_grab_job(gearmand):
    """work() in one thread and grab_job() in another on the same Worker:
    serialized, both make progress, nothing crashes (in a child process,
    so that a crash is reported rather than ending the run)."""
    proc = run_python(MIXED, [gearmand.host, str(gearmand.port), unique_name("shared_g")],
                      timeout=60)
    assert proc.returncode == 0, describe(proc)
    assert last_json(proc.stdout) == list(range(40))


GRAB_AFTER_WORK = r"""
import sys
import pygear
host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = pygear.Client()
c.add_server(host, port)
c.set_timeout(5000)
w = pygear.Worker()
w.add_server(host, port)
w.add_function(name, 0, lambda job: "by work")
w.set_timeout(5000)
c.do_background(name, 1)
w.work()                       # runs the job
w.set_timeout(300)
try:
    w.grab_job()               # nothing queued: must time out cleanly
except pygear.TIMEOUT:
    pass
c.do_background(name, 2)
w.set_timeout(5000)
job = w.grab_job()
job.send_complete("by hand")
print("{}", flush=True)
"""


def test_grab_job_after_work_same_worker(gearmand):
    """The single-threaded core of the test above: a worker that ran a job
    with work() then waits in grab_job() with nothing queued."""
    proc = run_python(GRAB_AFTER_WORK, [gearmand.host, str(gearmand.port), unique_name("gaw")],
                      timeout=60)
    assert proc.returncode == 0, describe(proc)

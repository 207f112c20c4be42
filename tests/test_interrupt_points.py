"""One Ctrl-C at every point of a call, then the object is used again
(issue 10, item 9 and the item after 19): a child delivers SIGINT to itself
0, 1, 2, ... 50 ms into a do(), run_tasks(), work() or grab_job() sequence
(a fresh object each time, so connecting is among the points), catches
KeyboardInterrupt, and uses the object again: every later call works and no
job is lost.  And a second Ctrl-C while pygear cleans up after the first no
longer loses the tasks queued beside the interrupted do(): run_tasks() then
completes every one of them.
"""
import os
import signal
import threading
import time

import pytest

import pygear
from pygear.testing import unique_name

from .faultkit import Interrupts, calling, emit, run_child, serve_echo

pytestmark = pytest.mark.timeout(120)

DELAYS_MS = range(0, 51)


def sigint_in(seconds, *more):
    """SIGINT this process ``seconds`` from now (and at each of ``more``),
    from a thread that blocks signals itself, so that the kernel hands each
    to the main thread, as with a user's Ctrl-C."""
    start = time.monotonic()

    def send():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        for at in (seconds,) + more:
            time.sleep(max(0.0, start + at - time.monotonic()))
            os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=send, daemon=True).start()


def connected(cls, host, port, timeout=10000):
    obj = cls()
    obj.add_server(host, port)
    obj.set_timeout(timeout)
    return obj


def points_child(kind, host, port, fn):
    """For each delay: a fresh object, a SIGINT that many ms into a run of
    calls, then the calls that must work afterwards."""
    port = int(port)
    interrupts = Interrupts()
    feeder = connected(pygear.Client, host, port)
    problems = []
    hits = 0
    for delay in DELAYS_MS:
        if kind in ("do", "run_tasks"):
            obj = connected(pygear.Client, host, port)
        else:
            obj = connected(pygear.Worker, host, port, 500)
        seen = []
        if kind == "work":
            def job_fn(job):
                seen.append(job.workload())
                time.sleep(0.002)      # 40 jobs take longer than the 50 ms of delays
                return job.workload()
            obj.add_function(fn, 0, job_fn)
        elif kind == "grab_job":
            obj.register(fn)
        jobs = ["%d-%d" % (delay, k) for k in range(10 if kind in ("do", "run_tasks") else 40)]
        if kind in ("work", "grab_job"):
            for job in jobs:
                feeder.do_background(fn, job)
        # (enough calls that they outlast the 50 ms of delays: a round trip is ~0.3 ms)
        tasks = [obj.add_task(fn, job) for job in jobs * 100] if kind == "run_tasks" else []

        def grab_all():
            while not set(jobs) <= set(seen):    # (jobs of earlier rounds come too)
                job = obj.grab_job()
                seen.append(job.workload())
                time.sleep(0.002)      # as the job function of "work" does
                job.send_complete(job.workload())
        calls = {
            "do": lambda: [obj.do(fn, job) for job in jobs * 30],
            "run_tasks": lambda: obj.run_tasks(),
            "work": lambda: [obj.work() for _ in jobs],
            "grab_job": grab_all,
        }[kind]
        sigint_in(delay / 1000.0)
        what, value = interrupts.guarded(calls)
        hits += what == "KeyboardInterrupt"
        if what == "error":
            problems.append([delay, "during", value])
        time.sleep(0.06 - delay / 1000.0 if delay < 60 else 0)   # the SIGINT has come
        # afterwards: the object works, and nothing was lost
        try:
            if kind == "do":
                after = obj.do(fn, "after")
                ok = after == "after"
            elif kind == "run_tasks":
                obj.run_tasks()
                ok = [t.result() for t in tasks] == jobs * 100
            else:
                deadline = time.monotonic() + 1.5
                while not set(jobs) <= set(seen) and time.monotonic() < deadline:
                    try:
                        (obj.work if kind == "work" else grab_all)()
                    except pygear.TIMEOUT:
                        pass
                ok = set(seen) >= set(jobs)
            if not ok:
                problems.append([delay, "after", kind, sorted(set(jobs) - set(seen))])
        except Exception as exc:
            problems.append([delay, "after", repr(exc)])
        obj.close()
    emit(problems=problems, hits=hits, outside=interrupts.outside)


@pytest.fixture(scope="module")
def echo_fn(gearmand):
    yield from serve_echo(gearmand, "points_echo", 2)


@pytest.mark.parametrize("kind", ["do", "run_tasks", "work", "grab_job"])
def test_one_interrupt_at_every_point_then_the_object_works(gearmand, echo_fn, kind):
    fn = echo_fn if kind in ("do", "run_tasks") else unique_name("points_" + kind)
    report = run_child(calling("tests.test_interrupt_points:points_child"),
                       [kind, gearmand.host, gearmand.port, fn], timeout=100)[-1]
    assert report["problems"] == [], report
    assert report["hits"] > len(DELAYS_MS) // 2, ("few calls were interrupted", kind, report)


def second_interrupt_child(host, port, echo_fn, idle_fn):
    """A do() nobody serves, with tasks queued beside it; SIGINT at every
    delay, and a second one 0-3 ms later while pygear cleans up."""
    port = int(port)
    interrupts = Interrupts()
    c = connected(pygear.Client, host, port, -1)
    lost = []
    hits = 0
    for delay in DELAYS_MS:
        tasks = [c.add_task(echo_fn, [delay, k]) for k in range(3)]
        first = delay / 1000.0
        sigint_in(first, first + (delay % 4) / 1000.0)
        what, value = interrupts.guarded(lambda: c.do(idle_fn, "nobody serves this"))
        hits += what == "KeyboardInterrupt"
        time.sleep(0.01)        # the second SIGINT has come
        c.set_timeout(10000)
        what, value = interrupts.guarded(c.run_tasks)
        results = [t.result() for t in tasks]
        if what != "ok" or results != [[delay, k] for k in range(3)]:
            lost.append([delay, what, value, results])
        c.set_timeout(-1)
    emit(lost=lost, hits=hits)


def test_a_second_interrupt_during_cleanup_keeps_the_queued_tasks(gearmand, echo_fn):
    report = run_child(calling("tests.test_interrupt_points:second_interrupt_child"),
                       [gearmand.host, gearmand.port, echo_fn, unique_name("idle")],
                       timeout=100)[-1]
    assert report["lost"] == [], report
    assert report["hits"] == len(DELAYS_MS), report

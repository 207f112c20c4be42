"""Ctrl-C every few milliseconds (issue 10, item 8): a child loops over
do(), run_tasks() or work() while the test sends it SIGINT every 2 to 5 ms
for a few seconds (a thousand deliveries or so each), catching
KeyboardInterrupt around each call and going on.  Nothing crashes, nothing
is printed as "Exception ignored", no call raises anything but
KeyboardInterrupt (no GearmanError with a nonsense code), no job is lost
(every do() returns its own result or raises KeyboardInterrupt; every job
submitted to the worker is answered with its result), and the object works
afterwards.
"""
import os
import tempfile
import time

import pytest

import pygear
from pygear.testing import unique_name

from .faultkit import Child, Interrupts, assert_clean, calling, emit, serve_echo, sigint_storm

pytestmark = pytest.mark.timeout(90)

STORM_SECONDS = 3.0


def storm_child(kind, host, port, fn, stop_file):
    """Loop over one kind of call, guarded, until ``stop_file`` exists; then
    one call more with SIGINT disarmed."""
    port = int(port)
    interrupts = Interrupts()
    stats = {"ok": 0, "KeyboardInterrupt": 0, "wrong": [], "errors": []}
    if kind == "work":
        obj = pygear.Worker()
        obj.add_function(fn, 0, lambda job: job.workload())
    else:
        obj = pygear.Client()
    obj.add_server(host, port)
    obj.set_timeout(10000 if kind != "work" else 100)
    emit(ready=True)
    i = 0
    while not os.path.exists(stop_file):
        i += 1
        if kind == "do":
            what, value = interrupts.guarded(lambda: obj.do(fn, i))
            if what == "ok" and value != i:
                stats["wrong"].append([i, value])
        elif kind == "run_tasks":
            tasks = [obj.add_task(fn, [i, k]) for k in range(10)]
            while True:      # until the batch is done, however often interrupted
                what, value = interrupts.guarded(obj.run_tasks)
                if what == "error":
                    stats["errors"].append(value)
                    break
                stats[what] += 1
                if what == "ok":
                    break
            results = [t.result() for t in tasks]
            if results != [[i, k] for k in range(10)]:
                stats["wrong"].append(results)
            continue
        else:
            what, value = interrupts.guarded(obj.work)
            if what == "error" and value.startswith("TIMEOUT("):
                continue          # idle: the timeout is 100 ms
        if what == "error":
            stats["errors"].append(value)
        else:
            stats[what] += 1
    final = obj.do(fn, "final") if kind == "do" else None
    if kind == "run_tasks":
        task = obj.add_task(fn, "final")
        obj.run_tasks()
        final = task.result()
    emit(stats=stats, final=final, outside=interrupts.outside)


@pytest.fixture(scope="module")
def echo_fn(gearmand):
    yield from serve_echo(gearmand, "storm_echo", 2)


def storm(kind, gearmand, fn, during=None):
    """Run the child, storm it, then let it finish; ``during`` runs in the
    test while the storm goes on (in a thread)."""
    import threading
    stop_file = os.path.join(tempfile.mkdtemp(prefix="pygear-storm-"), "stop")
    child = Child(calling("tests.test_sigint_storm:storm_child"),
                  [kind, gearmand.host, gearmand.port, fn, stop_file])
    child.wait_for(b'{"ready"')
    side = threading.Thread(target=during) if during else None
    if side:
        side.start()
    sent = sigint_storm(child.pid, STORM_SECONDS)
    if side:
        side.join(60)
    time.sleep(0.2)             # the last SIGINTs arrive while it still loops
    open(stop_file, "w").close()
    done = child.finish(10)
    report = assert_clean(done)[-1]
    assert sent > 500, sent
    stats = report["stats"]
    assert stats["errors"] == [] and stats["wrong"] == [], report
    assert stats["KeyboardInterrupt"] > 0, ("the storm interrupted nothing", report)
    return report


def test_sigint_storm_during_do(gearmand, echo_fn):
    report = storm("do", gearmand, echo_fn)
    assert report["final"] == "final" and report["stats"]["ok"] > 0, report


def test_sigint_storm_during_run_tasks(gearmand, echo_fn):
    report = storm("run_tasks", gearmand, echo_fn)
    assert report["final"] == "final", report


def test_sigint_storm_during_work(gearmand):
    """Every job submitted while the worker is stormed is answered with its
    own result (an interrupted job goes back to gearmand and runs again)."""
    fn = unique_name("storm_work")
    tasks = []

    def submit():
        c = pygear.Client()
        c.add_server(gearmand.host, gearmand.port)
        c.set_timeout(30000)
        for batch in range(10):
            tasks.extend(c.add_task(fn, [batch, k]) for k in range(30))
            c.run_tasks()
        c.close()
    storm("work", gearmand, fn, during=submit)
    assert len(tasks) == 300
    assert [t.returncode() for t in tasks] == ["SUCCESS"] * 300
    assert [t.result() for t in tasks] == [[b, k] for b in range(10) for k in range(30)]

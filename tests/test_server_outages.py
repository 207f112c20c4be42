"""Servers that die in the middle of a batch (issue 10, items 7 and 10):

- run_tasks() over two servers, the first killed mid-run: every task is
  answered once (its complete callback fires once, with its own result),
  and no task that had finished is sent again (each job's runs are counted
  in the workers);
- a gearmand killed during a 5,000-task batch and started again 1.5 s
  later: the client is
  not wedged; run_tasks() again (as often as it raises) answers every task
  of the batch, and do() works.

The client runs in a child (the old core could crash); the test kills the
private gearmands when the child says it is mid-batch.
"""
import os
import tempfile
import time

import pytest

import pygear
from pygear._server import find_gearmand
from pygear.testing import unique_name

from .faultkit import Child, assert_clean, calling, emit, tally_counts, wait_workers

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(find_gearmand() is None, reason="needs a gearmand binary")]


def run_until_done(c, tasks, seconds=60.0):
    """run_tasks() until every task ended (each failure is reported)."""
    import time
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            c.run_tasks()
        except pygear.GearmanError as exc:
            emit(run_tasks_raised=repr(exc)[:200])
            time.sleep(0.2)
            continue
        if all(t.returncode() != "UNKNOWN_STATE" for t in tasks):
            return
    emit(gave_up=True)


def batch_child(servers, fn, count, tally_dir, signal_after, window):
    """One batch of ``count`` tasks; prints {"now": n} once n completed, so
    that the test can kill a server mid-run."""
    import time
    if os.path.exists(os.path.join(os.path.dirname(pygear.__file__), "_taskbook.py")):
        from pygear import _taskbook      # (the old core has none)
        _taskbook.WINDOW = int(window)      # most of the batch waits in Python
    count, signal_after = int(count), int(signal_after)
    c = pygear.Client()
    c.add_servers(servers)
    c.set_timeout(10000)
    completions = {}
    finished_before = []

    def on_complete(task):
        completions[task.result()] = completions.get(task.result(), 0) + 1
        if len(completions) == signal_after:
            finished_before.extend(completions)
            emit(now=len(completions))
    c.set_complete_fn(on_complete)
    workload = (lambda key: {"dir": tally_dir, "key": key, "sleep": 0.01}) if tally_dir != "-" \
        else (lambda key: key)
    keys = ["t%05d" % i for i in range(count)]
    tasks = [c.add_task(fn, workload(key)) for key in keys]
    run_until_done(c, tasks)
    ended = time.monotonic()
    wrong = [[k, t.returncode(), t.result()] for k, t in zip(keys, tasks) if t.result() != k]
    c.set_complete_fn(None)
    emit(wrong=wrong[:20], n_wrong=len(wrong),
         twice=sorted(k for k, n in completions.items() if n > 1)[:20],
         finished_before=finished_before, ended=ended, after=c.do(fn, workload("after")))


def batch_report(child, outage):
    """The child's lines and its last: every task answered once, with its
    own result, the batch still running at the ``outage``, do() working after."""
    report = assert_clean(child.finish(100))
    final = report[-1]
    assert final["ended"] > outage + 0.3, "the batch ended before the outage"
    assert final["n_wrong"] == 0 and final["twice"] == [], final
    assert final["after"] == "after"
    return report, final


def test_first_of_two_servers_killed_mid_run_tasks(servers, workers):
    a, b = servers(), servers()
    fn = unique_name("outage_two")
    for g in (a, b):         # a worker per server: the client's behaviour is tested
        workers(g.address, {fn: "tally"}, lenient=True)
        wait_workers(g.host, g.port, fn)
    tally_dir = tempfile.mkdtemp(prefix="pygear-outage-")
    child = Child(calling("tests.test_server_outages:batch_child"),
                  ["%s,%s" % (a.address, b.address), fn, 300, tally_dir, 60, 1000])
    child.wait_for(b'{"now"', timeout=60)
    a.kill()
    killed = time.monotonic()
    report, final = batch_report(child, killed)
    counts = tally_counts(tally_dir)
    keys = ["t%05d" % i for i in range(300)]
    assert set(keys) <= set(counts), sorted(set(keys) - set(counts))[:10]
    # a task that had finished before the kill never ran again
    resent = {k: counts[k] for k in final["finished_before"] if counts[k] != 1}
    assert resent == {}, resent


def test_gearmand_restarted_during_a_5000_task_batch(servers, workers):
    g = servers()
    fn = unique_name("outage_restart")
    for _ in range(2):
        workers(g.address, {fn: "slow_echo"}, lenient=True)
    wait_workers(g.host, g.port, fn, 2)
    child = Child(calling("tests.test_server_outages:batch_child"),
                  [g.address, fn, 5000, "-", 1000, 200])
    child.wait_for(b'{"now"', timeout=60)
    g.kill()
    time.sleep(1.5)          # an outage: run_tasks meanwhile may raise
    g.restart()
    restarted = time.monotonic()
    report, final = batch_report(child, restarted)
    assert not any("gave_up" in line for line in report), report[-5:]

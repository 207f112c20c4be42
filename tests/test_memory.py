"""Memory (issue 4, item 6): long loops whose RSS, after the first 10%,
grows by less than 5 MB.  Each loop runs in a child interpreter that reads
its own RSS from /proc/self/statm; job functions run in worker processes.
Marked slow (``make test`` runs them, ``make test-fast`` skips them)."""
import sys

import pytest

from pygear.testing import unique_name

from .faultkit import describe, last_json, run_python, serve_echo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240),
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="reads /proc/self/statm")]

LIMIT = 5 * 1024 * 1024

LOOP = r'''
import gc, json, sys, time
import pygear
from tests.faultkit import rss_bytes

mode, host, port, fn, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
tenth = total // 10
marks = {}

def client():
    c = pygear.Client()
    c.add_server(host, port)
    c.set_timeout(20000)
    return c

def mark(i):
    if i == tenth or i == total:
        gc.collect()
        marks[i] = rss_bytes()

start = time.monotonic()
if mode == "do":
    c = client()
    for i in range(1, total + 1):
        assert c.do(fn, i) == i
        mark(i)
elif mode == "tasks":
    c = client()
    batch = 1000
    for b in range(1, total // batch + 1):
        tasks = [c.add_task(fn, k) for k in range(batch)]
        c.run_tasks()
        assert tasks[-1].result() == batch - 1
        del tasks
        mark(b * batch)
elif mode == "work":
    w = pygear.Worker()
    w.add_server(host, port)
    w.add_function(fn, 0, lambda job: job.workload())
    w.set_timeout(20000)
    for i in range(1, total + 1):
        w.work()
        mark(i)
elif mode == "cycles":
    for i in range(1, total + 1):
        c = pygear.Client()
        c.add_server(host, port)
        c.set_timeout(100)
        c.close()
        w = pygear.Worker()
        w.add_server(host, port)
        w.add_function(fn, 0, lambda job: None)
        if i % 2:
            w.close()
        del c, w
        mark(i)
print(json.dumps({"after_tenth": marks[tenth], "end": marks[total],
                  "seconds": time.monotonic() - start}), flush=True)
'''


def run_loop(gearmand, mode, fn, total, timeout=200):
    proc = run_python(LOOP, [mode, gearmand.host, str(gearmand.port), fn, str(total)],
                      timeout=timeout)
    assert proc.returncode == 0, describe(proc)
    report = last_json(proc.stdout)
    growth = report["end"] - report["after_tenth"]
    assert growth < LIMIT, "%s: RSS grew by %.1f MB after the first 10%% (%r)" % (
        mode, growth / 2.0 ** 20, report)
    return report


@pytest.fixture(scope="module")
def echo_fn(gearmand):
    yield from serve_echo(gearmand, "mem_echo", 2)


def test_100k_do_round_trips(gearmand, echo_fn):
    run_loop(gearmand, "do", echo_fn, 100000)


def test_100k_tasks_in_batches(gearmand, echo_fn):
    run_loop(gearmand, "tasks", echo_fn, 100000)


FEED = r'''
import sys
import pygear
host, port, fn, total = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
c = pygear.Client()
c.add_server(host, port)
c.set_timeout(20000)
for b in range(total // 1000):
    for k in range(1000):
        c.add_task_background(fn, b * 1000 + k)
    c.run_tasks()
print("{}", flush=True)
'''


def test_100k_worker_jobs(gearmand):
    fn = unique_name("mem_work")
    feed = run_python(FEED, [gearmand.host, str(gearmand.port), fn, "100000"], timeout=120)
    assert feed.returncode == 0, describe(feed)
    run_loop(gearmand, "work", fn, 100000)


def test_10k_create_close_cycles(gearmand):
    run_loop(gearmand, "cycles", unique_name("mem_cycle"), 10000)

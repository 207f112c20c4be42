"""What recording jobs in a pygear.metrics.Recorder costs:
``python -m bench.recorder_cost [--jobs N] [--rounds R]``.

1. timeit of the calls the hooks make, per recorded job (client: two
   perf_counter() calls, submitted() and finished(); worker: two
   perf_counter() calls and job_done()), and prometheus_client's nearest
   equivalent when it is installed.
2. do() round trips against a private gearmand served by a worker process,
   with and without a Recorder set, in alternating rounds.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import pygear  # noqa: E402
from pygear import metrics  # noqa: E402
from pygear._server import GearmandProcess  # noqa: E402
from pygear.testing import GearmandServer, WorkerProcesses  # noqa: E402

SETUP = ("from pygear.metrics import Recorder; from time import perf_counter; "
         "rec = Recorder(); rec.submitted('reverse'); rec.finished('reverse', 'complete', 0.1); "
         "rec.job_done('reverse', 'complete', 0.1)")
CALLS = {
    "submitted()": "rec.submitted('reverse')",
    "finished()": "rec.finished('reverse', 'complete', 0.0003)",
    "job_done()": "rec.job_done('reverse', 'complete', 0.0003)",
    "client job (2 perf_counter, submitted, finished)":
        "t = perf_counter(); rec.submitted('reverse'); "
        "rec.finished('reverse', 'complete', perf_counter() - t)",
    "worker job (2 perf_counter, job_done)":
        "t = perf_counter(); rec.job_done('reverse', 'complete', perf_counter() - t)",
}
PROMETHEUS_CLIENT = (
    "from prometheus_client import CollectorRegistry, Counter, Histogram; "
    "r = CollectorRegistry(); h = Histogram('d_seconds', 'd', ['function'], registry=r); "
    "c = Counter('j', 'j', ['function', 'outcome'], registry=r)",
    "h.labels('reverse').observe(0.0003); c.labels('reverse', 'complete').inc()")


def ns_per_call(stmt: str, setup: str, number: int = 200000) -> float:
    return min(timeit.repeat(stmt, setup, number=number, repeat=5)) / number * 1e9


def reverse(job):
    return job.workload()[::-1]


def do_rounds(jobs: int, rounds: int) -> None:
    server = GearmandProcess().start()
    procs = WorkerProcesses(GearmandServer(server.host, server.port))
    try:
        procs.start({"reverse": reverse})
        client = pygear.Client()
        client.add_server(server.host, server.port)
        client.set_timeout(10000)
        for _ in range(200):   # connect, warm up
            client.do("reverse", "warm")
        times = {"without recorder": [], "with recorder": []}
        rec = metrics.Recorder()
        for _ in range(rounds):
            for mode in times:
                client.set_metrics(rec if mode == "with recorder" else None)
                start = time.perf_counter()
                for _ in range(jobs):
                    client.do("reverse", "hello")
                times[mode].append((time.perf_counter() - start) / jobs * 1e6)
        client.close()
        for mode, values in times.items():
            print("  do() %-17s median %.1f us per job (rounds: %s)"
                  % (mode, statistics.median(values), " ".join("%.1f" % v for v in values)))
        delta = statistics.median(times["with recorder"]) - statistics.median(
            times["without recorder"])
        print("  difference: %+.2f us per job (round-to-round noise is larger)" % delta)
    finally:
        procs.stop_all()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("Recorder calls (timeit, best of 5, %s):" % sys.version.split()[0])
    for label, stmt in CALLS.items():
        print("  %-50s %6.0f ns" % (label, ns_per_call(stmt, SETUP)))
    try:
        import prometheus_client  # noqa: F401
        print("  %-50s %6.0f ns" % ("prometheus_client Histogram+Counter .labels()",
                                    ns_per_call(PROMETHEUS_CLIENT[1], PROMETHEUS_CLIENT[0],
                                                number=50000)))
    except ImportError:
        pass
    print("do() round trips, %d jobs x %d rounds:" % (args.jobs, args.rounds))
    do_rounds(args.jobs, args.rounds)


if __name__ == "__main__":
    main()

"""Job functions for tests/test_cli.py: served by `pygear work --call
cli_jobs:NAME` and by gearman_worker_process (both import them by name)."""
import os
import time


def upper(job):
    """RAW: "boom" raises, "fail" fails, "sleep S" sleeps, else upper-cases."""
    data = job.raw_workload()
    if data == b"boom":
        raise ValueError("boom!")
    if data == b"fail":
        job.send_fail()
        return None
    if data.startswith(b"sleep "):
        time.sleep(float(data.split()[1]))
        return b"slept"
    return data.upper()


def unique(job):
    return (job.unique() or "").encode()


def pid(job):
    time.sleep(float(job.raw_workload() or 0))
    return str(os.getpid()).encode()


def add(job):
    w = job.workload()
    return {"sum": w["a"] + w["b"]}


def json_complaint(job):
    """Raises an error that names JSON although the workload was fine."""
    raise ValueError("this JSON has no 'name' key: %r" % job.raw_workload())

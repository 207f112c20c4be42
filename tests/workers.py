"""Job functions served by worker processes in the tests (module level, so
that spawned children can import them)."""
import os
import time


def reverse(job):
    return job.workload()[::-1]


def echo(job):
    return job.workload()


def echo_unique(job):
    return {"unique": job.unique(), "handle": job.handle(),
            "function": job.function_name(), "size": job.workload_size()}


def raw_echo(job):
    return job.raw_workload()


def boom(job):
    raise ValueError("I can't spell backwards!", 42)


def fail(job):
    job.send_fail()


def chatty(job):
    job.send_status(1, 3)
    job.send_data({"chunk": 1})
    job.send_warning("careful")
    job.send_status(3, 3)
    return "finished"


def sleepy(job):
    time.sleep(float(job.workload()))
    return "slept"


def pid(job):
    return os.getpid()


def explicit_complete(job):
    job.send_complete("sent by hand")
    return "ignored"


def explicit_exception(job):
    job.send_exception({"why": "custom"})


def unserializable(job):
    return object()

"""Reverse worker (seed example): serves "reverse" until Ctrl-C."""
import pygear


def reverse(job):
    workload = job.workload()
    return workload[::-1]


w = pygear.Worker()
w.add_server('localhost', 4730)
w.add_function("reverse", 0, reverse)

while True:
    try:
        w.set_timeout(1000)  # yield
        w.work()
    except pygear.TIMEOUT:
        pass

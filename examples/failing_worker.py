"""Failure handling, worker side (seed example): one job, which raises."""
import pygear


def reverse(job):
    raise Exception("I can't spell backwards!")


w = pygear.Worker()
w.add_server('localhost', 4730)
w.add_function("reverse", 0, reverse)
w.work()

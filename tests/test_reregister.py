"""Registering a function again on a connected worker (issue 10, item 12):
after every sequence of add_function / register / unregister /
unregister_all (with and without a job served before), gearmand lists
exactly one available worker for the function, and a job is really served
by it.  The old core left gearmand with no available worker after several
such sequences, and the jobs waited forever.
"""
import time

import pytest

import pygear
from pygear.testing import unique_name

from .faultkit import ServeInThread

pytestmark = pytest.mark.timeout(60)


def served(tag):
    return lambda job: [tag, job.workload()]


# Each step: (method, which name) on the worker; "work" serves one job of f
# first, so that the worker is connected and registered when the rest come.
SEQUENCES = {
    "same name twice": [("add", "f"), ("add", "f")],
    "work, same name twice": [("add", "f"), ("work", "f"), ("add", "f")],
    "unregister, add": [("add", "f"), ("unregister", "f"), ("add", "f")],
    "work, unregister, add": [("add", "f"), ("work", "f"), ("unregister", "f"), ("add", "f")],
    "unregister_all, add": [("add", "f"), ("unregister_all", None), ("add", "f")],
    "work, unregister_all, add": [("add", "f"), ("work", "f"), ("unregister_all", None),
                                  ("add", "f")],
    "other, then re-add": [("add", "f"), ("add", "g"), ("add", "f")],
    "work, other, then re-add": [("add", "f"), ("work", "f"), ("add", "g"), ("add", "f")],
    "other added and dropped": [("add", "f"), ("add", "g"), ("unregister", "g")],
    "work, other added and dropped": [("add", "f"), ("work", "f"), ("add", "g"),
                                      ("unregister", "g")],
    "register, then a function": [("register", "f"), ("add", "f")],
    "work, register, then a function": [("add", "f"), ("work", "f"), ("register", "f"),
                                        ("add", "f")],
    "work on another, then add": [("add", "g"), ("work", "g"), ("add", "f")],
    "twice unregistered and re-added": [("add", "f"), ("work", "f"), ("unregister", "f"),
                                        ("add", "f"), ("work", "f"), ("unregister", "f"),
                                        ("add", "f")],
}


def available(gearmand, name):
    with pygear.Admin(gearmand.host, gearmand.port, timeout=5) as admin:
        for row in admin.status():
            if row["function"] == name:
                return row["available_workers"]
    return 0


@pytest.mark.parametrize("sequence", list(SEQUENCES))
def test_one_available_worker_after_registering_again(gearmand, sequence):
    names = {"f": unique_name("rereg_f"), "g": unique_name("rereg_g")}
    w = pygear.Worker()
    w.add_server(gearmand.host, gearmand.port)
    w.set_timeout(5000)
    c = pygear.Client()
    c.add_server(gearmand.host, gearmand.port)
    c.set_timeout(5000)
    try:
        for step, (what, which) in enumerate(SEQUENCES[sequence]):
            name = names.get(which)
            if what == "add":
                w.add_function(name, 0, served("step %d" % step))
            elif what == "register":
                w.register(name)
            elif what == "unregister":
                w.unregister(name)
            elif what == "unregister_all":
                w.unregister_all()
            elif what == "work":
                c.do_background(name, "before")
                w.work()
        w.set_timeout(100)
        with ServeInThread(w):
            deadline = time.monotonic() + 3
            while available(gearmand, names["f"]) != 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)      # a second registration would show by now
            assert available(gearmand, names["f"]) == 1
            result = c.do(names["f"], "job")
            assert result[1] == "job"
    finally:
        w.close()
        c.close()

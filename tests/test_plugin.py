"""The pytest plugin (pygear.testing) as a user's own suite sees it: small
external test files run with pytester."""
from __future__ import annotations

import json
import os
import socket
import time

import pytest

import pygear.testing

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Installed, the pytest11 entry point loads the plugin by itself (loading it
# again with -p would register it twice); from a checkout, name it.
PLUGIN_ARGS = [] if pygear.testing.entry_point_installed() else ["-p", "pygear.testing"]

THREE_LINES = """
def test_gearmand_answers(gearmand):
    import pygear
    assert pygear.Admin(gearmand.host, gearmand.port).version()
"""

USER_SUITE = """
import pygear
from pygear.testing import unique_name

REVERSE, ECHO = unique_name("user_reverse"), unique_name("user_echo")

def reverse(job):
    return job.workload()[::-1]

def test_fixture_fields(gearmand):
    assert gearmand.host and gearmand.port > 0
    assert gearmand.address.endswith(":%d" % gearmand.port)

def test_worker_process(gearmand, gearman_client, gearman_worker_process):
    gearman_worker_process.start({REVERSE: reverse})
    assert gearman_client.do(REVERSE, "hello") == "olleh"

def test_client_and_worker(gearman_client, gearman_worker):
    gearman_worker.add_function(ECHO, 0, lambda job: job.workload())
    gearman_client.do_background(ECHO, {"x": 1})
    gearman_worker.work()
"""


@pytest.fixture
def no_gearman_server(monkeypatch):
    monkeypatch.delenv("GEARMAN_SERVER", raising=False)


def test_three_line_file_with_a_private_gearmand(pytester, no_gearman_server):
    pytester.makepyfile(THREE_LINES)
    result = pytester.runpytest(*PLUGIN_ARGS)
    result.assert_outcomes(passed=1)


def test_user_suite_uses_every_fixture(pytester, gearmand, monkeypatch):
    # Against the outer suite's server, named as a user would name theirs.
    monkeypatch.setenv("GEARMAN_SERVER", gearmand.address)
    pytester.makepyfile(USER_SUITE)
    result = pytester.runpytest(*PLUGIN_ARGS)
    result.assert_outcomes(passed=3)


def test_in_a_fresh_python_process(pytester, no_gearman_server, monkeypatch):
    """As a user runs it: a new interpreter, the plugin found by entry point
    or by -p."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    pytester.makepyfile(THREE_LINES)
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS, timeout=100)
    result.assert_outcomes(passed=1)


def test_skips_with_a_reason_when_there_is_no_gearmand(pytester, no_gearman_server,
                                                       monkeypatch):
    monkeypatch.setattr(pygear.testing, "find_gearmand", lambda: None)
    pytester.makepyfile(THREE_LINES)
    result = pytester.runpytest(*PLUGIN_ARGS, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no gearmand*GEARMAN_SERVER*"])


def test_report_header_names_the_library(pytester):
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(*PLUGIN_ARGS)
    result.stdout.fnmatch_lines(["pygear: *gearmand: *"])


# --- gearmand_cluster ---------------------------------------------------------------

CLUSTER_SUITE = """
import json, os, socket
import pytest
import pygear

def record(cluster):
    with open("pids.txt", "a") as f:
        for s in cluster.servers:
            f.write("%d %d\\n" % (s.pid, s.port))

def answers(address):
    host, port = address.rsplit(":", 1)
    return pygear.Admin(host, int(port), timeout=5).version()

def test_three_by_default(gearmand_cluster):
    record(gearmand_cluster)
    assert len(gearmand_cluster.addresses) == 3 == len(set(gearmand_cluster.addresses))
    assert all(answers(a) for a in gearmand_cluster.addresses)
    assert os.environ["GEARMAN_SERVER"] not in gearmand_cluster.addresses
    assert len({s.pid for s in gearmand_cluster.servers}) == 3

@pytest.mark.gearmand_cluster(count=2)
def test_marker_asks_for_two(gearmand_cluster):
    record(gearmand_cluster)
    assert len(gearmand_cluster.servers) == 2

@pytest.mark.parametrize("gearmand_cluster", [{"count": 1}, 4], indirect=True)
def test_indirect_parameter(gearmand_cluster):
    record(gearmand_cluster)
    assert len(gearmand_cluster.addresses) in (1, 4)

def test_factory_makes_several(gearmand_cluster_factory):
    a, b = gearmand_cluster_factory(2), gearmand_cluster_factory(count=1)
    record(a); record(b)
    assert not set(a.addresses) & set(b.addresses)

def test_kill_and_restart(gearmand_cluster):
    record(gearmand_cluster)
    server = gearmand_cluster.servers[1]
    address, pid = gearmand_cluster.addresses[1], server.pid
    gearmand_cluster.kill(1)
    assert not server.alive
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2).close()
    assert answers(gearmand_cluster.addresses[0])
    gearmand_cluster.restart(1)
    record(gearmand_cluster)
    assert gearmand_cluster.addresses[1] == address and server.pid != pid
    assert answers(address)
"""


def test_cluster_fixture_in_a_user_suite(pytester, monkeypatch):
    # GEARMAN_SERVER names a server, one that refuses: the cluster stays
    # private all the same, and never even asks it.
    monkeypatch.setenv("GEARMAN_SERVER", "127.0.0.1:1")
    pytester.makepyfile(CLUSTER_SUITE)
    result = pytester.runpytest(*PLUGIN_ARGS, "--strict-markers")
    result.assert_outcomes(passed=6)
    started = [tuple(map(int, line.split()))
               for line in (pytester.path / "pids.txt").read_text().split("\n") if line]
    # default, marker, indirect (1 and 4), factory (2 + 1), kill test (3 + the restarted one)
    assert len({pid for pid, _ in started}) == 3 + 2 + 1 + 4 + (2 + 1) + (3 + 1)
    for pid, port in started:            # every one was stopped, by pid
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_cluster_skips_with_a_reason_when_there_is_no_gearmand(pytester, monkeypatch):
    monkeypatch.setattr(pygear.testing, "find_gearmand", lambda: None)
    pytester.makepyfile("def test_c(gearmand_cluster): pass")
    result = pytester.runpytest(*PLUGIN_ARGS, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no gearmand binary*gearmand_cluster*"])


def test_cluster_refuses_a_bad_count(gearmand_cluster_factory):
    for count in (0, -1, "3", True):
        with pytest.raises(ValueError, match="count must be a positive int"):
            gearmand_cluster_factory(count)
    with pytest.raises(ValueError, match="queue must be one of"):
        gearmand_cluster_factory(1, queue="mysql")


def _submit_background(address, function, workload):
    host, port = address.rsplit(":", 1)
    with pygear.Client() as c:
        c.add_server(host, int(port))
        c.set_timeout(5000)
        return c.do_background(function, workload)


def _total(address, function, timeout=5.0):
    host, port = address.rsplit(":", 1)
    with pygear.Admin(host, int(port), timeout=timeout) as admin:
        return {row["function"]: row["total"] for row in admin.status()}.get(function, 0)


@pytest.mark.gearmand_cluster(count=2, queue="sqlite")
def test_sqlite_queue_keeps_a_background_job_across_kill_and_restart(gearmand_cluster):
    fn = pygear.testing.unique_name("durable")
    address = gearmand_cluster.addresses[1]
    _submit_background(address, fn, {"n": 42})
    assert _total(address, fn) == 1
    gearmand_cluster.kill(1)
    with pytest.raises(ConnectionError):
        _total(address, fn, timeout=2)
    gearmand_cluster.restart(1)
    assert _total(address, fn) == 1                      # queued again
    assert _total(gearmand_cluster.addresses[0], fn) == 0
    server, seen = gearmand_cluster.servers[1], []
    with pygear.Worker() as w:                          # and it still runs
        w.add_server(server.host, server.port)
        w.set_timeout(5000)
        w.add_function(fn, 0, lambda job: seen.append(job.workload()))
        w.work()
    assert seen == [{"n": 42}]
    assert _total(address, fn) == 0


def test_without_a_queue_a_kill_loses_background_jobs(gearmand_cluster):
    """The contrast that makes the test above mean something."""
    fn = pygear.testing.unique_name("volatile")
    address = gearmand_cluster.addresses[0]
    _submit_background(address, fn, "x")
    assert _total(address, fn) == 1
    gearmand_cluster.kill(0)
    gearmand_cluster.restart(0)
    assert _total(address, fn) == 0


# --- GEARMAN_SERVER: failing fast, leaving the server clean --------------------------

def test_a_refusing_gearman_server_fails_fast_saying_what_to_do(pytester, monkeypatch):
    from pygear._server import free_port
    named = "127.0.0.1:%d" % free_port()        # nothing listens there
    monkeypatch.setenv("GEARMAN_SERVER", named)
    pytester.makepyfile(THREE_LINES + "\ndef test_again(gearmand):\n    pass\n")
    started = time.monotonic()
    result = pytester.runpytest(*PLUGIN_ARGS)
    assert time.monotonic() - started < 5      # not the 10 s answer timeout
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([
        "*GEARMAN_SERVER=%s refuses connections (Connection refused): start it "
        "(docker compose up -d gearmand) or unset GEARMAN_SERVER*" % named])


def test_an_unresolvable_gearman_server_fails_fast(pytester, monkeypatch):
    monkeypatch.setenv("GEARMAN_SERVER", "no-such-host.invalid:4730")
    pytester.makepyfile(THREE_LINES)
    result = pytester.runpytest(*PLUGIN_ARGS)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*GEARMAN_SERVER=no-such-host.invalid:4730: cannot resolve*"])


LEAVES_JOBS = """
import json
import pygear
from pygear.testing import unique_name

QUEUED, SERVED, CANCELLED = unique_name("queued"), unique_name("served"), unique_name("cancel")
NAMESPACED = "ns1_" + unique_name("nsfn")   # as a worker with set_namespace("ns1_") sees it
KEPT = "kept_%s" % __import__("uuid").uuid4().hex   # not unique_name(): not the suite's to drop

def test_leave_things_behind(gearmand, gearman_client, gearman_worker):
    handles = [gearman_client.do_background(QUEUED, i)["job_handle"] for i in range(5)]
    handles.append(gearman_client.do_background(KEPT, "x")["job_handle"])
    handles.append(gearman_client.do_background(NAMESPACED, "x")["job_handle"])
    handles.append(gearman_client.do_background(CANCELLED, "x")["job_handle"])
    admin = pygear.Admin(gearmand.host, gearmand.port, timeout=5)
    admin.cancel_job(handles[-1])
    gearman_worker.add_function(SERVED, 0, lambda job: None)
    gearman_worker.set_timeout(200)
    try:
        gearman_worker.work()          # CAN_DO goes out with the first grab
    except pygear.TIMEOUT:
        pass
    names = {r["function"] for r in admin.status()}
    assert {QUEUED, SERVED, CANCELLED, KEPT, NAMESPACED} <= names
    with open("left.json", "w") as f:
        json.dump({"names": [QUEUED, SERVED, CANCELLED, NAMESPACED], "kept": KEPT,
                   "handles": handles}, f)
"""


def test_a_shared_server_is_left_clean(pytester, gearmand, monkeypatch):
    monkeypatch.setenv("GEARMAN_SERVER", gearmand.address)
    pytester.makepyfile(LEAVES_JOBS)
    result = pytester.runpytest(*PLUGIN_ARGS, "-W", "error::UserWarning")
    result.assert_outcomes(passed=1)
    left = json.loads((pytester.path / "left.json").read_text())
    with pygear.Admin(gearmand.host, gearmand.port, timeout=5) as admin:
        status = {r["function"]: r for r in admin.status()}
        assert not set(left["names"]) & set(status)
        assert status[left["kept"]]["total"] == 1          # not ours: untouched
        jobs = {j["handle"] for j in admin.show_jobs()}
        # gearmand numbers handles per server, and this one is shared: only
        # the job of the kept function may remain of the eight.
        assert len(jobs & set(left["handles"])) <= 1
        assert pygear.testing.release_functions(gearmand.host, gearmand.port,
                                                [left["kept"]]) == []
        assert left["kept"] not in {r["function"] for r in admin.status()}


def test_release_functions_says_what_it_could_not_drop(gearmand, gearman_worker):
    name = pygear.testing.unique_name("busy")
    gearman_worker.add_function(name, 0, lambda job: None)
    gearman_worker.set_timeout(200)
    with pytest.raises(pygear.TIMEOUT):
        gearman_worker.work()                   # registered, and still connected
    left = pygear.testing.release_functions(gearmand.host, gearmand.port, [name],
                                            timeout=1.0)
    assert len(left) == 1 and left[0].startswith(name) and "1 workers" in left[0]

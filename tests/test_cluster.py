"""Several gearmands, one cluster (SPEC "Several servers: one cluster";
issue 11, item 6), against real private gearmands (the gearmand_cluster
fixture): placement, failover under SIGKILL, silent and non-Gearman
servers, status routing, worker recovery, and what a sqlite queue keeps.

The workers run in threads of this process, one pygear Worker per server
(tests/faultkit.ClusterWorkers), and record which server ran each job: a
job returns [that server's address, its workload], so every answer says
where it ran, and the runs say how often each workload ran."""
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

import pygear
from pygear.testing import unique_name

from .clikit import wait_until
from .faultkit import (ROOT, BlackHole, ClusterWorkers, HeldJob, NotGearman, ServingThread,
                       child_env, dead_port, handles_on, queued_on, split_address,
                       stop_process, wait_workers)

pytestmark = pytest.mark.timeout(90)

QUEUED = {"is_known": True, "is_running": False, "numerator": 0, "denominator": 0}
UNKNOWN = {"is_known": False, "is_running": False, "numerator": 0, "denominator": 0}


def cluster_client(addresses, timeout=10000):
    c = pygear.Client(",".join(addresses))
    c.set_timeout(timeout)
    return c


def assert_fair(counts, addresses, total, slack):
    """Every server got total/len(addresses) jobs, give or take ``slack`` of that."""
    share = total / len(addresses)
    assert sum(counts.values()) == total, counts
    for address in addresses:
        assert abs(counts[address] - share) <= share * slack, (address, counts)


@pytest.fixture
def served(gearmand_cluster):
    """A function served by one worker per server of the cluster."""
    workers = ClusterWorkers(gearmand_cluster.addresses, unique_name("served")).start()
    yield workers
    workers.stop()


def held_twin(addresses, home, fn, unique=None, numerator=3, denominator=7):
    """On the server of ``addresses`` that is not ``home``, a job for ``fn``
    (with ``unique``) that a worker holds running at numerator/denominator:
    (that server, the job's handle, its HeldJob)."""
    elsewhere = next(a for a in addresses if a != home)
    with cluster_client([elsewhere]) as direct:
        handle = direct.do_background(fn, "theirs", unique=unique)["job_handle"]
    return elsewhere, handle, HeldJob(elsewhere, fn, numerator, denominator)


# --- placement: spreading -------------------------------------------------------------

def test_do_without_keys_spreads_over_the_servers(gearmand_cluster, served):
    addresses = gearmand_cluster.addresses
    answered = Counter()
    with cluster_client(addresses) as c:
        for i in range(300):
            server, echoed = c.do(served.name, i)
            assert echoed == i
            answered[server] += 1
    assert_fair(answered, addresses, 300, 0.1)
    assert served.per_server() == answered


def test_do_background_without_keys_spreads_and_says_where(gearmand_cluster):
    addresses = gearmand_cluster.addresses
    fn = unique_name("spread_bg")
    with cluster_client(addresses) as c:
        submitted = [c.do_background(fn, i) for i in range(300)]
    for sub in submitted:
        assert set(sub) == {"result", "job_handle", "server"} and sub["result"] is None
    said = Counter(sub["server"] for sub in submitted)
    assert_fair(said, addresses, 300, 0.1)
    # gearmand agrees: each server holds the jobs pygear says it put there
    assert {a: queued_on(a, fn) for a in addresses} == dict(said)
    for address in addresses:
        held = handles_on(address)
        assert all(s["job_handle"] in held for s in submitted if s["server"] == address)


def test_a_batch_of_tasks_spreads(gearmand_cluster, served):
    addresses = gearmand_cluster.addresses
    fn_bg = unique_name("spread_tbg")
    with cluster_client(addresses) as c:
        tasks = [c.add_task(served.name, i) for i in range(300)]
        background = [c.add_task_background(fn_bg, i) for i in range(300)]
        c.run_tasks()
    for i, task in enumerate(tasks):
        assert task.returncode() == "SUCCESS"
        assert task.result() == [task.server(), i]      # it ran where Task.server() says
    assert_fair(Counter(t.server() for t in tasks), addresses, 300, 0.1)
    placed = Counter(t.server() for t in background)
    assert_fair(placed, addresses, 300, 0.1)
    assert {a: queued_on(a, fn_bg) for a in addresses} == dict(placed)


# --- placement: unique keys ------------------------------------------------------------

def test_jobs_with_one_key_meet_on_one_server_and_are_coalesced(gearmand_cluster):
    addresses = gearmand_cluster.addresses
    fn = unique_name("key")
    with cluster_client(addresses) as c, cluster_client(addresses[::-1]) as other:
        first = c.do_background(fn, "first", unique="order-42")
        again = [c.do_background(fn, i, unique="order-42") for i in range(5)]
        # another client, given the servers in another order, agrees
        again += [other.do_background(fn, "other", unique="order-42") for _ in range(3)]
        task = c.add_task_background(fn, "task", unique="order-42")
        c.run_tasks()
    home = first["server"]
    assert all(r["server"] == home and r["job_handle"] == first["job_handle"] for r in again)
    assert task.server() == home and task.job_handle() == first["job_handle"]
    # gearmand coalesced them into one job
    assert {a: queued_on(a, fn) for a in addresses} == {a: int(a == home) for a in addresses}


def test_foreground_jobs_with_one_key_run_once_for_every_caller(gearmand_cluster):
    addresses = gearmand_cluster.addresses
    workers = ClusterWorkers(addresses, unique_name("coalesce"), delay=0.5).start()
    answers, errors = [], []
    together = threading.Barrier(3)

    def call(i):
        try:
            # each client given the servers in another order
            with cluster_client(addresses[i:] + addresses[:i]) as c:
                c.echo(b"connected")
                together.wait(10)
                answers.append(c.do(workers.name, "shared", unique="report-7"))
        except Exception as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        assert len(answers) == 3 and len({json.dumps(a) for a in answers}) == 1, answers
        assert workers.executions()[json.dumps("shared")] == 1
    finally:
        workers.stop()


def test_keys_spread_and_a_dead_server_moves_only_its_own(gearmand_cluster):
    addresses = gearmand_cluster.addresses
    victim = addresses[1]
    keys = ["user-%d" % i for i in range(300)]
    with cluster_client(addresses) as c:
        before = {k: c.do_background(unique_name("k1"), k, unique=k)["server"] for k in keys}
        assert_fair(Counter(before.values()), addresses, 300, 0.35)
        gearmand_cluster.kill(1)
        after = {k: c.do_background(unique_name("k2"), k, unique=k)["server"] for k in keys}
        for k in keys:
            if before[k] != victim:
                assert after[k] == before[k], k          # a survivor's key did not move
        moved = Counter(after[k] for k in keys if before[k] == victim)
        assert set(moved) == set(addresses) - {victim}, moved   # spread over both survivors
        # back: once its backoff is over, the victim gets its own keys again
        gearmand_cluster.restart(1)
        home = next(k for k in keys if before[k] == victim)
        wait_until(lambda: c.do_background(unique_name("k3"), 1, unique=home)["server"] == victim,
                   35, "the restarted server to take its keys back")
        again = {k: c.do_background(unique_name("k4"), k, unique=k)["server"] for k in keys}
        assert again == before


# --- failover: SIGKILL in the middle of the traffic ---------------------------------------

@pytest.mark.timeout(120)
def test_server_killed_mid_stream_of_do_calls(gearmand_cluster, served):
    """Three threads, each a Client over the three servers, call do() in a
    loop; server 1 is SIGKILLed midway.  Every call returns its own
    workload: none raises, none is lost, none gets another's answer.  A job
    whose server died may run twice (at least once), never zero times."""
    addresses, victim = gearmand_cluster.addresses, gearmand_cluster.addresses[1]
    per_thread, callers = 300, 3
    answers, errors = [], []
    dead_since = [float("inf")]

    def caller(t):
        with cluster_client(addresses, timeout=15000) as c:
            for i in range(per_thread):
                started = time.monotonic()
                try:
                    server, echoed = c.do(served.name, [t, i])
                except Exception as exc:
                    errors.append(([t, i], exc))
                    continue
                answers.append(([t, i], echoed, server, started))

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(callers)]
    for t in threads:
        t.start()
    wait_until(lambda: len(answers) >= 200 or not any(t.is_alive() for t in threads), 30,
               "200 answers")
    gearmand_cluster.kill(1)
    dead_since[0] = time.monotonic()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a caller is stuck"
    assert not errors, errors[:5]
    assert len(answers) == per_thread * callers
    assert all(sent == echoed for sent, echoed, _, _ in answers)
    assert sorted(json.dumps(a[0]) for a in answers) == sorted(
        json.dumps([t, i]) for t in range(callers) for i in range(per_thread))
    later = [server for _, _, server, started in answers if started > dead_since[0]]
    assert later and victim not in later
    assert len(later) >= 0.5 * per_thread, "the kill came too late to test anything"
    runs = served.executions()
    every = [json.dumps([t, i]) for t in range(callers) for i in range(per_thread)]
    assert all(runs[w] >= 1 for w in every)
    # at most the one job each caller had in flight on the dead server ran again
    assert sum(runs[w] - 1 for w in every) <= callers, [w for w in every if runs[w] > 1]


@pytest.mark.timeout(120)
def test_server_killed_mid_run_of_5000_tasks(gearmand_cluster, served):
    """One run_tasks() over 5,000 tasks spread over three servers; server 1
    is SIGKILLed once 1,500 have completed.  Every task ends with its own
    result and its complete callback fires once; the tasks of the dead
    server go to the others; a task that had completed is never sent again."""
    addresses, victim = gearmand_cluster.addresses, gearmand_cluster.addresses[1]
    count = 5000
    completed = []
    halfway = threading.Event()
    before_kill = []

    def on_complete(task):
        completed.append(json.dumps(task.result()[1]))
        if len(completed) >= 1500:
            halfway.set()

    def killer():
        if halfway.wait(60):
            before_kill.extend(completed)       # what had completed before the kill
            gearmand_cluster.kill(1)

    kill_thread = threading.Thread(target=killer)
    kill_thread.start()
    try:
        with cluster_client(addresses, timeout=60000) as c:
            c.set_complete_fn(on_complete)
            tasks = [c.add_task(served.name, i) for i in range(count)]
            c.run_tasks()
    finally:
        halfway.set()
        kill_thread.join(30)
    assert before_kill and not gearmand_cluster.servers[1].alive
    for i, task in enumerate(tasks):
        assert task.returncode() == "SUCCESS", (i, task.strstate(), task.error())
        assert task.result() == [task.server(), i]
    assert Counter(completed) == Counter(json.dumps(i) for i in range(count))
    runs = served.executions()
    assert all(runs[json.dumps(i)] >= 1 for i in range(count))
    assert all(runs[w] == 1 for w in before_kill), \
        [w for w in before_kill if runs[w] != 1][:10]
    # the dead server's finished tasks (some before the kill: they ran once,
    # above) stayed finished; the rest of its share went to the others
    on_victim = {json.dumps(t.result()[1]) for t in tasks if t.server() == victim}
    assert on_victim & set(before_kill)
    assert len(on_victim) < count / 3
    assert len(before_kill) < count - 1000, "the kill came too late to test anything"


def test_server_restarted_mid_stream_of_do_calls(gearmand_cluster, served):
    """Killed and at once restarted on its port: the connections that had
    worked are tried once more, fresh, and every call is answered."""
    addresses = gearmand_cluster.addresses
    answers, errors = [], []
    with cluster_client(addresses, timeout=15000) as c:
        for i in range(300):
            if i == 100:
                gearmand_cluster.restart(1)
            try:
                answers.append(c.do(served.name, i)[1])
            except pygear.GearmanError as exc:
                errors.append((i, exc))
    assert not errors, errors
    assert answers == list(range(300))
    runs = served.executions()
    assert all(runs[json.dumps(i)] == 1 for i in range(300))     # nothing was in flight
    wait_workers(*split_address(addresses[1]), served.name)
    with cluster_client([addresses[1]], timeout=5000) as c:
        assert c.do(served.name, "back") == [addresses[1], "back"]


@pytest.mark.timeout(120)
def test_background_submissions_under_a_kill_are_where_they_say(gearmand_cluster):
    """do_background() in a loop and a batch of 3,000 background tasks, each
    with a server killed midway: nothing raises, and every submission said
    to be on a live server is there (success only after JOB_CREATED)."""
    addresses = gearmand_cluster.addresses
    fn, fn_tasks = unique_name("bg_kill"), unique_name("bg_kill_t")
    submitted, errors = [], []

    def submit():
        with cluster_client(addresses) as c:
            for i in range(1500):
                try:
                    submitted.append(c.do_background(fn, i))
                except pygear.GearmanError as exc:
                    errors.append((i, exc))

    thread = threading.Thread(target=submit)
    thread.start()
    wait_until(lambda: len(submitted) >= 300 or not thread.is_alive(), 30, "300 submissions")
    gearmand_cluster.kill(1)
    thread.join(60)
    assert not thread.is_alive() and not errors, errors[:5]
    created = Counter()

    def on_created(task):
        created[task.server()] += 1
        if created[addresses[2]] == 300 and gearmand_cluster.servers[2].alive:
            gearmand_cluster.kill(2)

    with cluster_client(addresses, timeout=30000) as c:
        c.set_created_fn(on_created)
        tasks = [c.add_task_background(fn_tasks, i) for i in range(3000)]
        c.run_tasks()
    assert all(t.returncode() == "SUCCESS" and t.job_handle() for t in tasks)
    held = handles_on(addresses[0])
    assert all(s["job_handle"] in held for s in submitted if s["server"] == addresses[0])
    assert all(t.job_handle() in held for t in tasks if t.server() == addresses[0])
    assert queued_on(addresses[0], fn_tasks) == sum(t.server() == addresses[0] for t in tasks)
    assert {t.server() for t in tasks} <= {addresses[0], addresses[2]}   # 1 was dead


def test_every_server_down_then_one_back(gearmand_cluster, served):
    """With every server down a call fails at once with a ConnectionError;
    the first server back takes the next call, although it is still in
    its backoff (servers that are down come last, but they come)."""
    addresses = gearmand_cluster.addresses
    with cluster_client(addresses, timeout=5000) as c:
        assert {c.do(served.name, i)[0] for i in range(3)} == set(addresses)
        for i in range(3):
            gearmand_cluster.kill(i)
        started = time.monotonic()
        with pytest.raises(pygear.COULD_NOT_CONNECT):
            c.do(served.name, "nobody")
        with pytest.raises(pygear.COULD_NOT_CONNECT):
            c.add_task(served.name, "nobody")
            c.run_tasks()
        assert time.monotonic() - started < 1.0
        gearmand_cluster.restart(2)
        wait_workers(*split_address(addresses[2]), served.name)
        assert c.do(served.name, "first back") == [addresses[2], "first back"]
        c.run_tasks()            # the task left waiting runs now
        assert c.do_background(unique_name("back_bg"), 1)["server"] == addresses[2]


def test_every_server_silent_fails_within_the_job_timeout():
    holes = [BlackHole() for _ in range(3)]
    try:
        with cluster_client([h.address for h in holes], timeout=900) as c:
            for call in (lambda: c.do("f", 1), lambda: c.do_background("f", 1),
                         lambda: (c.add_task("f", 1), c.run_tasks())):
                started = time.monotonic()
                with pytest.raises((pygear.TIMEOUT, pygear.COULD_NOT_CONNECT)):
                    call()
                assert 0.8 < time.monotonic() - started < 1.5
    finally:
        for h in holes:
            h.close()


def test_a_server_that_hangs_costs_one_call_a_timeout(gearmand_cluster, served):
    """A gearmand that stops answering (SIGSTOP) on a connection that works is
    not seen as down: the call sent there raises TIMEOUT at the job timeout.
    The next new connection to it does not answer within its share of the
    time, the server is marked down, and every later call goes elsewhere."""
    addresses, frozen = gearmand_cluster.addresses, gearmand_cluster.servers[1]
    outcomes = []
    with cluster_client(addresses, timeout=1500) as c:
        assert {c.do(served.name, i)[0] for i in range(3)} == set(addresses)
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            for i in range(9):
                started = time.monotonic()
                try:
                    outcomes.append(c.do(served.name, i)[0])
                except pygear.TIMEOUT:
                    outcomes.append("TIMEOUT")
                assert time.monotonic() - started < 2.5
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
    assert outcomes.count("TIMEOUT") == 1, outcomes
    assert frozen.address not in outcomes
    assert set(outcomes) - {"TIMEOUT"} == set(addresses) - {frozen.address}


# --- a first server that is silent, or is not a Gearman server ----------------------------

@pytest.fixture(params=["silent", "not_gearman", "refused"])
def bad_server(request):
    """An address where no usable gearmand is: ``silent`` accepts and never
    answers, ``not_gearman`` answers ERROR\\r\\n as memcached does,
    ``refused`` refuses connections."""
    if request.param == "silent":
        peer = BlackHole()
    elif request.param == "not_gearman":
        peer = NotGearman()
    else:
        peer = None
    try:
        yield (peer.address if peer else "127.0.0.1:%d" % dead_port()), request.param
    finally:
        if peer is not None:
            peer.close()


@pytest.mark.gearmand_cluster(count=1)
def test_a_bad_first_server_is_passed_over(gearmand_cluster, bad_server, caplog):
    """do(), do_background(), run_tasks() and job_status() all succeed via
    the live server, each within the connect timeout of the bad one; a
    Worker with the bad server first serves from the live one."""
    caplog.set_level(logging.WARNING, logger="pygear")
    bad, kind = bad_server
    live = gearmand_cluster.addresses[0]
    fn = unique_name("bad_first")
    worker = ServingThread(bad + "," + live, {fn: lambda job: job.workload()},
                           connect_timeout_ms=300).start()
    try:
        wait_workers(*split_address(live), fn)
        with cluster_client([bad, live]) as c:
            c.set_connect_timeout(300)
            assert c.connect_timeout() == 300
            for i in range(4):        # round-robin: the bad server comes first at least once
                started = time.monotonic()
                assert c.do(fn, i) == i
                assert time.monotonic() - started < 1.5
            started = time.monotonic()
            sub = c.do_background(unique_name("bad_first_bg"), "x")
            assert sub["server"] == live and sub["job_handle"] in handles_on(live)
            tasks = [c.add_task(fn, i) for i in range(10)]
            c.run_tasks()
            assert [t.result() for t in tasks] == list(range(10))
            assert {t.server() for t in tasks} == {live}
            assert c.job_status(sub["job_handle"]) == QUEUED
            assert time.monotonic() - started < 3.0
        # a client that never saw the handle asks every server: the bad one
        # fails, the live one answers
        with cluster_client([bad, live]) as fresh:
            fresh.set_connect_timeout(300)
            started = time.monotonic()
            assert fresh.job_status(sub["job_handle"]) == QUEUED
            assert time.monotonic() - started < 1.5
        assert not worker.errors, worker.errors
    finally:
        worker.stop()
    downs = [r for r in caplog.records if r.name == "pygear" and r.levelno == logging.WARNING
             and ("job server %s is down" % bad) in r.getMessage()]
    assert downs, [r.getMessage() for r in caplog.records]


@pytest.mark.gearmand_cluster(count=1)
@pytest.mark.parametrize("job_timeout", [-1, 2000])
def test_a_silent_first_server_costs_at_most_the_connect_timeout(gearmand_cluster, job_timeout):
    """With the default connect timeout (5 s) and a finite job timeout, the
    silent server gets only its share of the time left (half, with two
    servers); with no job timeout, set_connect_timeout bounds the wait."""
    hole = BlackHole()
    live = gearmand_cluster.addresses[0]
    fn = unique_name("silent_bg")
    try:
        with cluster_client([hole.address, live], timeout=job_timeout) as c:
            if job_timeout < 0:
                c.set_connect_timeout(400)
            limit = 0.4 if job_timeout < 0 else job_timeout / 2000.0
            started = time.monotonic()
            sub = c.do_background(fn, 1, unique=_key_for(hole.address, [hole.address, live]))
            took = time.monotonic() - started
            assert sub["server"] == live
            assert limit * 0.8 <= took < limit + 0.5, took
    finally:
        hole.close()


@pytest.mark.gearmand_cluster(count=1)
@pytest.mark.parametrize("what", ["job_status", "unique_status"])
def test_status_with_a_silent_server_and_a_short_job_timeout(gearmand_cluster, what):
    """A job timeout under the connect timeout (the default 5 s): the silent
    server gets its share of the time, as in do*, and the live server answers."""
    hole = BlackHole()
    live = gearmand_cluster.addresses[0]
    order = [hole.address, live]
    key = _key_for(hole.address, order)        # the silent server is the key's first
    try:
        with cluster_client([live], timeout=2000) as direct:
            handle = direct.do_background(unique_name("silent_st"), 1, unique=key)["job_handle"]
        with cluster_client(order, timeout=2000) as fresh:
            started = time.monotonic()
            assert getattr(fresh, what)(handle if what == "job_status" else key) == QUEUED
            assert time.monotonic() - started < 1.9
    finally:
        hole.close()


def _key_for(address, addresses):
    """A unique key whose first server (rendezvous) is ``address``."""
    from pygear._placement import weight
    for i in range(10000):
        key = "key-%d" % i
        if max(addresses, key=lambda a: weight(key.encode(), a)) == address:
            return key
    raise AssertionError("no key found for %s" % address)


# --- where a job lives: status routing ----------------------------------------------------

@pytest.mark.gearmand_cluster(count=2)
def test_status_goes_to_the_server_that_holds_the_handle(gearmand_cluster):
    """Two fresh gearmands both issue H:host:1.  This client's job is queued
    on one; the other's, under the same handle, runs at 3/7."""
    addresses = gearmand_cluster.addresses
    fn = unique_name("status")
    with cluster_client(addresses) as c:
        mine = c.do_background(fn, "mine")
        home, handle = mine["server"], mine["job_handle"]
        elsewhere, theirs, held = held_twin(addresses, home, fn)
        try:
            assert theirs == handle                    # handles are unique per server only
            with cluster_client([elsewhere]) as direct:
                only_there = direct.do_background(fn, "second")["job_handle"]
            assert c.job_status(handle) == QUEUED                        # the issuer
            assert c.job_status(handle, server=home) == QUEUED
            assert c.job_status(handle, server=elsewhere) == held.expected
            with cluster_client(addresses) as fresh:                  # never saw the handle
                with pytest.raises(pygear.ERROR) as info:
                    fresh.job_status(handle)
                assert home in str(info.value) and elsewhere in str(info.value)
                assert fresh.job_status(handle, server=elsewhere) == held.expected
                assert fresh.job_status(only_there) == QUEUED         # one server knows it
                assert fresh.job_status("H:nowhere:99") == UNKNOWN
                with pytest.raises(ValueError):
                    fresh.job_status(handle, server="127.0.0.1:%d" % dead_port())
        finally:
            held.close()


@pytest.mark.gearmand_cluster(count=2)
@pytest.mark.parametrize("submit", ["do_background", "add_task_background"])
def test_status_asks_the_server_that_issued_the_handle(gearmand_cluster, submit):
    """Status tasks and job_status() for a handle this client was given ask
    the server that gave it, though the other server holds the same handle
    (running at 3/7)."""
    addresses = gearmand_cluster.addresses
    fn = unique_name("issuer")
    with cluster_client(addresses) as c:
        if submit == "do_background":
            mine = c.do_background(fn, "mine")
            handle, home = mine["job_handle"], mine["server"]
        else:
            task = c.add_task_background(fn, "mine")
            c.run_tasks()
            handle, home = task.job_handle(), task.server()
        _, theirs, held = held_twin(addresses, home, fn)
        try:
            assert theirs == handle
            for _ in range(3):            # round-robin would reach the other server
                status = c.add_task_status(handle)
                c.run_tasks()
                assert (status.server(), status.is_known(), status.is_running()) == \
                    (home, True, False)
            assert c.job_status(handle) == QUEUED
        finally:
            held.close()


@pytest.mark.gearmand_cluster(count=2)
def test_a_handle_two_servers_issued_to_this_client_is_ambiguous(gearmand_cluster):
    addresses = gearmand_cluster.addresses
    fn = unique_name("twice_issued")
    with cluster_client(addresses) as c:
        first = c.do_background(fn, "first")
        second = c.do_background(fn, "second")
        assert first["job_handle"] == second["job_handle"]
        assert first["server"] != second["server"]
        held = HeldJob(second["server"], fn, 3, 7)
        try:
            with pytest.raises(pygear.ERROR) as info:
                c.job_status(first["job_handle"])
            assert all(a in str(info.value) for a in addresses)
            assert c.job_status(first["job_handle"], server=first["server"]) == QUEUED
        finally:
            held.close()


@pytest.mark.parametrize("gearmand_cluster", [1, 2], indirect=True)
def test_several_status_tasks_for_one_handle(gearmand_cluster):
    with cluster_client(gearmand_cluster.addresses, timeout=3000) as c:
        # the issuer is known: every status task goes to it
        handle = c.do_background(unique_name("same_handle"), 1)["job_handle"]
        tasks = [c.add_task_status(handle) for _ in range(3)]
        c.run_tasks()
        assert all(t.is_known() for t in tasks)


@pytest.mark.gearmand_cluster(count=2)
def test_unique_status_asks_the_keys_server_first(gearmand_cluster):
    """The key's job is queued on its own server, and a job with the same key
    runs at 5/9 on the other: unique_status answers from the key's server,
    and from the other once the key's server is dead."""
    addresses = gearmand_cluster.addresses
    fn = unique_name("ustatus")
    key = "invoice-%s" % unique_name("k")
    with cluster_client(addresses) as c:
        home = c.do_background(fn, "here", unique=key)["server"]
        _, _, held = held_twin(addresses, home, fn, unique=key, numerator=5, denominator=9)
        try:
            with cluster_client(addresses[::-1]) as fresh:
                assert fresh.unique_status(key) == QUEUED
                gearmand_cluster.kill(addresses.index(home))
                assert fresh.unique_status(key) == held.expected
                assert fresh.unique_status("no-such-key") == UNKNOWN
        finally:
            held.close()


# --- workers ------------------------------------------------------------------------------

def test_worker_keeps_serving_and_reregisters_after_a_restart(gearmand_cluster, caplog):
    caplog.set_level(logging.WARNING, logger="pygear")
    addresses = gearmand_cluster.addresses
    victim = addresses[1]
    survivors = [a for a in addresses if a != victim]
    fn = unique_name("recover")
    worker = ServingThread(",".join(addresses), {fn: lambda job: job.workload()}).start()

    def logged(text):
        return any(r.name == "pygear" and r.levelno == logging.WARNING
                   and text in r.getMessage() for r in caplog.records)

    try:
        for address in addresses:
            wait_workers(*split_address(address), fn)
        gearmand_cluster.kill(1)
        for address in survivors:                    # served meanwhile, from the others
            with cluster_client([address], timeout=5000) as c:
                assert c.do(fn, address) == address
        with cluster_client(addresses, timeout=5000) as c:
            assert [c.do(fn, i) for i in range(6)] == list(range(6))
        wait_until(lambda: logged("job server %s is down" % victim), 5, "the loss to be logged")
        started = time.monotonic()
        gearmand_cluster.restart(1)
        wait_workers(*split_address(victim), fn, timeout=10)
        took = time.monotonic() - started
        assert took < 3.0, "re-registered %.1fs after the restart" % took
        with cluster_client([victim], timeout=5000) as c:
            assert c.do(fn, "back") == "back"
        wait_until(lambda: logged("job server %s is up again" % victim), 5,
                   "the return to be logged")
        assert not worker.errors, worker.errors
    finally:
        worker.stop()


# --- durability: gearmand's part ----------------------------------------------------------

@pytest.mark.gearmand_cluster(count=2, queue="sqlite")
def test_background_jobs_survive_kill_and_restart_with_sqlite_queue(gearmand_cluster):
    addresses = gearmand_cluster.addresses
    first = addresses[0]
    fn = unique_name("durable")
    with cluster_client(addresses) as c:
        submitted = [c.do_background(fn, i) for i in range(20)]
        on_first = [s["job_handle"] for s in submitted if s["server"] == first]
        assert on_first
        gearmand_cluster.kill(0)
        # while it is down, new jobs go to the other server
        during = [c.do_background(fn, 100 + i) for i in range(4)]
        assert {s["server"] for s in during} == {addresses[1]}
        gearmand_cluster.restart(0)
        assert set(on_first) <= set(handles_on(first))
        assert all(c.job_status(h, server=first) == QUEUED for h in on_first)
    runs = Counter()
    lock = threading.Lock()

    def record(job):
        with lock:
            runs[job.workload()] += 1

    worker = ServingThread(",".join(addresses), {fn: record}).start()
    try:
        expected = list(range(20)) + [100 + i for i in range(4)]
        wait_until(lambda: len(runs) == len(expected), 20, "every job to run")
        assert runs == Counter(expected)
        wait_until(lambda: not handles_on(first) and not handles_on(addresses[1]), 10,
                   "the queues to empty")
    finally:
        worker.stop()


@pytest.mark.gearmand_cluster(count=2)
def test_without_a_persistent_queue_a_killed_server_loses_its_jobs(gearmand_cluster):
    addresses = gearmand_cluster.addresses
    fn = unique_name("lost")
    with cluster_client(addresses) as c:
        submitted = [c.do_background(fn, i) for i in range(10)]
        assert {s["server"] for s in submitted} == set(addresses)
        gearmand_cluster.restart(0)
    assert queued_on(addresses[0], fn) == 0
    assert queued_on(addresses[1], fn) == sum(s["server"] == addresses[1] for s in submitted)


# --- the README's example -----------------------------------------------------------------

def readme_scripts():
    """The Python blocks of the README's "Several gearmands" section that
    start with ``# NAME.py``, by name."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    part = text[text.index("## Several gearmands"):]
    part = part[:part.index("\n## ", 1)]
    scripts = {}
    for code in re.findall(r"```python\n(.*?)```", part, re.S):
        first = code.splitlines()[0]
        if first.startswith("# ") and ".py" in first:
            scripts[first[2:].split(":")[0].strip()] = code
    return scripts


@pytest.mark.timeout(120)
@pytest.mark.gearmand_cluster(count=2, queue="sqlite")
def test_the_readme_example_runs(gearmand_cluster, tmp_path):
    """The README's worker and client, on the cluster's ports; then the
    first server is killed (the client logs it, and every job is answered)
    and restarted (the worker registers there again)."""
    first, second = gearmand_cluster.addresses
    scripts = readme_scripts()
    assert set(scripts) == {"cluster_worker.py", "cluster_client.py"}
    for name, code in scripts.items():
        code = code.replace("127.0.0.1:4730", first).replace("127.0.0.1:4731", second)
        (tmp_path / name).write_text(code)

    def client():
        out = subprocess.run([sys.executable, str(tmp_path / "cluster_client.py")],
                             cwd=str(tmp_path), env=child_env(), capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == str(["eno", "owt", "eerht", "ruof"])
        assert lines[1] == "revres emas ,yek emas"
        assert "'job_handle': 'H:" in lines[2]
        assert lines[3] == str(QUEUED)
        return out.stderr

    worker = subprocess.Popen([sys.executable, str(tmp_path / "cluster_worker.py")],
                              cwd=str(tmp_path), env=child_env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for address in (first, second):
            wait_workers(*split_address(address), "reverse")
        assert "is down" not in client()
        gearmand_cluster.kill(0)
        assert "job server %s is down" % first in client()
        gearmand_cluster.restart(0)
        wait_workers(*split_address(first), "reverse", timeout=5)
        assert worker.poll() is None, worker.stderr.read()
    finally:
        stop_process(worker)
        worker.stderr.close()

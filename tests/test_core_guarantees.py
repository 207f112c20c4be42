"""What the redesigned core promises by construction (issue 10, items 2-6,
11, 15 and 16; SPEC "Calls into one object"), each against a real gearmand,
in a child interpreter wherever the old core could crash:

- many threads making their first Client at once (the task trampolines were
  built lazily, without a lock);
- accessors answer, and setters wait their turn, while another thread
  blocks in a call; close() from another thread ends that call at once;
- clone() keeps every setting;
- manual mode: a grabbed job left unfinished, an idle grab, then more jobs;
- do() timing out beside queued tasks never sends them (again);
- a Task dropped while do() blocks, then run_tasks keeps its timeout and Ctrl-C;
- a helper thread sends a job's progress;
- Ctrl-C or SystemExit inside a job function gives the job back.
"""
import gc
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import pygear
from pygear.testing import unique_name

from .faultkit import (calling, dead_port, emit, outcome_of, run_child, serve_echo, serve_function,
                       tally_counts)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def echo_fn(gearmand):
    yield from serve_echo(gearmand, "core_echo", 2)


def connect(cls, host, port, timeout):
    obj = cls()
    obj.add_server(host, int(port))
    obj.set_timeout(int(timeout))
    return obj


# --- item 2: the first Client of many threads at once --------------------------------

def first_clients_child(host, port, fn, threads):
    """``threads`` threads make this process's first Clients at the same
    moment, each running a task and a do()."""
    import sys
    n = int(threads)
    # Switch threads as often as possible, so that a race shows; libgearman
    # already loaded (as by a Worker made earlier), so that the threads
    # reach their first Client together.
    sys.setswitchinterval(1e-6)
    pygear.libgearman_version()
    barrier = threading.Barrier(n)
    results = {}

    def one(i):
        barrier.wait()
        c = connect(pygear.Client, host, port, 20000)
        barrier.wait()         # every thread has its Client: now the jobs, at once
        for _ in range(3):     # (the old core made a ctypes callback each time)
            c.set_log_fn(lambda line: None)
        task = c.add_task(fn, i)
        c.run_tasks()
        results[i] = [task.result(), c.do(fn, i)]
        c.close()
    workers = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    emit(results=[results.get(i) for i in range(n)])


def test_many_threads_make_their_first_client_at_once(gearmand, echo_fn):
    def child(_):
        return run_child(calling("tests.test_core_guarantees:first_clients_child"),
                         [gearmand.host, gearmand.port, echo_fn, 16], timeout=60)
    with ThreadPoolExecutor(4) as pool:
        for lines in pool.map(child, range(30)):
            assert lines[-1] == {"results": [[i, i] for i in range(16)]}


# --- item 3: other threads during a blocking call ------------------------------------

BLOCKING = {
    "do": lambda obj, fn: obj.do(fn, "nobody serves this"),
    "run_tasks": lambda obj, fn: (obj.add_task(fn, "nobody serves this"), obj.run_tasks()),
    "work": lambda obj, fn: (obj.add_function(fn, 0, lambda job: None), obj.work()),
    "grab_job": lambda obj, fn: (obj.register(fn), obj.grab_job()),
}
ACCESSORS = {
    pygear.Client: ("timeout", "error", "errno", "get_options", "error_code"),
    pygear.Worker: ("timeout", "error", "errno", "namespace"),
}


def blocked_call_child(what, host, port, idle_fn):
    """One thread blocks in ``what``; the main thread reads every accessor,
    sets the serializer (with a 1 s timeout on the call: it waits its turn),
    then, with no timeout, closes the object under the blocked call."""
    cls = pygear.Worker if what in ("work", "grab_job") else pygear.Client
    obj = connect(cls, host, port, 1000)
    ended = {}

    def blocked(phase):
        start = time.monotonic()
        try:
            BLOCKING[what](obj, idle_fn)
            ended[phase] = ("returned", time.monotonic())
        except Exception as exc:
            ended[phase] = (type(exc).__name__, time.monotonic())
        emit(phase=phase, outcome=ended[phase][0], seconds=round(ended[phase][1] - start, 3))

    for phase, timeout in (("timeout", 1000), ("forever", -1)):
        obj.set_timeout(timeout)
        thread = threading.Thread(target=blocked, args=(phase,))
        thread.start()
        time.sleep(0.3)
        for name in ACCESSORS[cls]:
            what_, seconds = outcome_of(getattr(obj, name))
            emit(phase=phase, accessor=name, outcome=what_, seconds=seconds)
        if phase == "timeout":
            what_, seconds = outcome_of(lambda: obj.set_serializer(pygear.JSON))
            late = time.monotonic() - ended.get(phase, (None, time.monotonic()))[1]
            emit(phase=phase, setter="set_serializer", outcome=what_,
                 after_call=round(late, 3))
        else:
            start = time.monotonic()
            obj.close()
            thread.join(5)
            end = ended.get(phase, ("still blocked", time.monotonic() + 99))[1]
            emit(phase=phase, close_to_end=round(end - start, 3), closed=obj.closed,
                 later=outcome_of(lambda: BLOCKING[what](obj, idle_fn))[0])
        thread.join(10)


@pytest.mark.parametrize("what", list(BLOCKING))
def test_accessors_setters_and_close_while_another_thread_blocks(gearmand, what):
    lines = run_child(calling("tests.test_core_guarantees:blocked_call_child"),
                      [what, gearmand.host, gearmand.port, unique_name("idle")], timeout=20)
    for line in lines:
        if "accessor" in line:    # answers from Python state, at once
            assert line["outcome"] == "ok" and line["seconds"] < 0.1, line
    setter, = [line for line in lines if "setter" in line]
    # waited its turn: done as the blocked call ended, not before, not long after
    assert setter["outcome"] == "ok" and -0.05 < setter["after_call"] < 0.3, setter
    timed_out, = [line for line in lines if line.get("phase") == "timeout" and "seconds" in line
                  and "accessor" not in line]
    assert timed_out["outcome"] == "TIMEOUT", timed_out
    closed, = [line for line in lines if "close_to_end" in line]
    assert closed["close_to_end"] < 0.3 and closed["closed"] is True, closed
    assert closed["later"] == "refused", closed
    interrupted, = [line for line in lines if line.get("phase") == "forever" and "outcome" in line
                    and "accessor" not in line]
    assert interrupted["outcome"] == "ERROR", interrupted


# --- item 4: clone() keeps every setting ---------------------------------------------

@pytest.fixture(scope="module")
def raw_fn(gearmand):
    yield from serve_function(gearmand, "core_raw", "raw_echo", serializer="raw")


def client_ids(gearmand):
    with pygear.Admin(gearmand.host, gearmand.port, timeout=5) as admin:
        return {row["client_id"]: row["functions"] for row in admin.workers()}


def test_client_clone_keeps_every_setting(gearmand, raw_fn):
    ident = unique_name("clone_c")
    lines, completed = [], []
    c = connect(pygear.Client, gearmand.host, gearmand.port, 12345)
    c.set_serializer(pygear.RAW)
    c.set_options(free_tasks=True, generate_unique=True)
    c.set_identifier(ident)
    c.set_log_fn(lines.append, "DEBUG")
    c.set_complete_fn(completed.append)
    options = c.get_options()
    d = c.clone()
    c.close()          # the clone stands alone
    try:
        assert d.timeout() == 12345
        assert d.get_options() == options
        assert d.do(raw_fn, b"\x00\xff raw") == b"\x00\xff raw"      # servers, RAW
        assert ident in client_ids(gearmand)                       # identifier
        task = d.add_task(raw_fn, b"task")
        d.run_tasks()
        assert completed == [task] and task.result() == b"task"    # callbacks
        d.set_timeout(300)
        d.remove_servers()
        d.add_server("127.0.0.1", dead_port())
        with pytest.raises(pygear.COULD_NOT_CONNECT):
            d.do(unique_name("idle"), b"never sent")
        assert any("is down" in line for line in lines), \
            "the clone's news of a server down did not reach the log function"
    finally:
        d.close()


def test_worker_clone_keeps_every_setting(gearmand):
    ident, fn, ns = unique_name("clone_w"), unique_name("clone_fn"), unique_name("ns") + "_"
    lines = []
    w = connect(pygear.Worker, gearmand.host, gearmand.port, 4321)
    w.set_serializer(pygear.RAW)
    w.set_identifier(ident)
    w.set_namespace(ns)
    w.add_function(fn, 0, lambda job: job.workload()[::-1])
    w.set_log_fn(lines.append, "DEBUG")
    v = w.clone()
    w.close()
    c = connect(pygear.Client, gearmand.host, gearmand.port, 10000)
    c.set_serializer(pygear.RAW)
    try:
        assert v.timeout() == 4321 and v.namespace() == ns and v.function_exists(fn)
        replies = []
        submit = threading.Thread(target=lambda: replies.append(c.do(ns + fn, b"abc")))
        submit.start()
        v.work()
        submit.join(10)
        assert replies == [b"cba"]              # namespaced function served, RAW
        assert ns + fn in client_ids(gearmand).get(ident, []), client_ids(gearmand)
        v.set_timeout(300)
        v.remove_servers()
        v.add_server("127.0.0.1", dead_port())
        with pytest.raises(pygear.TIMEOUT):
            v.work()
        assert any("is down" in line for line in lines), \
            "the clone's news of a server down did not reach the log function"
    finally:
        v.close()
        c.close()


# --- item 5: manual mode, a grabbed job left unfinished ---------------------------------

def unfinished_grab_child(host, port, fn):
    w = connect(pygear.Worker, host, port, 5000)
    w.register(fn)
    c = connect(pygear.Client, host, port, 5000)
    for round_ in range(3):
        c.do_background(fn, "left %d" % round_)
        job = w.grab_job()
        try:
            raise ValueError("processing %s failed" % job.workload())
        except ValueError:
            pass             # the job is never finished
        del job
        gc.collect()
        w.set_timeout(300)
        emit(round=round_, idle=outcome_of(w.grab_job)[0])
        w.set_timeout(5000)
        for name in ("finished", "next"):
            c.do_background(fn, "%s %d" % (name, round_))
            job = w.grab_job()
            emit(round=round_, grabbed=job.workload())
            job.send_complete("done")
    emit(done=True)


def test_grab_after_an_unfinished_job_and_an_idle_grab(gearmand):
    lines = run_child(calling("tests.test_core_guarantees:unfinished_grab_child"),
                      [gearmand.host, gearmand.port, unique_name("grab_left")])
    assert [line.get("idle") for line in lines if "idle" in line] == ["TIMEOUT"] * 3
    assert [line["grabbed"] for line in lines if "grabbed" in line] == [
        "%s %d" % (name, r) for r in range(3) for name in ("finished", "next")]
    assert lines[-1] == {"done": True}


# --- item 6: do() timing out beside queued tasks ---------------------------------------

@pytest.fixture(scope="module")
def tally_fn(gearmand):
    yield from serve_function(gearmand, "core_tally", "tally")


def wait_for_counts(directory, keys, timeout=10.0, settle=0.5):
    """The tally once every key ran, and ``settle`` s more for repeats."""
    deadline = time.monotonic() + timeout
    while not set(keys) <= set(tally_counts(directory)) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(settle)
    return tally_counts(directory)


def test_do_timeout_never_sends_queued_tasks(gearmand, tally_fn):
    d = tempfile.mkdtemp(prefix="pygear-tally-")
    c = connect(pygear.Client, gearmand.host, gearmand.port, 10000)
    try:
        background = ["bg%d" % i for i in range(5)]
        for key in background:
            c.add_task_background(tally_fn, {"dir": d, "key": key})
        c.run_tasks()                          # queued on the server, done here
        queued = [c.add_task(tally_fn, {"dir": d, "key": "q%d" % i}) for i in range(3)]
        c.set_timeout(300)
        for _ in range(2):
            with pytest.raises(pygear.TIMEOUT):
                c.do(unique_name("idle"), "nobody serves this")
        counts = wait_for_counts(d, background)
        assert counts == {key: 1 for key in background}     # ran once; queued ones not at all
        assert [t.strstate() for t in queued] == ["new"] * 3 or \
            all(t.returncode() == "UNKNOWN_STATE" for t in queued)
        c.set_timeout(10000)
        c.run_tasks()
        assert [t.result() for t in queued] == ["q0", "q1", "q2"]
        assert wait_for_counts(d, background + ["q0", "q1", "q2"]) == \
            {key: 1 for key in background + ["q0", "q1", "q2"]}
    finally:
        c.close()


# --- item 11: a Task dropped while do() blocks -------------------------------------------

def dropped_task_child(host, port, idle_fn, echo_fn, dropped=500):
    import resource
    import signal
    c = connect(pygear.Client, host, port, 10000)
    tasks = [c.add_task(echo_fn, i) for i in range(int(dropped))]
    c.run_tasks()                     # finished (the old core kept their C side)
    kept = [c.add_task(echo_fn, "queued %d" % i) for i in range(20)]   # not run yet
    outcome = []
    c.set_timeout(800)
    blocker = threading.Thread(target=lambda: outcome.append(
        outcome_of(lambda: c.do(idle_fn, "blocks"))[0]))
    blocker.start()
    time.sleep(0.2)
    del tasks
    gc.collect()
    blocker.join(10)
    emit(do=outcome)
    c.set_timeout(10000)
    fresh = [c.add_task(echo_fn, i) for i in range(20)]    # memory freed above, reused
    emit(fresh=outcome_of(c.run_tasks)[0], results=[t.result() for t in fresh],
         kept=[t.result() for t in kept])

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    c.add_task(idle_fn, "nobody serves this")
    c.set_timeout(500)
    start, cpu0 = time.monotonic(), cpu()
    what, _ = outcome_of(c.run_tasks)
    emit(run_tasks=what, timeout_seconds=round(time.monotonic() - start, 3),
         cpu=round(cpu() - cpu0, 3))
    c.set_timeout(-1)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    try:
        c.run_tasks()
        got = "returned"
    except KeyboardInterrupt:
        got = "KeyboardInterrupt"
    except Exception as exc:
        got = type(exc).__name__
    emit(sigint=got, sigint_seconds=round(time.monotonic() - start, 3))
    c.set_timeout(10000)
    emit(after=c.do(echo_fn, "after"))
    c.close()
    del fresh
    gc.collect()


def test_task_dropped_while_do_blocks_then_run_tasks_keeps_timeout_and_ctrl_c(
        gearmand, echo_fn):
    lines = run_child(calling("tests.test_core_guarantees:dropped_task_child"),
                      [gearmand.host, gearmand.port, unique_name("idle"), echo_fn])
    report = {k: v for line in lines for k, v in line.items()}
    assert report["do"] == ["TIMEOUT"], report
    assert report["run_tasks"] == "TIMEOUT" and report["timeout_seconds"] < 1.0, report
    assert report["cpu"] < 0.4, ("run_tasks spun", report)
    assert report["after"] == "after", report
    assert report["fresh"] == "ok" and report["results"] == list(range(20)), report
    assert report["kept"] == ["queued %d" % i for i in range(20)], report
    assert report["sigint"] == "KeyboardInterrupt" and report["sigint_seconds"] < 0.8, report


# --- item 15: progress from a helper thread -----------------------------------------------

def helper_thread_child(host, port, fn):
    def job_fn(job):
        def progress():
            for i in range(1, 6):
                job.send_status(i, 5)
        helper = threading.Thread(target=progress)
        helper.start()
        helper.join(10)
        return "deadlocked" if helper.is_alive() else "done"
    w = connect(pygear.Worker, host, port, 10000)
    w.add_function(fn, 0, job_fn)
    c = connect(pygear.Client, host, port, 10000)
    statuses = []
    c.set_status_fn(lambda task: statuses.append([task.numerator(), task.denominator()]))
    task = c.add_task(fn, "x")
    runner = threading.Thread(target=c.run_tasks)
    runner.start()
    w.work()
    runner.join(10)
    emit(result=task.result(), statuses=statuses)
    os._exit(0)    # a deadlocked helper thread must not hold the exit up


def test_progress_sent_from_a_helper_thread(gearmand):
    lines = run_child(calling("tests.test_core_guarantees:helper_thread_child"),
                      [gearmand.host, gearmand.port, unique_name("helper")], timeout=30)
    assert lines[-1] == {"result": "done", "statuses": [[i, 5] for i in range(1, 6)]}


# --- item 16: Ctrl-C or SystemExit inside a job function --------------------------------

def interrupted_job_child(host, port, fn):
    seen = []

    def job_fn(job):
        workload = job.workload()
        seen.append(workload)
        if seen.count(workload) == 1 and workload in ("interrupt", "exit"):
            raise KeyboardInterrupt if workload == "interrupt" else SystemExit(3)
        return "real " + workload
    w = connect(pygear.Worker, host, port, 10000)
    w.add_function(fn, 0, job_fn)
    c = connect(pygear.Client, host, port, 20000)
    replies = []

    def submit_all():
        for x in ("interrupt", "exit", "after"):
            try:
                replies.append(c.do(fn, x))
            except Exception as exc:
                replies.append(type(exc).__name__)
    submit = threading.Thread(target=submit_all)
    submit.start()
    for expected in (KeyboardInterrupt, SystemExit):
        try:
            w.work()
            emit(work="returned")
        except expected:
            emit(work=expected.__name__)
        start = time.monotonic()
        w.work()      # the job again: a real one
        emit(next_work=round(time.monotonic() - start, 3), seen=list(seen))
    w.work()
    submit.join(20)
    emit(replies=replies, seen=seen)


def test_ctrl_c_or_exit_in_a_job_function_gives_the_job_back(gearmand):
    lines = run_child(calling("tests.test_core_guarantees:interrupted_job_child"),
                      [gearmand.host, gearmand.port, unique_name("interrupted")], timeout=60)
    assert [line["work"] for line in lines if "work" in line] == \
        ["KeyboardInterrupt", "SystemExit"]
    assert lines[-1] == {"replies": ["real interrupt", "real exit", "real after"],
                         "seen": ["interrupt", "interrupt", "exit", "exit", "after"]}


# --- libgearman 1.1.20 mixes up status tasks (found while writing the above) -------------

def test_status_tasks_beside_jobs_in_one_batch(gearmand, echo_fn):
    """libgearman 1.1.20 would give the status task the job's JOB_CREATED
    (_workarounds.STATUS_TAKES_JOB_CREATED): pygear holds it back."""
    c = connect(pygear.Client, gearmand.host, gearmand.port, 1000)
    try:
        job = c.add_task(echo_fn, "job")
        status = c.add_task_status("H:nowhere:1")
        c.run_tasks()
        assert job.result() == "job" and status.returncode() == "SUCCESS"
    finally:
        c.close()


def test_two_status_tasks_for_one_handle(gearmand):
    """libgearman 1.1.20 hands both STATUS_RES packets for one handle to the
    first status task (_workarounds.STATUS_TO_FIRST_TASK): pygear sends the
    second after the first ended."""
    c = connect(pygear.Client, gearmand.host, gearmand.port, 1000)
    try:
        tasks = [c.add_task_status("H:nowhere:1") for _ in range(2)]
        c.run_tasks()
        assert [t.is_known() for t in tasks] == [False, False]
        assert [t.returncode() for t in tasks] == ["SUCCESS", "SUCCESS"]
    finally:
        c.close()

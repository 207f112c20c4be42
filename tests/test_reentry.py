"""Calls into one object from inside its own callbacks (issue 10, items 1
and 13; SPEC "Calls into one object"): every public method of a Client,
called from every kind of task callback and from its log function, and
every public method of a Worker, called from a job function and from its
log function, either works or raises pygear.ERROR at once (those that would
re-enter libgearman must refuse); reading the Task or Job is fine; close()
there takes effect when the running call returns, which returns normally
(the job's reply is still sent); nothing crashes.

Each case runs in a child interpreter, which reports every attempt as a
JSON line as it goes (a crash shows as a negative exit status, and the
last line says how far it got).
"""
import itertools
import types

import pytest

import pygear
from pygear.testing import unique_name

from .fakegearmand import FakeGearmand
from .faultkit import (WorkerProc, calling, dead_port, emit, outcome_of, run_child, serve_function,
                       wait_workers)

pytestmark = pytest.mark.timeout(120)

# --- what is called -------------------------------------------------------------
# Each entry: name -> fn(ctx); ctx has the object (ctx.obj), its server
# (ctx.host, ctx.port), a function a worker serves (ctx.fn), and what was
# installed (ctx.log_fn, ctx.callbacks, ctx.reinstall).

# What Client and Worker both have.
COMMON_CALLS = {
    "add_server": lambda x: x.obj.add_server(x.host, x.port),
    "add_servers": lambda x: x.obj.add_servers("%s:%d" % (x.host, x.port)),
    "remove_servers": lambda x: x.obj.remove_servers(),
    "set_timeout": lambda x: x.obj.set_timeout(x.obj.timeout()),
    "timeout": lambda x: x.obj.timeout(),
    "set_connect_timeout": lambda x: x.obj.set_connect_timeout(5000),
    "connect_timeout": lambda x: x.obj.connect_timeout(),
    "set_serializer": lambda x: x.obj.set_serializer(pygear.JSON),
    "set_identifier": lambda x: x.obj.set_identifier("reentry"),
    "set_log_fn": lambda x: x.obj.set_log_fn(x.log_fn, "DEBUG"),
    "set_ssl": lambda x: x.obj.set_ssl(),
    "set_metrics": lambda x: x.obj.set_metrics(None),
    "error": lambda x: x.obj.error(),
    "errno": lambda x: x.obj.errno(),
    "echo": lambda x: x.obj.echo("inner"),
    "wait": lambda x: x.obj.wait(),
    "clone": lambda x: x.obj.clone().close(),
}

CLIENT_CALLS = dict(COMMON_CALLS, **{
    "set_options": lambda x: x.obj.set_options(non_blocking=False),
    "get_options": lambda x: x.obj.get_options(),
    "error_code": lambda x: x.obj.error_code(),
    "do": lambda x: x.obj.do(x.fn, "inner"),
    "do_high": lambda x: x.obj.do_high(x.fn, "inner"),
    "do_low": lambda x: x.obj.do_low(x.fn, "inner"),
    "do_background": lambda x: x.obj.do_background(x.fn, "inner"),
    "do_high_background": lambda x: x.obj.do_high_background(x.fn, "inner"),
    "do_low_background": lambda x: x.obj.do_low_background(x.fn, "inner"),
    "job_status": lambda x: x.obj.job_status("H:nowhere:1"),
    "unique_status": lambda x: x.obj.unique_status("nowhere"),
    # a handle of its own, and before the job tasks: libgearman 1.1.20 mixes
    # up status tasks (test_core_guarantees.test_status_tasks_beside_jobs)
    "add_task_status": lambda x: x.obj.add_task_status("H:nowhere:%d" % next(x.handles)),
    "add_task": lambda x: x.obj.add_task(x.fn, "inner"),
    "add_task_high": lambda x: x.obj.add_task_high(x.fn, "inner"),
    "add_task_low": lambda x: x.obj.add_task_low(x.fn, "inner"),
    "add_task_background": lambda x: x.obj.add_task_background(x.fn, "inner"),
    "add_task_high_background": lambda x: x.obj.add_task_high_background(x.fn, "inner"),
    "add_task_low_background": lambda x: x.obj.add_task_low_background(x.fn, "inner"),
    "run_tasks": lambda x: x.obj.run_tasks(),
    "set_created_fn": lambda x: x.obj.set_created_fn(x.callbacks.get("created")),
    "set_data_fn": lambda x: x.obj.set_data_fn(x.callbacks.get("data")),
    "set_warning_fn": lambda x: x.obj.set_warning_fn(x.callbacks.get("warning")),
    "set_status_fn": lambda x: x.obj.set_status_fn(x.callbacks.get("status")),
    "set_complete_fn": lambda x: x.obj.set_complete_fn(x.callbacks.get("complete")),
    "set_exception_fn": lambda x: x.obj.set_exception_fn(x.callbacks.get("exception")),
    "set_fail_fn": lambda x: x.obj.set_fail_fn(x.callbacks.get("fail")),
    "set_workload_fn": lambda x: x.obj.set_workload_fn(None),
    "clear_fn": lambda x: (x.obj.clear_fn(), x.reinstall()),
})
COMMON_MUST_REFUSE = {"remove_servers", "echo", "wait"}
CLIENT_MUST_REFUSE = COMMON_MUST_REFUSE | {"do", "do_high", "do_low", "do_background",
                                           "do_high_background", "do_low_background",
                                           "job_status", "unique_status", "run_tasks"}

WORKER_CALLS = dict(COMMON_CALLS, **{
    "set_namespace": lambda x: x.obj.set_namespace(x.namespace),
    "namespace": lambda x: x.obj.namespace(),
    "add_function": lambda x: x.obj.add_function(x.fn, 0, x.job_fn),
    "register": lambda x: x.obj.register(x.fn + "_other"),
    "unregister": lambda x: x.obj.unregister(x.fn + "_other"),
    "unregister_all": lambda x: (x.obj.unregister_all(), x.reinstall()),
    "function_exists": lambda x: x.obj.function_exists(x.fn),
    "work": lambda x: x.obj.work(),
    "grab_job": lambda x: x.obj.grab_job(),
    "serve": lambda x: x.obj.serve(iter([False, True]).__next__),
})
WORKER_MUST_REFUSE = COMMON_MUST_REFUSE | {"work", "grab_job", "serve"}

TASK_READS = ("result", "data", "data_size", "job_handle", "unique", "function_name",
              "returncode", "is_known", "is_running", "numerator", "denominator", "error",
              "strstate", "server")
JOB_READS = ("workload", "raw_workload", "workload_size", "handle", "function_name",
             "unique", "is_finished")

# Which worker function makes each callback kind fire.
KIND_FUNCTIONS = {"created": "echo", "data": "chatty", "warning": "chatty",
                  "status": "chatty", "complete": "echo", "exception": "boom",
                  "fail": "fail", "log": "echo"}
ROUNDS = 2        # callbacks that try every method


def _public(cls):
    return {name for name in dir(cls) if not name.startswith("_") and
            callable(getattr(cls, name)) and name != "close"}


def test_the_tables_cover_every_public_method():
    assert _public(pygear.Client) - set(CLIENT_CALLS) == set()
    assert _public(pygear.Worker) - set(WORKER_CALLS) == set()
    assert CLIENT_MUST_REFUSE <= set(CLIENT_CALLS) and WORKER_MUST_REFUSE <= set(WORKER_CALLS)


def attempt_all(ctx, calls, kind, round_):
    """In a child: try every call on ctx.obj, reporting each."""
    for name, call in calls.items():
        if not hasattr(ctx.obj, name):
            continue        # the old core lacks it
        what, seconds = outcome_of(lambda: call(ctx))
        emit(kind=kind, round=round_, call=name, outcome=what, seconds=seconds)


def read_all(obj, names, kind, round_):
    for name in names:
        if hasattr(obj, name):
            what, _ = outcome_of(getattr(obj, name))
            emit(kind=kind, round=round_, read=name, outcome=what)


class Rounds:
    """A callback that tries every call of ``calls`` (then reads ``reads``
    of its argument) the first ROUNDS times it runs in each ``phase``."""

    def __init__(self, ctx, calls, reads, kind):
        self.ctx, self.calls, self.reads, self.kind = ctx, calls, reads, kind
        self.phase = kind
        self.done = {}
        self.busy = False

    def __call__(self, arg=None):
        if self.busy or self.done.get(self.phase, 0) >= ROUNDS:
            return None if not isinstance(arg, pygear.Job) else arg.workload()
        self.busy = True
        self.done[self.phase] = round_ = self.done.get(self.phase, 0) + 1
        try:
            attempt_all(self.ctx, self.calls, self.phase, round_)
            if arg is not None and not isinstance(arg, str):
                read_all(arg, self.reads, self.phase, round_)
        finally:
            self.busy = False
        return arg.workload() if isinstance(arg, pygear.Job) else None


def quiet(line):
    pass


def ignore_timeout(call):
    try:
        return call()
    except pygear.TIMEOUT:
        return "TIMEOUT"


def log_phases(obj, rounds, home, phases):
    """Make the log function run inside a call in each of ``phases``: (name,
    servers to use, what to call, how often).  libgearman 1.1.20 logs next
    to nothing (and pygear drops its "timeout reached" for each 50 ms wait
    slice), so most lines come from pygear itself, inside the call: a
    server found down.  The servers are added afresh before each call, so
    each call finds them down anew."""
    for name, servers, call, times in phases:
        rounds.phase = name
        for _ in range(times):
            obj.set_timeout(1000)           # the callbacks' own calls change them
            obj.set_connect_timeout(300)
            if servers:
                obj.remove_servers()
                obj.add_servers(servers)
            emit(phase=name, outcome=ignore_timeout(call))
    obj.remove_servers()
    obj.add_servers(home)
    obj.set_timeout(20000)


# --- Client ----------------------------------------------------------------------

def client_child(kind, host, port, fn, echo_fn, silent, mute):
    """Set one callback kind (or the log function) to a callback that tries
    every Client method; run tasks of ``fn`` (or waits that log) that fire it."""
    port = int(port)
    c = pygear.Client()
    c.add_server(host, port)
    c.set_timeout(20000)
    ctx = types.SimpleNamespace(obj=c, host=host, port=port, fn=echo_fn, callbacks={},
                                handles=itertools.count(1))
    rounds = Rounds(ctx, CLIENT_CALLS, TASK_READS, kind)
    ctx.log_fn = rounds if kind == "log" else quiet
    if kind != "log":
        ctx.callbacks[kind] = rounds

    def reinstall():
        for name, cb in ctx.callbacks.items():
            getattr(c, "set_%s_fn" % name)(cb)
    ctx.reinstall = reinstall
    reinstall()
    c.set_log_fn(ctx.log_fn, "DEBUG")
    if kind == "log":
        log_phases(c, rounds, "%s:%d" % (host, port), [
            # a server found down (COULD_NOT_CONNECT)
            ("log: server down", "127.0.0.1:%d" % dead_port(),
             lambda: outcome_of(lambda: c.do_background(fn, "never sent"))[0], 2),
            # a server that does not answer pygear's check
            ("log: silent", silent, lambda: outcome_of(lambda: c.echo("x"))[0], 2),
            # one that never answers the exceptions option: the old core's
            # log lines came from outside its run loop there
            ("log: connecting", mute, lambda: outcome_of(lambda: c.do(fn, "x"))[0], 2)])
    else:
        for round_ in range(5):
            tasks = [c.add_task(fn, "outer %d" % i) for i in range(3)]
            c.run_tasks()     # returns normally
            emit(run=round_, states=[t.returncode() for t in tasks],
                 results=[t.result() for t in tasks])
            if rounds.done.get(kind, 0) >= ROUNDS:
                break
    emit(rounds=rounds.done, after=c.do(echo_fn, "after"))
    c.close()


@pytest.fixture(scope="module")
def functions(gearmand):
    """One worker process serving a function per kind of outcome."""
    names = {what: unique_name("reentry_" + what) for what in ("echo", "chatty", "boom", "fail")}
    proc = WorkerProc(gearmand.address, {names[w]: w for w in names})
    try:
        for name in names.values():
            wait_workers(gearmand.host, gearmand.port, name)
        yield names
    finally:
        proc.stop()


@pytest.fixture
def silent():
    """A server that accepts and answers nothing, not even pygear's check."""
    with FakeGearmand("silent", echoes=0) as fake:
        yield fake.address


@pytest.fixture
def mute():
    """A server that answers echoes (pygear's check passes), nothing else."""
    with FakeGearmand("silent", options=False) as fake:
        yield fake.address


def check_attempts(lines, calls, must_refuse, phases):
    attempts = [line for line in lines if "call" in line]
    for phase in phases:
        tried = {(a["call"], a["round"]) for a in attempts if a["kind"] == phase}
        missing = {(name, r) for name in calls for r in range(1, ROUNDS + 1)} - tried
        assert not missing, ("not every method was tried in %s" % phase, sorted(missing))
    for a in attempts:
        allowed = {"refused"} if a["call"] in must_refuse else {"ok", "refused"}
        if a["call"] == "set_ssl":
            allowed.add("NotSupported")
        assert a["outcome"] in allowed, a
        assert a["seconds"] < 1.0, ("not refused at once", a)
    reads = [line for line in lines if "read" in line]
    assert all(r["outcome"] == "ok" for r in reads), [r for r in reads if r["outcome"] != "ok"]


def present(cls, calls):
    return {name for name in calls if hasattr(cls, name)}


CLIENT_LOG_PHASES = ["log: server down", "log: silent", "log: connecting"]
WORKER_LOG_PHASES = ["log: server down", "log: silent"]


@pytest.mark.parametrize("kind", ["created", "data", "warning", "status", "complete",
                                  "exception", "fail", "log"])
def test_every_client_method_from_inside_a_callback(gearmand, functions, silent, mute, kind):
    fn = functions[KIND_FUNCTIONS[kind]]
    lines = run_child(calling("tests.test_reentry:client_child"),
                      [kind, gearmand.host, gearmand.port, fn, functions["echo"], silent, mute],
                      timeout=60)
    phases = CLIENT_LOG_PHASES if kind == "log" else [kind]
    check_attempts(lines, present(pygear.Client, CLIENT_CALLS), CLIENT_MUST_REFUSE, phases)
    assert lines[-1] == {"rounds": {phase: ROUNDS for phase in phases}, "after": "after"}
    expected = {"echo": "SUCCESS", "chatty": "SUCCESS", "boom": "WORK_EXCEPTION",
                "fail": "WORK_FAIL"}[KIND_FUNCTIONS[kind]]
    for run in [line for line in lines if "run" in line]:
        assert run["states"] == [expected] * 3, run
        if expected == "SUCCESS":
            assert run["results"] == ["outer 0", "outer 1", "outer 2"], run


def client_close_child(host, port, functions, echo_fn):
    """close() from inside each kind of callback, and from the log function."""
    import json
    functions = json.loads(functions)
    for kind, what in KIND_FUNCTIONS.items():
        c = pygear.Client()
        if kind == "log":
            # the first job goes to the first server: down, said inside do()
            c.add_server("127.0.0.1", dead_port())
        c.add_server(host, int(port))
        c.set_timeout(20000)
        closed_inside = []

        def closer(arg=None):
            if not closed_inside:
                c.close()
                closed_inside.append(c.closed)
            if arg is not None and not isinstance(arg, str):
                read_all(arg, TASK_READS, kind, 1)
        if kind == "log":
            c.set_log_fn(closer, "DEBUG")
            emit(kind=kind, result=c.do(functions["sleepy"], 0.3), closed=c.closed,
                 closed_inside=closed_inside)
        else:
            getattr(c, "set_%s_fn" % kind)(closer)
            tasks = [c.add_task(functions[what], "outer %d" % i) for i in range(3)]
            c.run_tasks()     # returns normally
            emit(kind=kind, states=[t.returncode() for t in tasks], closed=c.closed,
                 closed_inside=closed_inside)
        emit(kind=kind, after=outcome_of(lambda: c.do(echo_fn, "after"))[0])


def test_client_close_inside_a_callback_takes_effect_when_the_call_returns(
        gearmand, functions, sleepy):
    import json
    names = dict(functions, sleepy=sleepy)
    lines = run_child(calling("tests.test_reentry:client_close_child"),
                      [gearmand.host, gearmand.port, json.dumps(names), functions["echo"]])
    outcomes = {line["kind"]: line for line in lines if "closed" in line}
    assert set(outcomes) == set(KIND_FUNCTIONS), lines
    for kind, line in outcomes.items():
        # still open inside the callback, closed once the running call returned
        assert line["closed_inside"] == [False] and line["closed"] is True, line
        if kind == "log":
            assert line["result"] == 0.3, line
        else:
            assert len(line["states"]) == 3, line
    afters = {line["kind"]: line["after"] for line in lines if "after" in line}
    assert afters == {kind: "refused" for kind in KIND_FUNCTIONS}, afters


@pytest.fixture(scope="module")
def sleepy(gearmand):
    yield from serve_function(gearmand, "reentry_sleepy", "sleepy")


# --- Worker ------------------------------------------------------------------------

NAMESPACE = "ns_"


def worker_child(kind, host, port, fn, silent, only=""):
    """A Worker whose job function (or log function) tries every Worker
    method (or only those named in ``only``), while a client in another
    thread submits the jobs and checks each gets its reply."""
    import threading
    port = int(port)
    w = pygear.Worker()
    w.add_server(host, port)
    w.set_namespace(NAMESPACE)
    w.set_timeout(20000)
    calls = {name: WORKER_CALLS[name] for name in (only.split(",") if only else WORKER_CALLS)}
    ctx = types.SimpleNamespace(obj=w, host=host, port=port, fn=fn, namespace=NAMESPACE)
    rounds = Rounds(ctx, calls, JOB_READS, kind)
    ctx.job_fn = rounds if kind == "job" else (lambda job: job.workload())
    ctx.log_fn = rounds if kind == "log" else quiet
    ctx.reinstall = lambda: w.add_function(fn, 0, ctx.job_fn)
    ctx.reinstall()
    w.set_log_fn(ctx.log_fn, "DEBUG")
    if kind == "log":
        log_phases(w, rounds, "%s:%d" % (host, port), [
            ("log: server down", "127.0.0.1:%d" % dead_port(), w.work, 2),
            # answers pygear's check (Worker.echo is that check, in Python:
            # libgearman may log nothing there), then never a job
            ("log: silent", silent, w.work, 2)])
    c = pygear.Client()
    c.add_server(host, port)
    c.set_timeout(20000)
    replies = []
    submitter = threading.Thread(target=lambda: replies.extend(
        c.do(NAMESPACE + fn, i) for i in range(ROUNDS + 1)))
    submitter.start()
    for _ in range(ROUNDS + 1):
        w.work()          # returns normally
    submitter.join(20)
    emit(rounds=rounds.done, replies=replies)
    w.close()


@pytest.mark.parametrize("kind,only", [
    ("job", ""),
    # issue 10, item 13: these crashed the old core on their own
    ("job", "grab_job"), ("job", "remove_servers"), ("job", "work"), ("job", "echo"),
    ("log", ""),
])
def test_every_worker_method_from_inside_a_job_or_log_function(gearmand, silent, kind, only):
    fn = unique_name("reentry_w")
    lines = run_child(calling("tests.test_reentry:worker_child"),
                      [kind, gearmand.host, gearmand.port, fn, silent, only], timeout=60)
    calls = set(only.split(",")) if only else present(pygear.Worker, WORKER_CALLS)
    phases = WORKER_LOG_PHASES if kind == "log" else ["job"]
    check_attempts(lines, calls, WORKER_MUST_REFUSE, phases)
    final = lines[-1]
    assert final["replies"] == list(range(ROUNDS + 1)), final
    assert all(final["rounds"].get(phase) == ROUNDS for phase in phases), final


def worker_close_child(host, port, fn):
    """close() from inside a job function: the job's reply is still sent,
    work() returns normally, and then the worker is closed."""
    import threading
    w = pygear.Worker()
    w.add_server(host, int(port))
    w.set_timeout(20000)
    inside = []

    def closer(job):
        w.close()
        inside.append(w.closed)
        read_all(job, JOB_READS, "job", 1)
        return job.workload()
    w.add_function(fn, 0, closer)
    c = pygear.Client()
    c.add_server(host, int(port))
    c.set_timeout(20000)
    replies = []
    submitter = threading.Thread(target=lambda: replies.append(c.do(fn, "reply")))
    submitter.start()
    w.work()
    submitter.join(20)
    emit(replies=replies, closed_inside=inside, closed=w.closed,
         after=outcome_of(w.work)[0])


def test_worker_close_inside_a_job_function_sends_the_reply_first(gearmand):
    lines = run_child(calling("tests.test_reentry:worker_close_child"),
                      [gearmand.host, gearmand.port, unique_name("reentry_close")])
    assert lines[-1] == {"replies": ["reply"], "closed_inside": [False], "closed": True,
                         "after": "refused"}

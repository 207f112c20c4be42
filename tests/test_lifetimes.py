"""Lifetimes (issue 4, item 3): every C object is freed once by one owner;
closing or collecting a Client while Tasks, callbacks or a Job still exist
is safe; methods after close() raise pygear.ERROR; callbacks passed to C
outlive any chance of being called."""
import gc
import threading
import time
import weakref

import pytest

import pygear
from pygear.testing import unique_name

from .faultkit import connected_client, describe, last_json, run_python, serve_echo

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def echo_fn(gearmand):
    yield from serve_echo(gearmand, "life_echo")


def _client(gearmand, timeout=10000):
    return connected_client(gearmand, timeout)


def _worker(gearmand, timeout=2000):
    w = pygear.Worker()
    w.add_server(gearmand.host, gearmand.port)
    w.set_timeout(timeout)
    return w


# --- random churn, in a child so that a crash is a signal, not a dead run ----

CHURN = r'''
import gc, json, random, sys, time
import pygear

seed, host, port, echo_fn, ops, free_tasks, idle_fn, grab_fn = sys.argv[1:9]
port, ops = int(port), int(ops)
rnd = random.Random(int(seed))

clients, workers, tasks, jobs, closed = [], [], [], [], []
created = {"clients": 0, "workers": 0, "tasks": 0, "jobs": 0}
unexpected = []
log_lines = []

def new_client():
    c = pygear.Client()
    c.add_server(host, port)
    c.set_timeout(rnd.choice([300, 2000]))
    if rnd.random() < 0.3:
        c.set_complete_fn(lambda t, c=c: t.result())     # refers to its client
    if rnd.random() < 0.2:
        c.set_log_fn(lambda line: log_lines.append(len(line)), "ERROR")
    if free_tasks == "1" and rnd.random() < 0.2:
        c.set_options(free_tasks=True)
    clients.append(c)
    created["clients"] += 1

def new_worker():
    w = pygear.Worker()
    w.add_server(host, port)
    w.set_timeout(200)
    if rnd.random() < 0.5:
        w.add_function(idle_fn, 0, lambda job: job.workload())
    w.register(grab_fn)
    workers.append(w)
    created["workers"] += 1

def pick(seq):
    return rnd.choice(seq) if seq else None

def drop(seq):
    if seq:
        seq.pop(rnd.randrange(len(seq)))

def op_add_task():
    c = pick(clients)
    if c is None:
        return
    kind = rnd.random()
    if kind < 0.6:
        t = c.add_task(echo_fn, rnd.randrange(1000))
    elif kind < 0.8:
        t = c.add_task_background(idle_fn, "bg")
    else:
        t = c.add_task(echo_fn, "dropped at once")
        t = None
    if t is not None:
        tasks.append(t)
    created["tasks"] += 1

def op_run_tasks():
    c = pick(clients)
    if c is not None:
        c.run_tasks()

def op_read_task():
    t = pick(tasks)
    if t is None:
        return
    t.result(); t.data(); t.job_handle(); t.unique(); t.returncode(); t.is_known()
    t.is_running(); t.numerator(); t.denominator(); t.error(); t.strstate()
    t.function_name(); t.data_size(); repr(t)

def op_do():
    c = pick(clients)
    if c is not None:
        assert c.do(echo_fn, [1, "x"]) == [1, "x"]

def op_close_client():
    c = pick(clients)
    if c is not None:
        c.close()
        clients.remove(c)
        closed.append(c)

def op_close_worker():
    w = pick(workers)
    if w is not None:
        w.close()
        workers.remove(w)
        closed.append(w)

def op_grab():
    w, c = pick(workers), pick(clients)
    if w is None or c is None:
        return
    c.do_background(grab_fn, rnd.randrange(10))
    try:
        job = w.grab_job()
    except pygear.TIMEOUT:
        return
    jobs.append(job)
    created["jobs"] += 1

def op_job():
    job = pick(jobs)
    if job is None:
        return
    job.workload(); job.handle(); job.function_name(); job.unique(); repr(job)
    r = rnd.random()
    if r < 0.4:
        job.send_complete("done")
    elif r < 0.5:
        job.send_fail()
    elif r < 0.6:
        job.send_status(1, 2)
    jobs.remove(job)

def op_closed_use():
    o = pick(closed)
    if o is None:
        return
    try:
        o.set_timeout(5)
    except pygear.ERROR:
        pass
    else:
        raise AssertionError("method on a closed object did not raise")

def op_gc():
    gc.collect()

def op_drop_random():
    drop(rnd.choice([clients, workers, tasks, jobs, closed]))

OPS = [(new_client, 8), (new_worker, 3), (op_add_task, 20), (op_run_tasks, 8),
       (op_read_task, 10), (op_do, 4), (op_close_client, 4), (op_close_worker, 2),
       (op_grab, 3), (op_job, 4), (op_closed_use, 2), (op_gc, 2), (op_drop_random, 12)]
funcs = [f for f, _ in OPS]
weights = [w for _, w in OPS]

for i in range(ops):
    fn = rnd.choices(funcs, weights)[0]
    try:
        fn()
    except (pygear.TIMEOUT, pygear.ERROR):
        pass
    except BaseException as exc:
        unexpected.append("%s: %r" % (fn.__name__, exc))
    # bound the live connections
    while len(clients) > 12:
        drop(clients)
    while len(workers) > 6:
        drop(workers)
    while len(tasks) > 300:
        drop(tasks)
    if len(closed) > 50:
        del closed[:25]

# everything goes, in a random order
pools = [clients, workers, tasks, jobs, closed]
while any(pools):
    drop(rnd.choice([p for p in pools if p]))
    if rnd.random() < 0.05:
        gc.collect()
gc.collect()
print(json.dumps({"created": created, "unexpected": unexpected[:20]}), flush=True)
'''


@pytest.mark.parametrize("seed,free_tasks", [(1, "0"), (2, "0"), (3, "1"), (4, "1")])
def test_random_create_use_drop_close(gearmand, echo_fn, seed, free_tasks):
    # (unique_name: on a shared server the session's end drains and drops them)
    proc = run_python(CHURN, [str(seed), gearmand.host, str(gearmand.port), echo_fn, "5000",
                              free_tasks, unique_name("churn_idle"), unique_name("churn_grab")],
                      timeout=100)
    assert proc.returncode == 0, describe(proc)
    report = last_json(proc.stdout)
    assert report["unexpected"] == [], report
    assert report["created"]["clients"] > 400, report
    assert report["created"]["tasks"] > 1000, report
    assert b"Exception ignored" not in proc.stderr, describe(proc)


# --- closing with Tasks, callbacks and Jobs alive -------------------------------

def test_close_client_with_tasks_and_callbacks_alive(gearmand, echo_fn):
    c = _client(gearmand, timeout=5000)
    seen = []
    c.set_complete_fn(lambda task, c=c: seen.append((task.result(), c)))  # a cycle through c
    c.set_data_fn(lambda task: seen.append(task.data()))
    done = [c.add_task(echo_fn, i) for i in range(5)]
    c.run_tasks()
    assert sorted(r for r, _ in seen) == list(range(5))
    waiting = [c.add_task(unique_name("nobody"), i) for i in range(5)]
    background = c.add_task_background(unique_name("nobody"), "x")
    c.close()
    c.close()   # idempotent
    gc.collect()
    for i, t in enumerate(done):
        assert t.result() == i
        assert t.returncode() == "SUCCESS"
        assert t.job_handle().startswith("H:")
        assert t.data() == str(i).encode()
    for t in waiting + [background]:
        # answers from what it last saw; never touches freed memory
        t.result(); t.data(); t.job_handle(); t.returncode(); t.is_known()
        t.is_running(); t.numerator(); t.denominator(); t.error(); t.strstate()
        repr(t)
    del seen[:]
    del c
    gc.collect()


def test_client_collected_while_its_tasks_live(gearmand, echo_fn):
    c = _client(gearmand)
    c.set_complete_fn(lambda task: None)
    tasks = [c.add_task(echo_fn, i) for i in range(3)]
    c.run_tasks()
    pending = [c.add_task(unique_name("nobody"), i) for i in range(3)]
    ref = weakref.ref(c)
    del c
    gc.collect()
    for i, t in enumerate(tasks):
        assert t.result() == i
    for t in pending:
        t.returncode()
    del tasks, pending
    gc.collect()
    assert ref() is None, gc.get_referrers(ref())


def test_close_worker_while_grabbed_job_alive(gearmand):
    name = unique_name("grab")
    with _client(gearmand) as c:
        c.do_background(name, {"k": 1})
    w = _worker(gearmand, timeout=5000)
    w.register(name)
    job = w.grab_job()
    assert job.workload() == {"k": 1}
    w.close()
    with pytest.raises(pygear.ERROR):
        job.send_complete("too late")
    with pytest.raises(pygear.ERROR):
        job.send_status(1, 2)
    with pytest.raises(pygear.ERROR):
        job.send_fail()
    # reading still works
    assert job.workload() == {"k": 1}
    assert job.handle().startswith("H:")
    del job, w
    gc.collect()


def test_unfinished_job_dropped_is_given_to_another_worker(gearmand):
    name = unique_name("dropped")
    with _client(gearmand) as c:
        c.do_background(name, "again")
    w1 = _worker(gearmand, timeout=5000)
    w1.register(name)
    job = w1.grab_job()
    handle = job.handle()
    del job
    gc.collect()
    w1.close()   # the connection goes: gearmand requeues the job
    w2 = _worker(gearmand, timeout=5000)
    w2.register(name)
    job = w2.grab_job()
    assert job.handle() == handle and job.workload() == "again"
    job.send_complete("ok")
    w2.close()


def test_job_outliving_worker_collected(gearmand):
    name = unique_name("outlive")
    with _client(gearmand) as c:
        for i in range(3):
            c.do_background(name, i)
    w = _worker(gearmand, timeout=5000)
    w.register(name)
    jobs = [w.grab_job() for _ in range(3)]
    jobs[0].send_complete("first")
    ref = weakref.ref(w)
    del w
    gc.collect()
    assert ref() is not None or True   # jobs may or may not keep it alive
    for job in jobs[1:]:
        job.workload()
        try:
            job.send_complete("later")
        except pygear.ERROR:
            pass
    del jobs
    gc.collect()
    assert ref() is None


# --- every method after close() raises pygear.ERROR ----------------------------------

def _cb(task):
    pass


CLIENT_CALLS = {
    "add_server": ("localhost", 4730), "add_servers": ("localhost:4730",),
    "remove_servers": (), "set_timeout": (100,), "timeout": (),
    "set_serializer": (pygear.JSON,), "set_identifier": ("me",),
    "set_log_fn": (print,), "error": (), "errno": (), "error_code": (),
    "do": ("f", 1), "do_high": ("f", 1), "do_low": ("f", 1),
    "do_background": ("f", 1), "do_high_background": ("f", 1),
    "do_low_background": ("f", 1), "job_status": ("H:x:1",), "unique_status": ("u",),
    "echo": ("x",), "add_task": ("f", 1), "add_task_high": ("f", 1),
    "add_task_low": ("f", 1), "add_task_background": ("f", 1),
    "add_task_high_background": ("f", 1), "add_task_low_background": ("f", 1),
    "add_task_status": ("H:x:1",), "run_tasks": (),
    "set_created_fn": (_cb,), "set_data_fn": (_cb,), "set_warning_fn": (_cb,),
    "set_status_fn": (_cb,), "set_complete_fn": (_cb,), "set_exception_fn": (_cb,),
    "set_fail_fn": (_cb,), "set_workload_fn": (_cb,), "clear_fn": (),
    "set_options": (), "get_options": (), "clone": (), "wait": (), "__enter__": (),
    "set_connect_timeout": (100,), "connect_timeout": (), "set_metrics": (None,),
    "set_ssl": (),
}

WORKER_CALLS = {
    "add_server": ("localhost", 4730), "add_servers": ("localhost:4730",),
    "remove_servers": (), "set_timeout": (100,), "timeout": (),
    "set_serializer": (pygear.JSON,), "set_identifier": ("me",),
    "set_log_fn": (print,), "error": (), "errno": (),
    "add_function": ("f", 0, _cb), "register": ("f",), "unregister": ("f",),
    "unregister_all": (), "function_exists": ("f",), "set_namespace": ("ns",),
    "namespace": (), "echo": ("x",), "work": (), "grab_job": (), "clone": (),
    "wait": (), "__enter__": (), "set_connect_timeout": (100,), "connect_timeout": (),
    "set_metrics": (None,), "set_ssl": (), "serve": (),
}

NOT_CALLS = {"close", "closed", "__exit__"}


def _public_methods(cls):
    return {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))
            and n not in NOT_CALLS}


@pytest.mark.parametrize("cls,calls", [(pygear.Client, CLIENT_CALLS),
                                       (pygear.Worker, WORKER_CALLS)],
                         ids=["Client", "Worker"])
def test_every_method_after_close_raises(gearmand, cls, calls):
    missing = _public_methods(cls) - set(calls)
    assert not missing, "add these methods to the after-close table: %s" % sorted(missing)
    obj = cls()
    obj.add_server(gearmand.host, gearmand.port)
    obj.close()
    for name, args in sorted(calls.items()):
        with pytest.raises(pygear.ERROR):
            getattr(obj, name)(*args)
    obj.close()   # still idempotent
    assert obj.closed


FREE_TASKS = r"""
import sys, json, gc
import pygear
host, port, echo_fn = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = pygear.Client()
c.add_server(host, port)
c.set_timeout(5000)
c.set_options(free_tasks=True)
out = {"do": [c.do(echo_fn, i) for i in range(20)]}
tasks = [c.add_task(echo_fn, i) for i in range(20)]
c.run_tasks()
gc.collect()
out["tasks"] = [t.result() for t in tasks]
out["codes"] = sorted({t.returncode() for t in tasks})
out["bg"] = bool(c.do_background(echo_fn, 1)["job_handle"])
c.close()
print(json.dumps(out), flush=True)
"""


def test_free_tasks_option_is_memory_safe(gearmand, echo_fn):
    """With free_tasks libgearman frees each finished task itself: do*,
    run_tasks and reading Tasks afterwards must not touch the freed memory."""
    proc = run_python(FREE_TASKS, [gearmand.host, str(gearmand.port), echo_fn], timeout=60)
    assert proc.returncode == 0, describe(proc)
    out = last_json(proc.stdout)
    assert out == {"do": list(range(20)), "tasks": list(range(20)), "codes": ["SUCCESS"],
                   "bg": True}, out


def test_task_after_client_gone_and_collected(gearmand, echo_fn):
    c = _client(gearmand)
    t = c.add_task(echo_fn, "kept")
    c.run_tasks()
    c.close()
    del c
    gc.collect()
    assert t.result() == "kept"
    assert t.returncode() == "SUCCESS"


# --- collectable: no leaked cycles ---------------------------------------------------

def _collected(make):
    obj = make()
    ref = weakref.ref(obj)
    del obj
    gc.collect()
    return ref() is None


def test_client_collectable(gearmand, echo_fn):
    def make():
        c = _client(gearmand)
        c.set_complete_fn(lambda task: c.timeout)   # a cycle through a callback
        c.set_log_fn(lambda line: None, "ERROR")
        assert c.do(echo_fn, 1) == 1
        t = c.add_task(echo_fn, 2)
        c.run_tasks()
        assert t.result() == 2
        c.add_task(unique_name("nobody"), 3)        # unfinished task left behind
        return c
    for _ in range(3):
        assert _collected(make)


def test_worker_collectable(gearmand):
    names = []

    def make():
        w = _worker(gearmand, timeout=100)
        names.extend([unique_name("w"), unique_name("g")])
        w.add_function(names[-2], 0, lambda job: w.timeout())   # a cycle through its function
        w.register(names[-1])
        with pytest.raises(pygear.TIMEOUT):
            w.work()
        return w
    for _ in range(3):
        assert _collected(make)
    # and collecting it closed its connection: gearmand lists no worker for them
    # (the cycle collector clears weak references before it runs __del__)
    deadline = time.monotonic() + 5
    while True:
        with pygear.Admin(gearmand.host, gearmand.port, timeout=5) as admin:
            left = {r["function"]: r["available_workers"] for r in admin.status()
                    if r["function"] in names and r["available_workers"]}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == {}


def test_plain_client_and_worker_freed_by_refcount(gearmand):
    """Without the cycle collector: no hidden cycle keeps them alive."""
    gc.collect()
    gc.disable()
    try:
        for cls in (pygear.Client, pygear.Worker):
            obj = cls()
            obj.add_server(gearmand.host, gearmand.port)
            ref = weakref.ref(obj)
            del obj
            assert ref() is None, "%s is kept alive by a reference cycle" % cls.__name__
    finally:
        gc.enable()


def test_log_callbacks_replaced_while_in_use(gearmand, echo_fn):
    """Every CFUNCTYPE handed to C stays alive while C may call it."""
    c = _client(gearmand)
    lines = []
    for i in range(30):
        c.set_log_fn(lambda line, i=i: lines.append(i), "DEBUG")
        gc.collect()
        assert c.do(echo_fn, i) == i
    w = _worker(gearmand, timeout=50)
    w.add_function(unique_name("logw"), 0, lambda job: None)
    for i in range(10):
        w.set_log_fn(lambda line: lines.append(line), "DEBUG")
        gc.collect()
        with pytest.raises(pygear.TIMEOUT):
            w.work()
    c.close()
    w.close()
    gc.collect()


def test_gc_in_another_thread_during_run_tasks(gearmand, echo_fn):
    """Tasks dropped and collected from another thread while run_tasks runs."""
    c = _client(gearmand)
    stop = threading.Event()
    junk = []

    def collector():
        while not stop.is_set():
            junk.clear()
            gc.collect()
            time.sleep(0.001)

    t = threading.Thread(target=collector, daemon=True)
    t.start()
    try:
        for batch in range(20):
            tasks = [c.add_task(echo_fn, i) for i in range(20)]
            junk.extend(tasks[::2])
            keep = tasks[1::2]
            del tasks
            c.run_tasks()
            assert [k.result() for k in keep] == list(range(1, 20, 2))
    finally:
        stop.set()
        t.join(5)
        c.close()

"""Worker and Job against a real gearmand; the worker runs in the test
process, the clients (pygear or the C `gearman` tool) in threads or
subprocesses."""
import shutil
import subprocess
import threading
import time

import pytest

import pygear
from pygear.testing import unique_name

pytestmark = pytest.mark.timeout(60)


class Submit:
    """Submit a job from a background thread; .result() waits for it."""

    def __init__(self, gearmand, function, workload, method="do", serializer=None, **kw):
        self.value = self.error = None
        self.done = threading.Event()

        def run():
            try:
                with pygear.Client() as c:
                    c.add_server(gearmand.host, gearmand.port)
                    c.set_timeout(15000)
                    if serializer is not None:
                        c.set_serializer(serializer)
                    self.value = getattr(c, method)(function, workload, **kw)
            except BaseException as exc:
                self.error = exc
            finally:
                self.done.set()
        threading.Thread(target=run, daemon=True).start()

    def result(self, timeout=20):
        assert self.done.wait(timeout), "client did not finish"
        if self.error is not None:
            raise self.error
        return self.value


def test_return_value_completes_the_job(worker, gearmand):
    name = unique_name("rev")
    worker.add_function(name, 0, lambda job: job.workload()[::-1])
    sub = Submit(gearmand, name, "Hello pygear!")
    worker.work()
    assert sub.result() == "!raegyp olleH"


def test_job_accessors(worker, gearmand):
    name = unique_name("acc")
    seen = {}

    def fn(job):
        seen.update(workload=job.workload(), raw=job.raw_workload(), size=job.workload_size(),
                    handle=job.handle(), function=job.function_name(), unique=job.unique())
        return 1
    worker.add_function(name, 0, fn)
    sub = Submit(gearmand, name, {"k": "v"}, unique="my-unique")
    worker.work()
    assert sub.result() == 1
    assert seen["workload"] == {"k": "v"}
    assert seen["raw"] == b'{"k": "v"}'
    assert seen["size"] == len(b'{"k": "v"}')
    assert seen["handle"].startswith("H:")
    assert seen["function"] == name
    assert seen["unique"] == "my-unique"


def test_raising_function_sends_exception_and_worker_keeps_serving(worker, gearmand):
    name = unique_name("boom")
    calls = []

    def fn(job):
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("missing")
        return "second"
    worker.add_function(name, 0, fn)
    sub = Submit(gearmand, name, 1)
    worker.work()                  # returns normally although fn raised
    with pytest.raises(pygear.WORK_EXCEPTION) as info:
        sub.result()
    assert info.value.payload["type"] == "KeyError"
    assert info.value.payload["args"] == ["missing"]
    assert isinstance(info.value.payload["traceback"], list)
    sub2 = Submit(gearmand, name, 2)
    worker.work()
    assert sub2.result() == "second"


def test_exception_report_with_raw_serializer_is_json_text(worker, gearmand):
    name = unique_name("rawboom")
    worker.set_serializer(pygear.RAW)

    def fn(job):
        raise RuntimeError("raw failure")
    worker.add_function(name, 0, fn)
    sub = Submit(gearmand, name, b"x", serializer=pygear.RAW)
    worker.work()
    with pytest.raises(pygear.WORK_EXCEPTION) as info:
        sub.result()
    # The RAW client cannot decode it with RAW, so it reads the JSON text.
    report = info.value.payload
    assert report["type"] == "RuntimeError" if isinstance(report, dict) else b"RuntimeError" in report


def test_client_without_exception_option_sees_failure(worker, gearmand):
    if shutil.which("gearman") is None:
        pytest.skip("gearman-tools not installed (apt-get install gearman-tools)")
    name = unique_name("cboom")
    worker.add_function(name, 0, lambda job: 1 / 0)
    proc = subprocess.Popen(["gearman", "-h", gearmand.host, "-p", str(gearmand.port),
                             "-f", name, "data"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    worker.work()
    out, err = proc.communicate(timeout=20)
    assert b"fail" in (out + err).lower() or proc.returncode != 0


def test_send_fail(worker, gearmand):
    name = unique_name("fail")
    worker.add_function(name, 0, lambda job: job.send_fail())
    sub = Submit(gearmand, name, 1)
    worker.work()
    with pytest.raises(pygear.WORK_FAIL):
        sub.result()


def test_send_data_warning_status_then_complete(worker, gearmand):
    name = unique_name("chat")

    def fn(job):
        job.send_status(1, 4)
        job.send_data([1, 2])
        job.send_warning({"w": 1})
        job.send_complete("done")
        with pytest.raises(pygear.ERROR):
            job.send_data("too late")
        return "ignored"
    worker.add_function(name, 0, fn)
    events = []
    result = {}

    def client():
        with pygear.Client() as c:
            c.add_server(gearmand.host, gearmand.port)
            c.set_timeout(15000)
            for kind in ("data", "warning", "status", "complete"):
                getattr(c, "set_%s_fn" % kind)(
                    lambda t, kind=kind: events.append((kind, t.result(), t.numerator(),
                                                        t.denominator())))
            task = c.add_task(name, None)
            c.run_tasks()
            result["task"] = task.result()
    t = threading.Thread(target=client)
    t.start()
    worker.work()
    t.join(20)
    assert [e[0] for e in events] == ["status", "data", "warning", "complete"]
    assert events[0][2:] == (1, 4)
    assert events[1][1] == [1, 2]
    assert events[2][1] == {"w": 1}
    assert result["task"] == "done"


def test_send_exception_by_hand(worker, gearmand):
    name = unique_name("sexc")
    worker.add_function(name, 0, lambda job: job.send_exception("custom report"))
    sub = Submit(gearmand, name, 1)
    worker.work()
    with pytest.raises(pygear.WORK_EXCEPTION) as info:
        sub.result()
    assert info.value.payload == "custom report"


def test_send_status_checks_arguments(worker, gearmand):
    name = unique_name("badstatus")
    errors = []

    def fn(job):
        for args in (("a", 1), (-1, 2), (1, 2 ** 40)):
            try:
                job.send_status(*args)
            except (TypeError, ValueError) as exc:
                errors.append(type(exc))
        return "ok"
    worker.add_function(name, 0, fn)
    sub = Submit(gearmand, name, 1)
    worker.work()
    assert sub.result() == "ok"
    assert errors == [TypeError, ValueError, ValueError]


def test_work_times_out_when_idle(worker):
    worker.add_function(unique_name("idle"), 0, lambda job: None)
    worker.set_timeout(200)
    assert worker.timeout() == 200
    start = time.monotonic()
    with pytest.raises(pygear.TIMEOUT) as info:
        worker.work()
    assert 0.15 < time.monotonic() - start < 1.0
    assert isinstance(info.value, TimeoutError)


def test_work_without_functions_raises(worker):
    with pytest.raises(pygear.NO_REGISTERED_FUNCTIONS):
        worker.work()


def test_grab_job_manual_mode(worker, gearmand):
    name = unique_name("manual")
    worker.register(name)
    assert worker.function_exists(name)
    sub = Submit(gearmand, name, "payload", unique="uq")
    job = worker.grab_job()
    assert job.workload() == "payload"
    assert job.unique() == "uq"
    assert job.function_name() == name
    job.send_status(1, 1)
    job.send_complete("manual result")
    assert sub.result() == "manual result"
    with pytest.raises(pygear.ERROR):
        job.send_fail()


def test_grab_job_waits_for_a_job_submitted_later(worker, gearmand):
    name = unique_name("later")
    worker.register(name)
    holder = {}

    def later():
        time.sleep(0.3)
        holder["sub"] = Submit(gearmand, name, 5)
    threading.Thread(target=later).start()
    job = worker.grab_job()
    job.send_complete(job.workload() * 2)
    time.sleep(0.05)
    assert holder["sub"].result() == 10


def test_grab_job_times_out(worker):
    worker.register(unique_name("never"))
    worker.set_timeout(150)
    with pytest.raises(pygear.TIMEOUT):
        worker.grab_job()


def test_work_on_registered_only_function_fails_job(worker, gearmand):
    name = unique_name("nofn")
    worker.register(name, timeout=5)
    sub = Submit(gearmand, name, 1)
    worker.work()
    with pytest.raises(pygear.WORK_FAIL):
        sub.result()


def test_unregister_and_function_exists(worker):
    a, b = unique_name("a"), unique_name("b")
    worker.add_function(a, 0, lambda job: 1)
    worker.add_function(b, 10, lambda job: 2)
    assert worker.function_exists(a) and worker.function_exists(b)
    worker.unregister(a)
    assert not worker.function_exists(a)
    worker.unregister_all()
    assert not worker.function_exists(b)
    with pytest.raises(pygear.NO_REGISTERED_FUNCTIONS):
        worker.work()


def test_functions_show_in_admin_workers(worker, gearmand):
    name = unique_name("visible")
    ident = unique_name("wid")
    worker.set_identifier(ident)
    worker.add_function(name, 0, lambda job: 1)
    worker.set_timeout(100)
    with pytest.raises(pygear.TIMEOUT):
        worker.work()          # connects and sends CAN_DO
    with pygear.Admin(gearmand.host, gearmand.port) as admin:
        mine = [w for w in admin.workers() if w["client_id"] == ident]
    assert mine and name in mine[0]["functions"]


def test_serializers_on_worker(worker, gearmand):
    name = unique_name("raw")
    worker.set_serializer(pygear.RAW)
    worker.add_function(name, 0, lambda job: job.workload() + b"\0!")
    sub = Submit(gearmand, name, b"\0bin", serializer=pygear.RAW)
    worker.work()
    assert sub.result() == b"\0bin\0!"
    with pytest.raises((TypeError, AttributeError)):
        worker.set_serializer(None)


def test_large_payload_through_worker(worker, gearmand):
    name = unique_name("big")
    worker.set_serializer(pygear.RAW)
    worker.add_function(name, 0, lambda job: job.raw_workload())
    payload = bytes(range(256)) * (8 * 4096)   # 8 MiB
    sub = Submit(gearmand, name, payload, serializer=pygear.RAW)
    worker.work()
    assert sub.result(timeout=40) == payload


def test_namespace(worker, gearmand):
    worker.set_namespace("ns1")
    assert worker.namespace() == "ns1"
    name = unique_name("nsfn")
    worker.add_function(name, 0, lambda job: "from ns")
    with pygear.Admin(gearmand.host, gearmand.port) as admin:
        worker.set_timeout(100)
        with pytest.raises(pygear.TIMEOUT):
            worker.work()
        functions = [f for w in admin.workers() for f in w["functions"]]
    assert "ns1" + name in functions
    # jobs to the namespaced name run the function registered without it
    sub = Submit(gearmand, "ns1" + name, "x")
    worker.set_timeout(10000)
    worker.work()
    assert sub.result() == "from ns"


@pytest.mark.parametrize("kept", [True, False])
def test_job_identity_read_inside_or_after_the_function(worker, gearmand, kept):
    """A work() job's handle, function name and unique key are read lazily;
    a job the function keeps still answers after libgearman freed it."""
    name = unique_name("ident")
    jobs, seen = [], []

    def fn(job):
        if kept:
            jobs.append(job)
        else:
            seen.append((job.handle(), job.function_name(), job.unique()))
        return job.workload()

    worker.add_function(name, 0, fn)
    sub = Submit(gearmand, name, "payload", unique="ident-key")
    worker.set_timeout(10000)
    worker.work()
    assert sub.result() == "payload"
    if kept:
        job = jobs[0]
        seen.append((job.handle(), job.function_name(), job.unique()))
        assert job.is_finished() and job.raw_workload() == b'"payload"'
        assert "ident-key" in repr(job) or job.handle() in repr(job)
    handle, function, unique = seen[0]
    assert handle.startswith("H:") and function == name and unique == "ident-key"


def test_echo_and_errors(worker):
    worker.echo(b"hello \0 worker")
    assert isinstance(worker.errno(), int)
    assert worker.error() is None or isinstance(worker.error(), str)


def test_clone_keeps_functions(worker, gearmand):
    name = unique_name("cl")
    worker.add_function(name, 0, lambda job: "from clone")
    other = worker.clone()
    try:
        assert other.function_exists(name)
        sub = Submit(gearmand, name, 1)
        other.work()
        assert sub.result() == "from clone"
    finally:
        other.close()


def test_closed_worker_raises(gearmand):
    w = pygear.Worker()
    with w:
        w.add_server(gearmand.host, gearmand.port)
    w.close()
    with pytest.raises(pygear.ERROR):
        w.work()
    with pytest.raises(pygear.ERROR):
        w.add_function("x", 0, lambda job: 1)


def test_bad_arguments(worker):
    with pytest.raises(TypeError):
        worker.add_function("f", 0, "not callable")
    with pytest.raises(ValueError):
        worker.add_function("bad\0", 0, lambda job: 1)
    with pytest.raises(TypeError):
        worker.add_function("f", "soon", lambda job: 1)
    with pytest.raises(ValueError):
        worker.register("x" * 100000)


def test_interop_c_client_against_pygear_worker(worker, gearmand):
    if shutil.which("gearman") is None:
        pytest.skip("gearman-tools not installed (apt-get install gearman-tools)")
    name = unique_name("crev")
    worker.set_serializer(pygear.RAW)
    worker.add_function(name, 0, lambda job: job.workload()[::-1])
    proc = subprocess.Popen(["gearman", "-h", gearmand.host, "-p", str(gearmand.port),
                             "-f", name, "abc"], stdout=subprocess.PIPE)
    worker.work()
    out, _ = proc.communicate(timeout=20)
    assert out.strip() == b"cba"


def test_wait_returns_when_idle(worker):
    worker.add_function(unique_name("w"), 0, lambda job: 1)
    worker.set_timeout(100)
    start = time.monotonic()
    worker.wait()
    assert time.monotonic() - start < 1.0


def test_a_job_longer_than_the_work_timeout_still_replies(worker, gearmand):
    """The work() timeout bounds the wait for a job, not the job: a function
    that runs past it still gets its result to the client (the stalled-server
    watchdog must not count the function's time against the reply)."""
    name = unique_name("long")
    worker.set_timeout(200)
    big = "x" * (16 << 20)          # a reply that takes a while to send
    runs = []

    def slow(job):
        runs.append(job.workload())
        time.sleep(float(job.workload()))
        return big
    worker.add_function(name, slow)
    for seconds in ("0", "0.8", "0.8"):   # the first job connects; the others are watched
        sub = Submit(gearmand, name, seconds)
        deadline = time.monotonic() + 10
        done = None
        while not done and time.monotonic() < deadline:
            try:
                done = worker.work()
            except pygear.TIMEOUT:
                pass
        assert sub.result(timeout=30) == big, seconds
    assert runs == ["0", "0.8", "0.8"], "a reply was cut and its job ran again"

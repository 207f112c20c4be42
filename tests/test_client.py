"""Client and Task against a real gearmand, served by pygear workers in
spawned processes (and by the C `gearman` tool where noted)."""
import os
import re
import threading
import time

import pytest

import pygear
import pygear._taskbook
from pygear.testing import WorkerProcesses, unique_name

from . import workers

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def fn(gearmand):
    """Unique function names served by two worker processes for the module."""
    names = {key: unique_name(key) for key in (
        "reverse", "echo", "echo_unique", "boom", "fail", "chatty", "sleepy",
        "explicit_complete", "explicit_exception", "unserializable")}
    procs = WorkerProcesses(gearmand)
    procs.start({names[k]: getattr(workers, k) for k in names}, count=2)
    raw = {"raw_echo": unique_name("raw_echo")}
    procs.start({raw["raw_echo"]: workers.raw_echo}, serializer="raw")
    names.update(raw)
    yield names
    procs.stop_all()


# --- do ---------------------------------------------------------------------

def test_do_returns_deserialized_result(client, fn):
    assert client.do(fn["reverse"], "Hello pygear!") == "!raegyp olleH"


@pytest.mark.parametrize("method", ["do", "do_high", "do_low"])
def test_do_priorities(client, fn, method):
    assert getattr(client, method)(fn["echo"], {"a": [1, 2]}) == {"a": [1, 2]}


def test_do_passes_unique_key_to_worker(client, fn):
    info = client.do(fn["echo_unique"], "x", unique="key-42")
    assert info["unique"] == "key-42"
    assert info["function"] == fn["echo_unique"]
    assert info["handle"].startswith("H:")


def test_worker_exception_raises_work_exception_with_report(client, fn):
    with pytest.raises(pygear.WORK_EXCEPTION) as info:
        client.do(fn["boom"], "x")
    report = info.value.payload
    assert report["type"] == "ValueError"
    assert report["args"] == ["I can't spell backwards!", 42]
    assert "I can't spell backwards!" in report["message"]
    assert any("boom" in line for line in report["traceback"])
    # the frames that called the job function are pygear's: left out
    assert not any("_signals.py" in line or "_job.py" in line for line in report["traceback"])
    assert isinstance(info.value, pygear.GearmanError)
    assert info.value.name == "WORK_EXCEPTION"


def test_worker_failure_raises_work_fail(client, fn):
    with pytest.raises(pygear.WORK_FAIL):
        client.do(fn["fail"], "x")


def test_explicit_send_complete_wins_over_return_value(client, fn):
    assert client.do(fn["explicit_complete"], 1) == "sent by hand"


def test_explicit_send_exception(client, fn):
    with pytest.raises(pygear.WORK_EXCEPTION) as info:
        client.do(fn["explicit_exception"], 1)
    assert info.value.payload == {"why": "custom"}


def test_unserializable_result_becomes_exception(client, fn):
    with pytest.raises(pygear.WORK_EXCEPTION) as info:
        client.do(fn["unserializable"], 1)
    assert info.value.payload["type"] == "TypeError"


def test_client_keeps_working_after_failures(client, fn):
    for _ in range(3):
        with pytest.raises(pygear.WORK_FAIL):
            client.do(fn["fail"], 1)
        assert client.do(fn["echo"], 7) == 7


def test_do_timeout_raises_timeout_error(client, fn):
    client.set_timeout(300)
    assert client.timeout() == 300
    start = time.monotonic()
    with pytest.raises(pygear.TIMEOUT) as info:
        client.do(fn["sleepy"], "3")
    elapsed = time.monotonic() - start
    assert 0.25 < elapsed < 1.5
    assert isinstance(info.value, TimeoutError)


def test_do_with_no_worker_times_out(client):
    client.set_timeout(200)
    with pytest.raises(TimeoutError):
        client.do(unique_name("nobody"), "x")


# --- payloads ------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"\0", b"a\0b\0\0c", bytes(range(256)) * 4,
                                     b"\xff" * (3 * 1024 * 1024 + 7)])
def test_raw_payloads_round_trip_exactly(client, fn, payload):
    client.set_serializer(pygear.RAW)
    assert client.do(fn["raw_echo"], payload) == payload


def test_raw_str_is_utf8_encoded(client, fn):
    client.set_serializer(pygear.RAW)
    assert client.do(fn["raw_echo"], "héllo") == "héllo".encode("utf-8")


def test_json_default_round_trips_structures(client, fn):
    value = {"list": [1, 2.5, None, True], "text": "ünïcode", "nested": {"k": []}}
    assert client.do(fn["echo"], value) == value


def test_empty_serialized_workload_round_trips(client, fn):
    class Empty:
        dumps = staticmethod(lambda obj: b"")
        loads = staticmethod(lambda data: ("loaded", data))
    client.set_serializer(Empty())
    assert client.do(fn["raw_echo"], "anything") == ("loaded", b"")


def test_pickle_serializer_is_opt_in(client, fn):
    client.set_serializer(pygear.PICKLE)
    with pytest.raises(pygear.WORK_EXCEPTION):
        client.do(fn["echo"], {1, 2})   # the worker speaks JSON


def test_unserializable_workload_raises_before_sending(client, fn):
    with pytest.raises(TypeError):
        client.do(fn["echo"], object())
    assert client.do(fn["echo"], 1) == 1


def test_set_serializer_checks_interface(client):
    with pytest.raises((TypeError, AttributeError)):
        client.set_serializer(object())
    with pytest.raises((TypeError, AttributeError)):
        client.set_serializer(type("X", (), {"loads": 1, "dumps": 2})())


UUID_SHAPE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_jobs_without_unique_key_get_distinct_uuid_shaped_keys(client, fn):
    # pygear names them itself instead of libgearman's libuuid call (see _unique.py)
    keys = [client.do(fn["echo_unique"], "x")["unique"] for _ in range(3)]
    task = client.add_task(fn["echo_unique"], "y")
    client.run_tasks()
    keys.append(task.result()["unique"])
    assert task.unique() == keys[-1]
    assert all(UUID_SHAPE.match(key) for key in keys), keys
    assert len(set(keys)) == 4


def test_background_jobs_without_unique_key_are_never_merged(client):
    name = unique_name("bgn")
    handles = {client.do_background(name, "same payload")["job_handle"] for _ in range(5)}
    assert len(handles) == 5
    with pygear.Admin(*_hostport(client)) as admin:
        uniques = admin.show_unique_jobs()
        queued = {row["function"]: row["total"] for row in admin.status()}
    assert queued[name] == 5
    assert len(set(uniques)) == len(uniques)


def test_a_forked_child_draws_its_own_unique_keys():
    from pygear._unique import new_unique
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: report two keys, never return into pytest
        try:
            os.write(write, new_unique() + b" " + new_unique())
        finally:
            os._exit(0)
    os.close(write)
    try:
        child_keys = os.read(read, 200).split()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    mine = new_unique()
    assert len(child_keys) == 2 and child_keys[0] != child_keys[1]
    # same counter, different prefix: the child never repeats the parent's keys
    assert child_keys[0][:24] != mine[:24]
    assert child_keys[1][:24] == child_keys[0][:24]


def test_later_jobs_take_the_lean_path_and_keep_every_outcome(client, fn, monkeypatch):
    """After the first job (which connects and asks for exceptions) do*
    reuse that connection whatever the outcome: results, failures and
    exceptions neither reconnect nor change."""
    import pygear._link
    client.do(fn["echo"], "warm")
    general = []
    original = pygear._link.CClient.open
    monkeypatch.setattr(pygear._link.CClient, "open",
                        lambda self, *a: general.append(a) or original(self, *a))
    assert client.do(fn["reverse"], "abc") == "cba"
    assert client.do_background(unique_name("lean"), "x")["job_handle"].startswith("H:")
    with pytest.raises(pygear.WORK_FAIL):
        client.do(fn["fail"], "x")
    with pytest.raises(pygear.WORK_EXCEPTION) as info:
        client.do(fn["boom"], "x")
    assert info.value.payload["type"] == "ValueError"
    assert client.do(fn["echo"], {"after": 1}) == {"after": 1}
    assert general == []


# --- background and status ---------------------------------------------------------

@pytest.mark.parametrize("method", ["do_background", "do_high_background",
                                    "do_low_background"])
def test_background_returns_handle(client, method):
    name = unique_name("bg")
    res = getattr(client, method)(name, "payload")
    assert res["result"] is None
    assert res["job_handle"].startswith("H:")
    status = client.job_status(res["job_handle"])
    assert status == {"is_known": True, "is_running": False,
                      "numerator": 0, "denominator": 0}
    with pygear.Admin(*_hostport(client)) as admin:
        queued = {row["function"]: row["total"] for row in admin.status()}
    assert queued[name] == 1


def _hostport(client):
    return client._settings.servers[0]


def test_job_status_of_unknown_handle(client):
    status = client.job_status("H:nowhere:1")
    assert status["is_known"] is False
    assert status["is_running"] is False


def test_unique_status(client):
    name, key = unique_name("bgu"), unique_name("uniq")
    client.do_background(name, "x", unique=key)
    status = client.unique_status(key)
    assert status["is_known"] is True
    assert set(status) == {"is_known", "is_running", "numerator", "denominator"}
    assert client.unique_status(unique_name("nope"))["is_known"] is False


def test_background_job_completes_on_worker(client, fn):
    res = client.do_background(fn["sleepy"], "0.01")
    deadline = time.monotonic() + 10
    while client.job_status(res["job_handle"])["is_known"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_echo(client):
    client.echo(b"ping \0 pong")
    client.echo("text")


# --- tasks ---------------------------------------------------------------------------

def test_seed_async_example_fires_complete_for_foreground_only(client, fn):
    results = []
    client.set_complete_fn(lambda task: results.append(task.result()))
    client.add_task(fn["reverse"], "Hello pygear task 1!")
    client.add_task(fn["reverse"], "Hello pygear task 2!")
    client.add_task_background(fn["reverse"], "Hello pygear task 3!")
    client.run_tasks()
    assert sorted(results) == sorted(["!1 ksat raegyp olleH", "!2 ksat raegyp olleH"])


@pytest.mark.parametrize("method", ["add_task", "add_task_high", "add_task_low"])
def test_task_priorities_and_accessors(client, fn, method):
    task = getattr(client, method)(fn["reverse"], "abc", unique=unique_name("u"))
    assert task.returncode() == "UNKNOWN_STATE"
    client.run_tasks()
    assert task.result() == "cba"
    assert task.data() == b'"cba"'
    assert task.data_size() == 5
    assert task.returncode() == "SUCCESS"
    assert task.job_handle().startswith("H:")
    assert task.unique().startswith("u_")
    assert task.function_name() == fn["reverse"]
    assert task.is_known() is False and task.is_running() is False
    assert isinstance(task.strstate(), str)


@pytest.mark.parametrize("method", ["add_task_background", "add_task_high_background",
                                    "add_task_low_background"])
def test_background_tasks_get_handles(client, method):
    created = []
    client.set_created_fn(lambda task: created.append(task.job_handle()))
    task = getattr(client, method)(unique_name("bgt"), "x")
    client.run_tasks()
    assert task.job_handle().startswith("H:")
    assert created == [task.job_handle()]
    assert task.result() is None


def test_every_callback_kind_fires(client, fn):
    events = []
    for kind in ("created", "data", "warning", "status", "complete"):
        getattr(client, "set_%s_fn" % kind)(
            lambda task, kind=kind: events.append((kind, task.result(), task.numerator(),
                                                   task.denominator())))
    task = client.add_task(fn["chatty"], None)
    client.run_tasks()
    kinds = [e[0] for e in events]
    assert kinds == ["created", "status", "data", "warning", "status", "complete"]
    assert events[2][1] == {"chunk": 1}
    assert events[3][1] == "careful"
    assert events[1][2:] == (1, 3)
    assert events[-1][1] == "finished"
    assert task.result() == "finished"


def test_exception_and_fail_callbacks(client, fn):
    seen = {}
    client.set_exception_fn(lambda task: seen.setdefault("exception", task.result()))
    client.set_fail_fn(lambda task: seen.setdefault("fail", task.returncode()))
    t_exc = client.add_task(fn["boom"], "x")
    t_fail = client.add_task(fn["fail"], "x")
    client.run_tasks()
    assert seen["exception"]["type"] == "ValueError"
    assert seen["fail"] == "WORK_FAIL"
    assert t_exc.result()["args"] == ["I can't spell backwards!", 42]
    assert t_exc.returncode() == "WORK_EXCEPTION"
    assert t_fail.returncode() == "WORK_FAIL"


def test_workload_fn_setter_accepts_callable(client):
    client.set_workload_fn(lambda task: None)
    with pytest.raises(TypeError):
        client.set_workload_fn(42)


def test_callback_exception_is_reraised_unchanged(client, fn):
    class Marker(Exception):
        pass
    boom = Marker("from callback")

    def complete(task):
        raise boom
    client.set_complete_fn(complete)
    client.add_task(fn["echo"], 1)
    with pytest.raises(Marker) as info:
        client.run_tasks()
    assert info.value is boom
    client.clear_fn()
    client.run_tasks()      # the kept event finishes quietly now
    assert client.do(fn["echo"], 2) == 2


def test_complete_callback_set_after_add_task_still_fires(client, fn):
    task = client.add_task(fn["echo"], 9)
    seen = []
    client.set_complete_fn(lambda t: seen.append(t.result()))
    client.run_tasks()
    assert seen == [9] and task.result() == 9


def test_clear_fn_stops_callbacks(client, fn):
    calls = []
    client.set_complete_fn(lambda task: calls.append(1))
    client.clear_fn()
    task = client.add_task(fn["echo"], 5)
    client.run_tasks()
    assert calls == []
    assert task.result() == 5


def test_client_cannot_be_used_inside_its_callback(client, fn):
    def complete(task):
        client.do(fn["echo"], 1)
    client.set_complete_fn(complete)
    client.add_task(fn["echo"], 1)
    with pytest.raises(pygear.ERROR):
        client.run_tasks()


def test_add_task_status(client):
    handle = client.do_background(unique_name("st"), "x")["job_handle"]
    statuses = []
    client.set_status_fn(lambda t: statuses.append(t.is_known()))   # before adding, as in libgearman
    task = client.add_task_status(handle)
    client.run_tasks()
    assert task.is_known() is True
    assert statuses == [True]


def test_many_tasks_in_one_run(client, fn):
    client.set_serializer(pygear.RAW)
    tasks = [client.add_task(fn["raw_echo"], b"%d" % i) for i in range(500)]
    client.run_tasks()
    assert [t.result() for t in tasks] == [b"%d" % i for i in range(500)]


def test_task_answers_after_client_closed(gearmand, fn):
    c = pygear.Client()
    c.add_server(gearmand.host, gearmand.port)
    task = c.add_task(fn["reverse"], "abc")
    pending = c.add_task(fn["sleepy"], "0")
    c.run_tasks()
    c.close()
    assert task.result() == "cba"
    assert task.returncode() == "SUCCESS"
    assert task.job_handle().startswith("H:")
    assert pending.result() == "slept"
    never_run = None
    c2 = pygear.Client()
    c2.add_server(gearmand.host, gearmand.port)
    never_run = c2.add_task(fn["echo"], 1)
    c2.close()
    assert never_run.result() is None
    assert never_run.returncode() in ("UNKNOWN_STATE", "SUCCESS")


def test_tasks_with_the_same_unique_key_in_one_batch_all_end(client, fn):
    """libgearman ends only one of two same-key foreground tasks in one C
    client (_workarounds.SAME_UNIQUE_IN_ONE_CLIENT); pygear sends the second
    once the first ended, so every task gets its own answer."""
    client.set_timeout(10000)
    tasks = [client.add_task(fn["echo"], "same-%d" % i, unique="one key") for i in range(3)]
    tasks.append(client.add_task(fn["echo"], "other", unique="another key"))
    client.run_tasks()
    assert [t.result() for t in tasks] == ["same-0", "same-1", "same-2", "other"]


def test_run_tasks_timeout(client, fn):
    client.set_timeout(200)
    client.add_task(fn["sleepy"], "2")
    with pytest.raises(pygear.TIMEOUT):
        client.run_tasks()


# --- settings and misc ----------------------------------------------------------

def test_options_round_trip(client):
    assert client.get_options() == {"non_blocking": False, "unbuffered_result": False,
                                    "free_tasks": False, "generate_unique": False}
    client.set_options(generate_unique=True, free_tasks=True)
    assert client.get_options()["generate_unique"] is True
    assert client.get_options()["free_tasks"] is True
    with pytest.raises(TypeError):
        client.set_options(free_tasks="yes")


def test_free_tasks_option_keeps_results(client, fn):
    client.set_options(free_tasks=True)
    task = client.add_task(fn["reverse"], "xyz")
    client.run_tasks()
    assert task.result() == "zyx"
    assert task.returncode() == "SUCCESS"


def test_generate_unique_option(client, fn):
    client.set_options(generate_unique=True)
    info = client.do(fn["echo_unique"], "x")
    assert info["unique"]


def test_non_blocking_run_tasks_returns_at_once(client, fn):
    client.set_options(non_blocking=True)
    task = client.add_task(fn["sleepy"], "0.2")
    start = time.monotonic()
    client.run_tasks()
    assert time.monotonic() - start < 0.15
    deadline = time.monotonic() + 10
    while task.returncode() != "SUCCESS":
        assert time.monotonic() < deadline
        client.wait()
        client.run_tasks()
    assert task.result() == "slept"


def test_identifier_shows_in_workers_list(client, gearmand):
    ident = unique_name("client")
    client.set_identifier(ident)
    client.echo("hello")
    # A threaded gearmand (the container's runs 4 I/O threads) may answer the
    # echo a moment before its workers list shows the id (2 in 200, < 15 ms).
    deadline = time.monotonic() + 5
    with pygear.Admin(gearmand.host, gearmand.port) as admin:
        while True:
            ids = [w["client_id"] for w in admin.workers()]
            if ident in ids or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    assert ident in ids
    with pytest.raises(ValueError):
        client.set_identifier("has space")


def test_log_fn_receives_lines(gearmand):
    lines = []
    c = pygear.Client()
    c.set_log_fn(lines.append, "DEBUG")
    c.add_server("127.0.0.1", 1)   # refused at once
    c.set_timeout(500)
    with pytest.raises(pygear.GearmanError):
        c.do("x", "y")
    c.close()
    assert lines and all(isinstance(line, str) for line in lines)


def test_error_errno_and_error_code(client):
    client.set_timeout(300)
    with pytest.raises(pygear.GearmanError):
        client.do(unique_name("none"), "x")
    assert isinstance(client.error(), str) and client.error()
    assert isinstance(client.errno(), int)
    assert isinstance(client.error_code(), int)


def test_add_servers_string_and_list(gearmand, fn):
    for servers in ("%s:%d" % (gearmand.host, gearmand.port),
                    ["%s:%d" % (gearmand.host, gearmand.port)]):
        with pygear.Client() as c:
            c.add_servers(servers)
            assert c.do(fn["echo"], 3) == 3


def test_remove_servers_then_no_servers(client, fn):
    client.remove_servers()
    with pytest.raises(pygear.GearmanError) as info:
        client.do(fn["echo"], 1)
    assert info.value.name in ("NO_SERVERS", "NO_ACTIVE_FDS")


def test_failover_to_second_server(gearmand, fn):
    from pygear._server import free_port
    dead = free_port()
    with pygear.Client() as c:
        c.add_servers("127.0.0.1:%d,%s:%d" % (dead, gearmand.host, gearmand.port))
        c.set_timeout(5000)
        assert c.do(fn["echo"], 1) == 1
        assert c.do_background(unique_name("fo"), 1)["job_handle"].startswith("H:")
        task = c.add_task(fn["echo"], 2)
        c.run_tasks()
        assert task.result() == 2


def test_clone_copies_servers_and_settings(client, fn):
    client.set_timeout(1234)
    client.set_serializer(pygear.RAW)
    other = client.clone()
    try:
        assert other.timeout() == 1234
        assert other.do(fn["raw_echo"], b"c") == b"c"
    finally:
        other.close()


def test_context_manager_and_close(gearmand, fn):
    with pygear.Client() as c:
        c.add_server(gearmand.host, gearmand.port)
        assert c.do(fn["echo"], 1) == 1
    assert c.closed
    c.close()   # a second close does nothing
    with pytest.raises(pygear.ERROR):
        c.do(fn["echo"], 1)


def test_bad_arguments_raise_before_c(client):
    with pytest.raises(ValueError):
        client.do("bad\0name", "x")
    with pytest.raises(TypeError):
        client.do(None, "x")
    with pytest.raises(ValueError):
        client.do("x" * 100000, "x")
    with pytest.raises(ValueError):
        client.do("f", "x", unique="u" * 200)
    with pytest.raises(TypeError):
        client.add_server(42)
    with pytest.raises(ValueError):
        client.add_server("localhost", 70000)
    with pytest.raises(TypeError):
        client.set_timeout("soon")


def test_blocking_do_releases_the_gil(client, fn):
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.01)
    t = threading.Thread(target=ticker)
    t.start()
    try:
        assert client.do(fn["sleepy"], "0.5") == "slept"
    finally:
        stop.set()
        t.join()
    assert len(ticks) >= 20


def test_interop_with_c_gearman_worker(gearmand):
    import shutil
    import subprocess
    if shutil.which("gearman") is None:
        pytest.skip("gearman-tools not installed (apt-get install gearman-tools)")
    name = unique_name("crev")
    proc = subprocess.Popen(["gearman", "-h", gearmand.host, "-p", str(gearmand.port),
                             "-w", "-f", name, "--", "rev"])
    try:
        with pygear.Client() as c:
            c.add_server(gearmand.host, gearmand.port)
            c.set_serializer(pygear.RAW)
            c.set_timeout(10000)
            assert c.do(name, b"hello\n") == b"olleh\n"
    finally:
        proc.kill()
        proc.wait(5)


def test_gearman_servers_environment_is_honoured_with_failover(gearmand):
    import os
    import subprocess
    import sys
    from pygear._server import free_port
    env = dict(os.environ, GEARMAN_SERVERS="127.0.0.1:%d,%s:%d"
               % (free_port(), gearmand.host, gearmand.port))
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import pygear\n"
            "c = pygear.Client()\n"
            "c.set_timeout(5000)\n"
            "print(c.do_background(%r, 'x')['job_handle'])\n" % unique_name("envfn"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("H:")


# --- batches beyond the C task window (pygear/_taskbook.py) ----------------------

@pytest.fixture
def small_window(monkeypatch):
    monkeypatch.setattr(pygear._taskbook, "WINDOW", 4)


def test_batch_beyond_the_task_window_runs_every_task_once(client, fn, small_window):
    completed, failed = [], []
    client.set_complete_fn(lambda t: completed.append(t.result()))
    client.set_fail_fn(lambda t: failed.append(t.function_name()))
    tasks = [client.add_task(fn["echo"], i) for i in range(30)]
    doomed = [client.add_task(fn["fail"], "x") for _ in range(3)]
    background = [client.add_task_background(unique_name("bgw"), i) for i in range(5)]
    # only a window's worth exists in libgearman before run_tasks
    assert sum(1 for t in tasks + doomed + background if t.strstate() != "new") <= 4
    client.run_tasks()
    assert sorted(completed) == list(range(30))
    assert failed == [fn["fail"]] * 3
    # finished tasks whose C side was freed still answer from what they saw
    assert [t.result() for t in tasks] == list(range(30))
    assert {t.returncode() for t in tasks} == {"SUCCESS"}
    assert {t.returncode() for t in doomed} == {"WORK_FAIL"}
    handles = [t.job_handle() for t in tasks + doomed + background]
    assert all(h and h.startswith("H:") for h in handles)
    assert len(set(handles)) == len(handles)
    assert client.do(fn["echo"], "after") == "after"


def test_batch_beyond_the_window_in_non_blocking_mode(client, fn, small_window):
    client.set_options(non_blocking=True)
    tasks = [client.add_task(fn["reverse"], "ab%d" % i) for i in range(12)]
    deadline = time.monotonic() + 20
    while any(t.returncode() != "SUCCESS" for t in tasks):
        assert time.monotonic() < deadline
        client.wait()
        client.run_tasks()
    assert [t.result() for t in tasks] == [("ab%d" % i)[::-1] for i in range(12)]

"""pygear.Admin against a real gearmand, checked against what gearadmin says."""
import shutil
import socket
import subprocess
import threading
import time

import pytest

import pygear
import pygear.testing
from pygear._server import GearmandProcess, find_gearmand
from pygear.admin import Admin
from pygear.errors import (COULD_NOT_CONNECT, ERROR, GETADDRINFO, LOST_CONNECTION, TIMEOUT,
                           GearmanError)

pytestmark = pytest.mark.timeout(60)

needs_tools = pytest.mark.skipif(
    not (shutil.which("gearman") and shutil.which("gearadmin")),
    reason="gearman-tools (gearman, gearadmin) not installed")


def unique_name(prefix="adm"):
    # The plugin's, so a shared server (GEARMAN_SERVER) is cleaned after the run.
    return pygear.testing.unique_name(prefix)


def tool(server, *args, check=True):
    """Run gearman or gearadmin against ``server``; (stdout, stderr)."""
    cmd = [args[0], "-h", server.host, "-p", str(server.port), *args[1:]]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    if check:
        assert done.returncode == 0, (cmd, done.stderr)
    return done.stdout, done.stderr


def wait_until(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


@pytest.fixture
def admin(gearmand):
    with Admin(gearmand.host, gearmand.port, timeout=10) as a:
        yield a


@pytest.fixture
def start_worker(gearmand, admin):
    """``start_worker(*functions)`` runs a ``gearman -w`` worker for them."""
    procs = []

    def start(*functions):
        args = ["gearman", "-h", gearmand.host, "-p", str(gearmand.port), "-w"]
        for name in functions:
            args += ["-f", name]
        procs.append(subprocess.Popen(args + ["--", "cat"], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        wait_until(lambda: any(set(functions) <= set(w["functions"])
                               for w in admin.workers()), what="worker to register")

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def private_gearmand():
    """A gearmand of this test's own, for shutdown and restarts."""
    if find_gearmand() is None:
        pytest.skip("no gearmand binary")
    server = GearmandProcess().start()
    yield server
    server.stop()


def submit_background(server, function, data="x", unique=None):
    extra = ["-u", unique] if unique else []
    return tool(server, "gearman", "-b", *extra, "-f", function, data)


def parse_gearadmin_status(text):
    rows = []
    for line in text.splitlines():
        if line == ".":
            break
        name, total, running, workers = line.rsplit("\t", 3)
        rows.append({"function": name, "total": int(total), "running": int(running),
                     "available_workers": int(workers)})
    return rows


def by_function(rows):
    return {row["function"]: row for row in rows}


# -- the listings --------------------------------------------------------

@needs_tools
def test_status_counts_queued_jobs_and_workers(gearmand, admin, start_worker):
    queued, served = unique_name("queued"), unique_name("served")
    start_worker(served)
    for data in ("a", "b"):
        submit_background(gearmand, queued, data)
    rows = by_function(admin.status())
    assert rows[queued] == {"function": queued, "total": 2, "running": 0,
                            "available_workers": 0}
    assert rows[served]["available_workers"] == 1
    assert all(isinstance(v, int) for row in rows.values() for k, v in row.items()
               if k != "function")


@needs_tools
def test_status_agrees_with_gearadmin(gearmand, admin, start_worker):
    start_worker(unique_name("w1"), unique_name("w2"))
    submit_background(gearmand, unique_name("bg"))
    def snapshots_agree():
        # Retried: on a shared server, other tests' jobs may still be settling.
        ours = sorted(admin.status(), key=lambda r: r["function"])
        theirs = parse_gearadmin_status(tool(gearmand, "gearadmin", "--status")[0])
        return ours and ours == sorted(theirs, key=lambda r: r["function"])
    wait_until(snapshots_agree, timeout=5, what="status to agree with gearadmin")


@needs_tools
def test_workers_lists_every_function_of_every_worker(gearmand, admin, start_worker):
    one, two, three = (unique_name() for _ in range(3))
    start_worker(one)
    start_worker(two, three)
    rows = admin.workers()
    function_sets = [set(row["functions"]) for row in rows]
    assert {one} in function_sets
    assert {two, three} in function_sets
    for row in rows:
        assert row["fd"].isdigit() and row["ip_address"] and row["client_id"]
    # The admin connection itself is listed, with no functions.
    assert any(row["functions"] == [] for row in rows)
    theirs = tool(gearmand, "gearadmin", "--workers")[0]
    for row in rows:
        if row["functions"]:
            line = "%s %s %s : %s" % (row["fd"], row["ip_address"], row["client_id"],
                                      " ".join(row["functions"]))
            assert line in theirs.splitlines()


@needs_tools
def test_show_jobs_and_unique_jobs_match_gearadmin(gearmand, admin):
    function, key = unique_name("jobs"), unique_name("key")
    before = {job["handle"] for job in admin.show_jobs()}
    submit_background(gearmand, function, "one", unique=key)
    submit_background(gearmand, function, "two")
    new = [job for job in admin.show_jobs() if job["handle"] not in before]
    assert len(new) == 2
    for job in new:
        assert job["handle"].startswith("H:")
        assert (job["retries"], job["ignore_job"], job["job_queued"]) == (0, 0, 1)
    assert key in admin.show_unique_jobs()
    jobs_lines = tool(gearmand, "gearadmin", "--show-jobs")[0].splitlines()
    for job in new:
        assert "%s\t0\t0\t1" % job["handle"] in jobs_lines
    unique_lines = tool(gearmand, "gearadmin", "--show-unique-jobs")[0].splitlines()
    assert sorted(admin.show_unique_jobs()) == sorted(unique_lines[:-1])


@needs_tools
def test_cancel_job_marks_the_job_ignored(gearmand, admin):
    function = unique_name("cancel")
    before = {job["handle"] for job in admin.show_jobs()}
    submit_background(gearmand, function)
    (handle,) = [job["handle"] for job in admin.show_jobs() if job["handle"] not in before]
    assert admin.cancel_job(handle) is True
    (job,) = [job for job in admin.show_jobs() if job["handle"] == handle]
    assert (job["ignore_job"], job["job_queued"]) == (1, 0)


def test_cancel_unknown_job_raises_error(admin):
    with pytest.raises(pygear.ERROR) as info:
        admin.cancel_job("H:nowhere:%d" % time.time_ns())
    assert info.value.server_code == "UNKNOWN_JOB"
    assert isinstance(info.value, pygear.GearmanError)
    assert admin.version()  # still in step after the ERR


# -- single values -------------------------------------------------------

@needs_tools
def test_version_getpid_verbose_match_gearadmin(gearmand, admin):
    assert admin.version() == tool(gearmand, "gearadmin", "--server-version")[0].strip()
    pid = admin.getpid()
    assert isinstance(pid, int) and pid > 0
    assert pid == int(tool(gearmand, "gearadmin", "--getpid")[0])
    assert admin.verbose() == tool(gearmand, "gearadmin", "--server-verbose")[0].strip()


def test_getpid_is_the_server_process(private_gearmand):
    with Admin(private_gearmand.host, private_gearmand.port, timeout=5) as a:
        assert a.getpid() == private_gearmand.proc.pid
        assert a.version().startswith("1.")
        assert a.verbose() in {"FATAL", "ALERT", "CRITICAL", "ERROR", "WARNING",
                               "NOTICE", "INFO", "DEBUG"}


# -- functions and queues ------------------------------------------------

def test_create_and_drop_function(admin):
    # CRLF matters here: over LF, gearmand 1.1.20 would create "new_..." minus a byte.
    name = unique_name("newf")
    assert admin.create_function(name) is True
    assert by_function(admin.status())[name] == {
        "function": name, "total": 0, "running": 0, "available_workers": 0}
    assert admin.drop_function(name) is True
    assert name not in by_function(admin.status())
    with pytest.raises(ERROR) as info:
        admin.drop_function(name)
    assert "not found" in info.value.text


@needs_tools
def test_drop_function_with_a_worker_is_refused(admin, start_worker):
    name = unique_name("busy")
    start_worker(name)
    with pytest.raises(ERROR, match="workers"):
        admin.drop_function(name)
    assert name in by_function(admin.status())


@needs_tools
def test_maxqueue_caps_background_jobs(gearmand, admin):
    name = unique_name("capped")
    admin.create_function(name)
    assert admin.maxqueue(name, 2) is True
    outcomes = [submit_background(gearmand, name, str(i)) for i in range(4)]
    # gearman -b exits 0 even when refused, but prints libgearman's error.
    assert ["QUEUE_ERROR" in err for _, err in outcomes] == [False, False, True, True]
    assert by_function(admin.status())[name]["total"] == 2


# -- shutdown (never on the shared server) -------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("graceful", [False, True])
def test_shutdown_refused_or_honoured_never_hangs(private_gearmand, graceful):
    with Admin(private_gearmand.host, private_gearmand.port, timeout=5) as a:
        start = time.monotonic()
        try:
            a.shutdown(graceful=graceful)
        except pygear.ERROR as exc:  # Debian's gearmand 1.1.20
            assert exc.server_code == "UNKNOWN_COMMAND"
            assert a.getpid() == private_gearmand.proc.pid
        else:  # a build that honours it goes away
            private_gearmand.proc.wait(timeout=10)
        assert time.monotonic() - start < 5


# -- connection behaviour ------------------------------------------------

def test_closed_port_raises_connection_error_quickly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave the block
    a = Admin("127.0.0.1", port, timeout=5)
    start = time.monotonic()
    with pytest.raises(ConnectionError) as info:
        a.status()
    assert isinstance(info.value, COULD_NOT_CONNECT)
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("call", [lambda a: a.status(), lambda a: a.version(),
                                  lambda a: a.create_function("f")],
                         ids=["listing", "value", "ok"])
def test_silent_peer_times_out_within_the_timeout(call):
    with socket.socket() as listener:  # accepts (kernel backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        a = Admin("127.0.0.1", listener.getsockname()[1], timeout=0.5)
        start = time.monotonic()
        with pytest.raises(TIMEOUT) as info:
            call(a)
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, GearmanError)
        assert 0.4 < time.monotonic() - start < 1.5


def test_dropped_connection_raises_then_reconnects(private_gearmand):
    a = Admin(private_gearmand.host, private_gearmand.port, timeout=5)
    first_pid = a.getpid()
    private_gearmand.restart()
    with pytest.raises(ConnectionError) as info:
        a.status()
    assert isinstance(info.value, LOST_CONNECTION)
    assert a.getpid() == private_gearmand.proc.pid != first_pid
    a.close()


def test_reply_cut_off_mid_listing_raises_and_next_call_reconnects():
    """A peer that sends half a status table and hangs up, then answers in full."""
    replies = [b"fn\t1\t0\t0\nfn2\t", b"fn\t1\t0\t0\n.\n"]

    def serve(listener):
        for reply in replies:
            conn, _ = listener.accept()
            with conn:
                conn.recv(100)
                conn.sendall(reply)
                if reply.endswith(b".\n"):
                    conn.recv(100)  # until the client closes

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(2)
        thread = threading.Thread(target=serve, args=(listener,), daemon=True)
        thread.start()
        with Admin("127.0.0.1", listener.getsockname()[1], timeout=5) as a:
            with pytest.raises(LOST_CONNECTION):
                a.status()
            assert a.status() == [{"function": "fn", "total": 1, "running": 0,
                                   "available_workers": 0}]
        thread.join(5)


def ipv6_loopback_port():
    if not socket.has_ipv6:
        pytest.skip("Python built without IPv6")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            return s.getsockname()[1]
    except OSError as exc:
        pytest.skip("::1 is not available: %s" % exc)


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_ipv6(host):
    if find_gearmand() is None:
        pytest.skip("no gearmand binary")
    server = GearmandProcess(host="::1", port=ipv6_loopback_port()).start()
    try:
        with Admin(host, server.port, timeout=5) as a:
            assert a.getpid() == server.proc.pid
            # gearmand 1.1.20 garbles IPv6 peer addresses ("::3533:3038:...%..."),
            # so only check that our connection is listed.
            assert [w["functions"] for w in a.workers()] == [[]]
            assert a.show_jobs() == []
    finally:
        server.stop()


def test_injection_is_refused_and_connection_stays_usable(admin):
    before = admin.status()
    for bad in ("x\r\nshutdown", "x\nversion", "x y", "x\tmaxqueue"):
        for call in (admin.create_function, admin.drop_function, admin.cancel_job):
            with pytest.raises(ValueError):
                call(bad)
        with pytest.raises(ValueError):
            admin.maxqueue(bad, 1)
    assert admin.status() == before
    assert admin.version().startswith("1.")


def test_one_connection_is_kept_across_calls(gearmand):
    with Admin(gearmand.host, gearmand.port, timeout=5) as a, \
            Admin(gearmand.host, gearmand.port, timeout=5) as watcher:
        a.version()
        count = len(watcher.workers())
        for _ in range(20):
            a.status()
            a.getpid()
        assert len(watcher.workers()) <= count  # others may leave, we must not add


def test_context_manager_closes_the_connection(gearmand, admin):
    with Admin(gearmand.host, gearmand.port, timeout=5) as a:
        a.version()
        count = len(admin.workers())
    assert "idle" in repr(a)
    wait_until(lambda: len(admin.workers()) <= count - 1, what="connection to close")


# -- the constructor, as PHP and python-gearman users write it ---------------

def test_one_host_port_string_names_the_server(gearmand):
    for address in (gearmand.address, [gearmand.address], (gearmand.address,)):
        with Admin(address, timeout=5) as a:
            assert (a.host, a.port) == (gearmand.host, gearmand.port)
            assert a.version().startswith("1.")
    with Admin(gearmand.address, gearmand.port, 5) as a:   # the same port twice is fine
        assert a.getpid() > 0
    with Admin(gearmand.host, gearmand.port, 5) as a:      # host, port, timeout as before
        assert a.getpid() > 0


def test_one_bracketed_ipv6_string():
    if find_gearmand() is None:
        pytest.skip("no gearmand binary")
    server = GearmandProcess(host="::1", port=ipv6_loopback_port()).start()
    try:
        with Admin("[::1]:%d" % server.port, timeout=5) as a:
            assert (a.host, a.port) == ("::1", server.port)
            assert a.getpid() == server.proc.pid
            assert "[::1]:%d" % server.port in repr(a)
    finally:
        server.stop()


@pytest.mark.parametrize("args, error, words", [
    (("localhost:abc",), ValueError, "the port 'abc' is not a number"),
    (("localhost:70000",), ValueError, "port 70000 is out of range"),
    (("[::1]:0",), ValueError, "port 0 is out of range"),
    ((":4730",), ValueError, "no host before the port"),
    (("h1:4730,h2:4730",), ValueError, "names several servers"),
    ((["h1:4730", "h2:4730"],), ValueError, "one Admin per server"),
    (("localhost:4731", 4732), ValueError, "two ports given"),
    (("localhost", "4730"), TypeError, "or give 'host:port'"),
    (("",), TypeError, "'localhost:4730'"),
])
def test_a_bad_address_says_what_is_wrong(args, error, words):
    with pytest.raises(error) as info:
        Admin(*args)
    assert words in str(info.value)
    assert "invalid literal" not in str(info.value)


def test_unreachable_server_says_why_in_words():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(COULD_NOT_CONNECT) as info:
        Admin("127.0.0.1:%d" % port, timeout=5).status()
    assert str(info.value) == ("cannot connect to gearmand at 127.0.0.1:%d: connection "
                               "refused (is gearmand running there, on that port?)" % port)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    with pytest.raises(GETADDRINFO) as info:
        Admin("no-such-host.invalid", timeout=5).status()
    assert "unknown host 'no-such-host.invalid'" in str(info.value)

"""What a new user trips over on the command line (issue 14): bad addresses,
unreachable servers, a JSON worker sent raw bytes, silence, exit codes.
The real console script, in subprocesses, against real gearmands."""
from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import threading

import pytest

import pygear
from pygear._server import GearmandProcess, find_gearmand, free_port
from pygear.testing import unique_name

from . import cli_jobs
from .clikit import (CLI, ROOT, background, pygear_cli, read_pty, wait_until, watch_rounds,
                     workers_for)

pytestmark = pytest.mark.timeout(90)

COMMANDS = {"submit": ["submit", "fn", "x"], "admin": ["admin", "status"],
            "work": ["work", "fn", "--call", "tests.cli_jobs:upper"]}


class Lines:
    """A process's stderr, read line by line in a thread, to wait on."""

    def __init__(self, stream) -> None:
        self.lines = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in iter(stream.readline, b""):
            self.lines.append(line.decode("utf-8", "replace"))

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        wait_until(lambda: any(text in line for line in self.lines), timeout,
                   what="%r in %r" % (text, self.lines))
        return next(line for line in self.lines if text in line)


def start_cli(env, *args):
    return subprocess.Popen(CLI + list(args), env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop(proc, sig=signal.SIGINT) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# --- errors in pygear's words, the same in submit, admin and work ---------------------

@pytest.mark.parametrize("server, words", [
    ("localhost:abc", "bad --server: 'localhost:abc' is not a server address: "
                      "the port 'abc' is not a number (write host:port, e.g. localhost:4730)"),
    ("localhost:70000", "port 70000 is out of range 1-65535"),
    ("h1:4730,,h2", "bad --server 'h1:4730,,h2': '' is not a server address: it is empty"),
])
def test_a_bad_server_address_is_a_usage_error_in_words(env, server, words):
    said = set()
    for args in COMMANDS.values():
        out = pygear_cli(env, "--server", server, *args)
        assert out.returncode == 2
        assert words in out.stderr.decode()
        assert b"invalid literal" not in out.stderr
        said.add(out.stderr)
    assert len(said) == 1   # word for word the same


def test_a_bad_address_in_the_environment_names_it(env):
    out = pygear_cli(dict(env, GEARMAN_SERVERS="localhost:abc"), "submit", "fn", "x")
    assert out.returncode == 2
    assert b"bad $GEARMAN_SERVERS: 'localhost:abc' is not a server address" in out.stderr


def test_an_unknown_host_is_said_the_same_way_everywhere(env):
    said = set()
    for args in COMMANDS.values():
        out = pygear_cli(env, "--server", "no-such-host.invalid:4730", *args)
        assert out.returncode == 6
        assert out.stderr.startswith(b"pygear: could not connect to no-such-host.invalid:4730: "
                                     b"unknown host 'no-such-host.invalid' (")
        said.add(out.stderr)
    assert len(said) == 1


def test_a_closed_port_is_said_the_same_way_everywhere(env):
    port = free_port()
    words = ("could not connect to 127.0.0.1:%d: connection refused (is gearmand "
             "running there, on that port?)" % port)
    for name in ("submit", "admin"):
        out = pygear_cli(env, "--server", "127.0.0.1:%d" % port, *COMMANDS[name])
        assert (out.returncode, out.stderr.decode()) == (6, "pygear: %s\n" % words)
    proc = start_cli(env, "--server", "127.0.0.1:%d" % port, *COMMANDS["work"])
    err = Lines(proc.stderr)
    try:
        line = err.wait_for("could not connect")
        assert words + "; will keep trying" in line      # said without -v, at once
        assert proc.poll() is None                       # and it keeps trying
    finally:
        assert stop(proc) == 130


def test_the_default_server_is_named_when_nothing_was_given(env):
    env = dict(env)
    del env["GEARMAN_SERVERS"]
    out = pygear_cli(env, "admin", "status")
    if out.returncode == 0:
        pytest.skip("a gearmand listens on localhost:4730")
    assert out.returncode == 6
    assert b"without --server or $GEARMAN_SERVERS, localhost:4730 is tried" in out.stderr


# --- -v ------------------------------------------------------------------------------------

def test_verbose_is_global_and_after_the_subcommand(env, upper):
    quiet = pygear_cli(env, "submit", upper, "abc")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, b"ABC", b"")
    for args in (["-v", "submit", upper, "abc"], ["submit", "-v", upper, "abc"]):
        out = pygear_cli(env, *args)
        assert (out.returncode, out.stdout) == (0, b"ABC")   # stdout stays the result
        assert out.stderr.startswith(b"pygear: submitting 3 bytes to %s on " % upper.encode())
    out = pygear_cli(env, "admin", "-v", "version")
    assert out.returncode == 0 and b"pygear: asking " in out.stderr


def test_work_verbose_logs_every_job(env, gearmand):
    name = unique_name("vjobs")
    for flags in (["work", "-v"], ["-v", "work"]):
        with background(env, gearmand, name, flags + [name, "--call",
                                                        "tests.cli_jobs:upper"]) as proc:
            assert pygear_cli(env, "submit", name, "hi").stdout == b"HI"
            err = Lines(proc.stderr)
            assert stop(proc, signal.SIGTERM) == 0
            err.thread.join(5)
            assert any("job H:" in line and "%s, 2 bytes" % name in line
                       for line in err.lines), err.lines


def test_work_says_when_an_unreachable_server_comes_back(env):
    if find_gearmand() is None:
        pytest.skip("no gearmand binary")
    port = free_port()
    name = unique_name("back")
    proc = start_cli(env, "work", "-v", "--server", "127.0.0.1:%d" % port, name,
                     "--call", "tests.cli_jobs:upper")
    err = Lines(proc.stderr)
    server = None
    try:
        err.wait_for("connection refused")
        server = GearmandProcess(port=port).start()
        err.wait_for("127.0.0.1:%d is reachable now" % port)
        wait_until(lambda: workers_for(server, name)["available_workers"] == 1,
                   what="the worker to register once the server is up")
        out = pygear_cli(env, "--server", server.address, "submit", name, "back")
        assert (out.returncode, out.stdout) == (0, b"BACK")
    finally:
        assert stop(proc) == 130
        if server is not None:
            server.stop()


# --- a JSON worker sent raw bytes -----------------------------------------------------------

@pytest.fixture
def json_worker(gearman_worker_process):
    """cli_jobs.add served with the JSON serializer, as the examples are."""
    name = unique_name("jsonw")
    gearman_worker_process.start({name: cli_jobs.add}, serializer="json")
    return name


def test_raw_bytes_to_a_json_worker_say_use_json(env, json_worker):
    out = pygear_cli(env, "submit", json_worker, "hello")
    assert out.returncode == 4
    err = out.stderr.decode()
    assert err == ("pygear: %s: the worker reads its workload as JSON, and raw bytes were "
                   "sent; send JSON with --json (e.g. pygear submit --json %s '\"hello\"'), "
                   "or have the worker take raw bytes (worker.set_serializer(pygear.RAW))\n"
                   % (json_worker, json_worker))
    assert "Traceback" not in err
    # and the fix it names works
    out = pygear_cli(env, "submit", "--json", json_worker, '{"a": 1, "b": 2}')
    assert (out.returncode, out.stdout) == (0, b'{"sum": 3}\n')


def test_raw_lines_to_a_json_worker_say_use_json(env, json_worker):
    out = pygear_cli(env, "submit", json_worker, "--each", "-", input=b"hello\n")
    assert out.returncode == 4
    assert b"line 1 'hello': WORK_EXCEPTION: the worker reads JSON and this line is not " \
           b"JSON (use --json)" in out.stderr


def test_a_worker_complaining_about_json_it_was_given_gets_its_report(env, gearman_worker_process):
    name = unique_name("jsoncomplaint")
    gearman_worker_process.start({name: cli_jobs.json_complaint}, serializer="raw")
    out = pygear_cli(env, "submit", name, '{"x": 1}')   # valid JSON: not the mismatch
    assert out.returncode == 4
    assert b"ValueError: this JSON has no 'name' key" in out.stderr
    assert b"--json" not in out.stderr


# --- smaller ones ---------------------------------------------------------------------------

def test_jobs_without_each_is_a_usage_error(env, upper):
    out = pygear_cli(env, "submit", upper, "x", "--jobs", "4")
    assert out.returncode == 2
    assert b"--jobs N runs N jobs of --each FILE at a time" in out.stderr
    assert pygear_cli(env, "submit", upper, "--each", "-", "--jobs", "2",
                      input=b"x\n").returncode == 0


def test_a_single_result_ends_with_a_newline_on_a_terminal_only(env, upper):
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(CLI + ["submit", upper, "abc"], env=env, cwd=ROOT,
                                stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        proc.wait(timeout=30)
        seen = read_pty(master)
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert seen == b"ABC\r\n"     # the terminal's CRLF for our "\n"
    assert pygear_cli(env, "submit", upper, "abc").stdout == b"ABC"   # piped: exact bytes


def test_watch_says_what_it_cannot_reach_and_ctrl_c_exits_130(env, gearmand):
    port = free_port()
    proc = start_cli(env, "admin", "--server", gearmand.address, "--server",
                     "127.0.0.1:%d" % port, "status", "--watch", "0.2")
    try:
        seen = watch_rounds(proc, 2)
    finally:
        code = stop(proc)
    assert code == 130
    assert b"pygear: could not connect to 127.0.0.1:%d: connection refused" % port in seen
    assert b"SERVER" in seen and gearmand.address.encode() in seen   # the other still shown


# --- a job nobody waits for any more -------------------------------------------------------

def _jobs(gearmand):
    with pygear.Admin(gearmand.address, timeout=5) as admin:
        return {job["handle"]: job for job in admin.show_jobs()}


def test_a_timed_out_job_stays_queued_until_a_worker_asks_then_is_dropped(env, gearmand):
    """What the README says of abandoned foreground jobs, on gearmand 1.1.20."""
    name = unique_name("abandoned")
    before = _jobs(gearmand)
    out = pygear_cli(env, "submit", "--timeout", "0.5", name, "x")
    assert out.returncode == 5
    err = out.stderr.decode()
    assert "stays queued until a worker asks for it, and is then dropped unrun" in err
    [handle] = set(_jobs(gearmand)) - set(before)
    wait_until(lambda: _jobs(gearmand)[handle]["ignore_job"] == 1, what="the job ignored")
    assert workers_for(gearmand, name)["total"] == 1       # still counted
    if "the job H:" in err:                                # the exception carried the handle
        assert handle in err
    with background(env, gearmand, name, ["work", "-v", name, "--call",
                                          "tests.cli_jobs:upper"]) as proc:
        wait_until(lambda: workers_for(gearmand, name)["total"] == 0,
                   what="gearmand to drop the ignored job")
        err = Lines(proc.stderr)
        stop(proc, signal.SIGTERM)
        err.thread.join(5)
    assert not any("job H:" in line for line in err.lines), err.lines   # never ran
    assert handle not in _jobs(gearmand)


def test_ctrl_c_in_submit_exits_130_and_says_what_becomes_of_the_job(env, gearmand):
    name = unique_name("interrupted")
    proc = start_cli(env, "submit", name, "x")
    try:
        wait_until(lambda: workers_for(gearmand, name)["total"] == 1, what="the job queued")
    finally:
        code = stop(proc)
    assert code == 130
    assert b"stays queued until a worker asks for it" in proc.stderr.read()


# --- make demo -------------------------------------------------------------------------------

def test_the_demo_shows_what_each_example_sent_and_got(env):
    if find_gearmand() is None:
        pytest.skip("no gearmand binary: the demo starts its own")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "demo.py")], env=env,
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=120)
    text = out.stdout.decode()
    assert out.returncode == 0, text
    assert "   sent:    result = c.do('reverse', 'Hello pygear!')\n" \
           "   printed: !raegyp olleH\n" in text
    assert "   sent:    c.add_task('reverse', 'Hello pygear task 1!')\n" in text
    assert "sent:    pygear submit --json reverse '\"Hello from the CLI!\"'\n" \
           "   printed: \"!ILC eht morf olleH\"\n" in text
    assert text.rstrip().endswith("all examples ran as expected")


def test_resubmitting_with_the_unique_key_of_an_ignored_job_waits_in_vain(
        env, gearmand, gearman_client):
    """gearmand 1.1.20 joins the new job to the ignored one and drops both
    unrun; the README warns of it."""
    name = unique_name("samekey")
    before = _jobs(gearmand)
    assert pygear_cli(env, "submit", "--timeout", "0.3", "--unique", "k", name,
                      "x").returncode == 5
    # Once gearmand has seen that client go; before that a new client would
    # still keep the job wanted.
    wait_until(lambda: [j["ignore_job"] for h, j in _jobs(gearmand).items()
                        if h not in before] == [1], what="the job to be ignored")
    [ignored] = set(_jobs(gearmand)) - set(before)
    created, outcome = [], []
    gearman_client.set_timeout(3000)
    gearman_client.set_created_fn(lambda task: created.append(task.job_handle()))
    gearman_client.add_task(name, "y", unique="k")

    def run():
        try:
            gearman_client.run_tasks()
            outcome.append("completed")
        except pygear.TIMEOUT:
            outcome.append("timeout")

    thread = threading.Thread(target=run)
    thread.start()
    wait_until(lambda: created, what="gearmand to take the submission")
    assert created == [ignored]          # joined the ignored job
    with background(env, gearmand, name, ["work", name, "--call", "tests.cli_jobs:upper"]):
        thread.join(15)
    assert outcome == ["timeout"]        # never answered, though a worker was there

"""The `pygear` command line, run as a real subprocess against a real gearmand,
and side by side with the C tools `gearman` and `gearadmin`."""
from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import time

import pytest

import pygear
from pygear._server import free_port
from pygear.testing import unique_name

from . import cli_jobs
from .clikit import (CLI, ROOT, SCRIPT, background, needs_c_tools, pygear_cli, read_pty,
                     wait_until, watch_rounds, workers_for)

pytestmark = pytest.mark.timeout(90)


# --- help and entry points ------------------------------------------------------------

def test_help_documents_exit_codes(env):
    out = pygear_cli(env, "--help")
    assert out.returncode == 0
    text = out.stdout.decode()
    for line in ("3  the worker failed the job", "4  the worker raised an exception",
                 "5  timeout", "6  could not connect"):
        assert line in text
    assert "GEARMAN_SERVERS" in text


def test_python_dash_m_and_version(env):
    out = subprocess.run([sys.executable, "-m", "pygear", "--version"], env=env,
                         stdout=subprocess.PIPE, timeout=30)
    assert out.stdout.decode().strip() == "pygear %s" % pygear.__version__


@pytest.mark.skipif(not os.access(SCRIPT, os.X_OK),
                    reason="the pygear console script is not installed (pip install -e .)")
def test_console_script_is_installed(env):
    out = subprocess.run([SCRIPT, "--version"], env=env, stdout=subprocess.PIPE, timeout=30)
    assert out.returncode == 0 and b"pygear" in out.stdout


def test_usage_errors_exit_2(env):
    assert pygear_cli(env, "submit").returncode == 2
    assert pygear_cli(env, "submit", "fn", "--high", "--low", "x").returncode == 2
    assert pygear_cli(env, "frobnicate").returncode == 2
    assert pygear_cli(env, "work", "fn").returncode == 2    # neither COMMAND nor --call


# --- submit -------------------------------------------------------------------------------

def test_submit_data_argument_and_stdin(env, upper):
    out = pygear_cli(env, "submit", upper, "hello world")
    assert (out.returncode, out.stdout) == (0, b"HELLO WORLD")
    out = pygear_cli(env, "submit", upper, input=b"from stdin\n")
    assert (out.returncode, out.stdout) == (0, b"FROM STDIN\n")


def test_submit_payload_is_raw_bytes(env, upper):
    data = bytes(range(1, 256))
    out = pygear_cli(env, "submit", upper, input=data)
    assert out.returncode == 0
    assert out.stdout == data.upper()


def test_submit_server_option_beats_environment(env, gearmand, upper):
    env = dict(env, GEARMAN_SERVERS="127.0.0.1:%d" % free_port())
    assert pygear_cli(env, "submit", upper, "x").returncode == 6
    out = pygear_cli(env, "--server", gearmand.address, "submit", upper, "x")
    assert (out.returncode, out.stdout) == (0, b"X")
    out = pygear_cli(env, "submit", "--server", gearmand.address, upper, "y")
    assert (out.returncode, out.stdout) == (0, b"Y")


def test_submit_worker_failure_exits_3(env, upper):
    out = pygear_cli(env, "submit", upper, "fail")
    assert out.returncode == 3
    assert b"the worker failed the job" in out.stderr


def test_submit_worker_exception_exits_4(env, upper):
    out = pygear_cli(env, "submit", upper, "boom")
    assert out.returncode == 4
    assert b"ValueError: boom!" in out.stderr
    assert out.stdout == b""


def test_submit_timeout_exits_5(env, upper):
    started = time.monotonic()
    out = pygear_cli(env, "submit", "--timeout", "0.5", upper, "sleep 3")
    assert out.returncode == 5
    assert time.monotonic() - started < 2.9
    assert b"timeout" in out.stderr


def test_submit_could_not_connect_exits_6(env):
    out = pygear_cli(env, "--server", "127.0.0.1:%d" % free_port(), "submit", "fn", "x")
    assert out.returncode == 6
    assert b"could not connect" in out.stderr


def test_submit_unique_and_priorities(env, gearman_worker_process):
    name = unique_name("uq")
    gearman_worker_process.start({name: cli_jobs.unique}, serializer="raw")
    out = pygear_cli(env, "submit", name, "x", "--unique", "my-key")
    assert (out.returncode, out.stdout) == (0, b"my-key")
    for prio in ("--high", "--low"):
        out = pygear_cli(env, "submit", prio, "--unique", "k" + prio, name, "x")
        assert (out.returncode, out.stdout) == (0, b"k" + prio.encode())


def test_submit_json(env, gearman_worker_process):
    name = unique_name("add")
    gearman_worker_process.start({name: cli_jobs.add}, serializer="json")
    out = pygear_cli(env, "--json", "submit", name, '{"a": 2, "b": 40}')
    assert out.returncode == 0
    assert json.loads(out.stdout) == {"sum": 42}
    out = pygear_cli(env, "submit", "--json", name, "not json")
    assert out.returncode == 1 and b"not valid JSON" in out.stderr


def test_submit_background_and_status(env, gearmand):
    name = unique_name("bg")
    out = pygear_cli(env, "submit", "--background", name, "later")
    assert out.returncode == 0
    handle = out.stdout.decode().strip()
    assert handle.startswith("H:")
    assert workers_for(gearmand, name)["total"] == 1
    out = pygear_cli(env, "submit", "--status", handle)
    assert out.returncode == 0
    assert re.search(r"known\s+yes", out.stdout.decode())
    assert re.search(r"running\s+no", out.stdout.decode())
    out = pygear_cli(env, "submit", "--status", handle, "--json")
    assert json.loads(out.stdout) == {"handle": handle, "is_known": True,
                                      "is_running": False, "numerator": 0,
                                      "denominator": 0}
    assert pygear_cli(env, "admin", "cancel", handle).returncode == 0


# --- submit --each -------------------------------------------------------------------------

def test_each_prints_results_in_input_order_and_counts_failures(env, upper, tmp_path):
    lines = ["sleep 0.4", "a", "boom", "b", "fail", "sleep 0.1", "c"]
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(lines) + "\n")
    out = pygear_cli(env, "submit", upper, "--each", str(path), "--jobs", "4")
    assert out.stdout.decode().split("\n") == ["slept", "A", "", "B", "", "slept", "C", ""]
    # The first failure in input order is an exception.
    assert out.returncode == 4
    err = out.stderr.decode()
    assert "\r" not in err                               # not a terminal: plain counts
    assert re.search(r"7/7 done, 2 failed", err)
    assert "ran 7 of 7 jobs to %s" % upper in err
    assert "5 ok, 2 failed" in err
    assert "line 3 'boom': WORK_EXCEPTION: ValueError: boom!" in err
    assert "line 5 'fail': WORK_FAIL" in err


def test_each_runs_jobs_concurrently(env, upper, tmp_path):
    path = tmp_path / "sleeps.txt"
    path.write_text("sleep 0.6\n" * 4)
    started = time.monotonic()
    out = pygear_cli(env, "submit", upper, "--each", str(path), "--jobs", "4", "-q")
    assert out.returncode == 0 and out.stdout == b"slept\n" * 4
    assert out.stderr == b""
    # Two worker processes: two rounds of 0.6 s, not four.
    assert time.monotonic() - started < 2.4


def test_each_from_stdin_all_ok(env, upper):
    out = pygear_cli(env, "submit", upper, "--each", "-", input=b"x\ny\r\nz\n")
    assert (out.returncode, out.stdout) == (0, b"X\nY\nZ\n")
    assert b"3 ok, 0 failed" in out.stderr


def test_each_background_queues_one_job_per_line(env, gearmand, tmp_path):
    name = unique_name("bgeach")
    path = tmp_path / "jobs.txt"
    path.write_text("one\ntwo\nthree\n")
    out = pygear_cli(env, "submit", name, "--each", str(path), "--background")
    assert out.returncode == 0
    handles = out.stdout.decode().split()
    assert len(handles) == 3 and all(h.startswith("H:") for h in handles)
    assert len(set(handles)) == 3
    assert workers_for(gearmand, name)["total"] == 3
    assert b"queued 3 of 3 jobs" in out.stderr


def test_each_shows_a_progress_bar_on_a_terminal(env, upper, tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("a\nb\nsleep 0.3\nc\n")
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(CLI + ["submit", upper, "--each", str(path)], env=env,
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        stdout, _ = proc.communicate(timeout=30)
        err = read_pty(master)
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert stdout == b"A\nB\nslept\nC\n"
    assert b"\r" in err and b"[####" in err and b"4/4" in err


# --- work ------------------------------------------------------------------------------------

@needs_c_tools
def test_work_command_serves_the_c_gearman_client(env, gearmand):
    name = unique_name("rev")
    with background(env, gearmand, name, ["work", name, "--", "rev"]):
        out = subprocess.run(["gearman", "-h", gearmand.host, "-p", str(gearmand.port),
                              "-f", name, "hello"], stdout=subprocess.PIPE, timeout=30)
        assert out.returncode == 0
        assert out.stdout.strip() == b"olleh"
        # and pygear's own client, reading stdin
        out = pygear_cli(env, "submit", name, input=b"abc\n")
        assert out.stdout == b"cba\n"


@needs_c_tools
def test_work_command_failure_fails_the_job(env, gearmand):
    name = unique_name("false")
    with background(env, gearmand, name, ["work", name, "--", "false"]) as proc:
        out = pygear_cli(env, "submit", name, "x")
        assert out.returncode == 3
        c = subprocess.run(["gearman", "-h", gearmand.host, "-p", str(gearmand.port),
                            "-f", name, "x"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        assert c.returncode != 0
        assert proc.poll() is None      # the worker keeps serving


def test_work_command_gets_job_environment(env, gearmand):
    name = unique_name("env")
    with background(env, gearmand, name,
                    ["work", name, "--", "sh", "-c", 'printf "%s %s" "$GEARMAN_FUNCTION" '
                     '"$GEARMAN_UNIQUE"; cat']):
        out = pygear_cli(env, "submit", name, "--unique", "u1", "data")
        assert out.stdout == ("%s u1data" % name).encode()


def test_work_command_timeout_fails_the_job(env, gearmand):
    name = unique_name("slow")
    with background(env, gearmand, name, ["work", "--timeout", "0.3", name, "--",
                                          "sleep", "5"]) as proc:
        started = time.monotonic()
        assert pygear_cli(env, "submit", name, "x").returncode == 3
        assert time.monotonic() - started < 4
        assert proc.poll() is None


@needs_c_tools
def test_submit_against_the_c_gearman_worker(env, gearmand):
    name = unique_name("crev")
    args = ["gearman", "-w", "-h", gearmand.host, "-p", str(gearmand.port),
            "-f", name, "--", "rev"]
    with background(env, gearmand, name, args, cli=False):
        out = pygear_cli(env, "submit", name, "hello world\n")
        assert (out.returncode, out.stdout) == (0, b"dlrow olleh\n")
        out = pygear_cli(env, "submit", name, "--each", "-", "--jobs", "3",
                         input=b"abc\ndef\nghi\n")
        assert (out.returncode, out.stdout) == (0, b"cba\nfed\nihg\n")


def test_work_call_serves_a_python_callable(env, gearmand):
    name = unique_name("call")
    with background(env, gearmand, name, ["work", name, "--call", "tests.cli_jobs:upper"]):
        assert pygear_cli(env, "submit", name, "shout").stdout == b"SHOUT"
        out = pygear_cli(env, "submit", name, "boom")
        assert out.returncode == 4 and b"ValueError: boom!" in out.stderr


def test_work_call_json(env, gearmand):
    name = unique_name("calljson")
    with background(env, gearmand, name, ["work", "--json", name,
                                          "--call", "tests.cli_jobs:add"]):
        out = pygear_cli(env, "submit", "--json", name, '{"a": 1, "b": 2}')
        assert json.loads(out.stdout) == {"sum": 3}


def test_work_call_errors(env):
    out = pygear_cli(env, "work", "fn", "--call", "no_such_module_xyz:fn")
    assert out.returncode == 1 and b"cannot import" in out.stderr
    out = pygear_cli(env, "work", "fn", "--call", "nocolon")
    assert out.returncode == 2
    out = pygear_cli(env, "work", "fn", "--", "no-such-command-xyz")
    assert out.returncode == 1 and b"command not found" in out.stderr


def test_work_concurrency_runs_several_processes(env, gearmand, tmp_path):
    name = unique_name("pids")
    with background(env, gearmand, name, ["work", name, "--call", "tests.cli_jobs:pid",
                                          "--concurrency", "3"], workers=3):
        path = tmp_path / "sleeps"
        path.write_text("0.5\n" * 3)
        out = pygear_cli(env, "submit", name, "--each", str(path), "--jobs", "3")
        assert out.returncode == 0
        assert len(set(out.stdout.split())) == 3


@pytest.mark.parametrize("how", ["sigterm", "sigint-group", "concurrency"])
def test_work_finishes_the_current_job_on_signal(env, gearmand, how):
    name = unique_name("graceful")
    args = ["work", name, "--call", "tests.cli_jobs:upper"]
    if how == "concurrency":
        args += ["--concurrency", "2"]
    with background(env, gearmand, name, args, workers=2 if how == "concurrency" else 1) \
            as worker:
        client = subprocess.Popen(CLI + ["submit", name, "sleep 1.5"], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: workers_for(gearmand, name)["running"] == 1,
                       what="the job to start")
            if how == "sigint-group":   # what Ctrl-C in a terminal does
                os.killpg(worker.pid, signal.SIGINT)
            else:
                worker.send_signal(signal.SIGTERM)
            out, err = client.communicate(timeout=30)
        finally:
            if client.poll() is None:
                client.kill()
        assert (client.returncode, out) == (0, b"slept"), err
        # Ctrl-C exits 130 as `pygear --help` says; SIGTERM, a request to stop, 0.
        assert worker.wait(timeout=15) == (130 if how == "sigint-group" else 0)
        assert b"finishing the current job" in worker.stderr.read()
    assert workers_for(gearmand, name)["available_workers"] == 0


# --- admin --------------------------------------------------------------------------------------

def _gearadmin(gearmand, *args):
    return subprocess.run(["gearadmin", "-h", gearmand.host, "-p", str(gearmand.port)]
                          + list(args), stdout=subprocess.PIPE, timeout=30).stdout.decode()


@needs_c_tools
def test_admin_status_matches_gearadmin(env, gearmand, upper):
    queued = unique_name("queued")
    for _ in range(2):
        pygear_cli(env, "submit", "--background", queued, "x")
    out = pygear_cli(env, "admin", "status")
    assert out.returncode == 0
    lines = out.stdout.decode().splitlines()
    assert lines[0].split() == ["FUNCTION", "TOTAL", "RUNNING", "WORKERS"]
    ours = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    theirs = {row.split("\t")[0]: row.split("\t")[1:]
              for row in _gearadmin(gearmand, "--status").splitlines() if "\t" in row}
    assert ours[queued] == theirs[queued] == ["2", "0", "0"]
    assert ours[upper] == theirs[upper]
    # right-aligned numbers: every row has the same width up to WORKERS
    assert len({len(line) for line in lines}) == 1
    rows = json.loads(pygear_cli(env, "admin", "status", "--json").stdout)
    assert {"function": queued, "total": 2, "running": 0, "available_workers": 0} in rows


@needs_c_tools
def test_admin_version_and_workers(env, gearmand, upper):
    out = pygear_cli(env, "admin", "version")
    assert out.stdout.decode().strip() == _gearadmin(gearmand, "--server-version").strip()
    out = pygear_cli(env, "admin", "workers")
    text = out.stdout.decode()
    assert text.split("\n")[0].split() == ["FD", "IP", "CLIENT-ID", "FUNCTIONS"]
    assert upper in text
    rows = json.loads(pygear_cli(env, "admin", "workers", "--json").stdout)
    assert any(upper in row["functions"] for row in rows)
    assert int(pygear_cli(env, "admin", "getpid").stdout) > 0


def test_admin_jobs_unique_jobs_and_cancel(env, gearmand):
    name = unique_name("jobs")
    handle = pygear_cli(env, "submit", "-b", "--unique", "uniq-" + name, name,
                        "x").stdout.decode().strip()
    out = pygear_cli(env, "admin", "jobs")
    assert out.stdout.decode().split("\n")[0].split() == ["HANDLE", "RETRIES", "IGNORED",
                                                          "QUEUED"]
    assert handle in out.stdout.decode()
    jobs = json.loads(pygear_cli(env, "admin", "jobs", "--json").stdout)
    assert any(j["handle"] == handle for j in jobs)
    out = pygear_cli(env, "admin", "unique-jobs")
    assert "uniq-" + name in out.stdout.decode().split()
    assert "uniq-" + name in json.loads(pygear_cli(env, "admin", "unique-jobs",
                                                   "--json").stdout)
    out = pygear_cli(env, "admin", "cancel", handle)
    assert (out.returncode, out.stdout) == (0, b"OK\n")
    out = pygear_cli(env, "admin", "cancel", "H:nope:1")
    assert out.returncode == 1 and b"UNKNOWN_JOB" in out.stderr


def test_admin_create_maxqueue_drop(env, gearmand):
    name = unique_name("capped")
    assert pygear_cli(env, "admin", "create", name).stdout == b"OK\n"
    assert pygear_cli(env, "admin", "maxqueue", name, "1").stdout == b"OK\n"
    assert pygear_cli(env, "submit", "-b", name, "1").returncode == 0
    full = pygear_cli(env, "submit", "-b", name, "2")
    assert full.returncode == 1 and full.stderr
    assert json.loads(pygear_cli(env, "admin", "maxqueue", name, "0", "--json").stdout) \
        == {"ok": True}
    drop = unique_name("dropme")
    pygear_cli(env, "admin", "create", drop)
    assert pygear_cli(env, "admin", "drop", drop).returncode == 0
    assert drop not in pygear_cli(env, "admin", "status").stdout.decode()


def test_admin_could_not_connect_exits_6(env):
    out = pygear_cli(env, "--server", "127.0.0.1:%d" % free_port(), "admin", "status")
    assert out.returncode == 6


def test_admin_status_several_servers(env, gearmand):
    out = pygear_cli(env, "admin", "--server", gearmand.address, "--server",
                     "localhost:%d" % gearmand.port, "version")
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 2 and lines[0].startswith(gearmand.address)


def test_admin_status_watch_redraws_until_ctrl_c(env, gearmand):
    name = unique_name("watched")
    pygear_cli(env, "admin", "create", name)
    proc = subprocess.Popen(CLI + ["admin", "status", "--watch", "0.2"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen = watch_rounds(proc, 3)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130
    assert name.encode() in seen


def test_admin_status_watch_json_lines(env, gearmand):
    proc = subprocess.Popen(CLI + ["admin", "status", "--watch", "0.2", "--json"], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        records = [json.loads(proc.stdout.readline()) for _ in range(2)]
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130
    assert all(isinstance(r["status"], list) for r in records)

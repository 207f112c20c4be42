"""pygear.metrics, `pygear admin metrics` and `pygear exporter`: the text
format on its own, then live against private gearmands, real Clients and
Workers, promtool and a real Prometheus that scrapes the exporter."""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

import pygear
from pygear import metrics
from pygear._server import GearmandProcess, free_port, find_gearmand
from pygear.testing import GearmandServer, WorkerProcesses, unique_name

from . import workers
from .test_admin import wait_until

pytestmark = pytest.mark.timeout(60)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "pygear"]
# The same command line with prometheus_client made unimportable, as where
# it is not installed.
CLI_WITHOUT_PROMETHEUS_CLIENT = [
    sys.executable, "-c",
    "import sys; sys.modules['prometheus_client'] = None\n"
    "from pygear.cli import main; sys.exit(main())"]
PROMETHEUS = shutil.which("prometheus") or (
    "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)
PROMTOOL = shutil.which("promtool") or (
    "/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None)
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus; "
    ".ci/run installs it)")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="the prometheus server is not installed (apt-get install "
    "prometheus; .ci/run installs it)")
needs_gearmand = pytest.mark.skipif(
    find_gearmand() is None, reason="no gearmand binary (apt-get install gearman-job-server)")


# --- reading the text format, independently of the code that writes it -------------

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)\Z")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|\Z)')
_UNESCAPE = {"n": "\n", "\\": "\\", '"': '"'}


def parse(text):
    """{(sample name, frozenset of label items): value}; fails on a line that
    is not a comment, a sample or empty."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, "not a sample line: %r" % line
        name, body, value = match.groups()
        labels, pos = {}, 0
        while body and pos < len(body):
            label = _LABEL.match(body, pos)
            assert label, "bad labels in %r" % line
            labels[label.group(1)] = re.sub(r"\\(.)", lambda m: _UNESCAPE[m.group(1)],
                                            label.group(2))
            pos = label.end()
        key = (name, frozenset(labels.items()))
        assert key not in samples, "duplicate series %r" % line
        samples[key] = float(value)
    return samples


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def series(samples, name):
    return [dict(labels) for (n, labels) in samples if n == name]


def http_get(url, headers=None, timeout=10):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# --- the text format ---------------------------------------------------------------

def test_label_values_escape_backslash_quote_and_newline():
    family = metrics.MetricFamily("gearman_jobs", "gauge", "jobs")
    family.add((("function", 'a\\b"c\nd'), ("server", "h:1")), 3)
    text = metrics.render([family])
    assert 'gearman_jobs{function="a\\\\b\\"c\\nd",server="h:1"} 3\n' in text
    assert parse(text) == {("gearman_jobs", frozenset({("function", 'a\\b"c\nd'),
                                                      ("server", "h:1")})): 3.0}


def test_non_utf8_function_names_stay_distinct_label_values():
    # Admin hands over a name that is not UTF-8 surrogate-escaped.
    names = [b"f\xff".decode("utf-8", "surrogateescape"),
             b"f\xfe".decode("utf-8", "surrogateescape")]
    family = metrics.MetricFamily("gearman_jobs", "gauge", "jobs")
    for name in names:
        family.add((("function", name),), 1)
    text = metrics.render([family])
    text.encode("utf-8")   # no lone surrogate reaches the output
    assert sorted(l["function"] for l in series(parse(text), "gearman_jobs")) == ["f\\xfe",
                                                                                  "f\\xff"]


def test_help_lines_values_and_types():
    family = metrics.MetricFamily("x_seconds", "gauge", "first line\nback\\slash")
    family.add((), float("inf"))
    family.add((("k", "v"),), float("nan"))
    family.add((("k", "w"),), 0.25)
    assert metrics.render([family]) == (
        "# HELP x_seconds first line\\nback\\\\slash\n"
        "# TYPE x_seconds gauge\n"
        "x_seconds +Inf\n"
        'x_seconds{k="v"} NaN\n'
        'x_seconds{k="w"} 0.25\n')


def test_several_servers_and_a_down_one_from_scrape_results():
    states = [
        metrics.ServerState("10.0.0.1:4730", True, version="1.1.20",
                            functions=[{"function": "resize", "total": 5, "running": 2,
                                        "available_workers": 3}],
                            connections=4, worker_connections=3, duration=0.002),
        metrics.ServerState("[::1]:4731", False, error="refused"),
        metrics.ServerState("10.0.0.2:4730", True, version="1.1.19",
                            functions=[{"function": "resize", "total": 1, "running": 0,
                                        "available_workers": 0}]),
    ]
    samples = parse(metrics.render(metrics.server_families(states)))
    assert value(samples, "gearman_up", server="10.0.0.1:4730") == 1
    assert value(samples, "gearman_up", server="[::1]:4731") == 0
    assert value(samples, "gearman_up", server="10.0.0.2:4730") == 1
    assert value(samples, "gearman_jobs", function="resize", server="10.0.0.1:4730") == 5
    assert value(samples, "gearman_jobs_running", function="resize", server="10.0.0.1:4730") == 2
    assert value(samples, "gearman_jobs_waiting", function="resize", server="10.0.0.1:4730") == 3
    assert value(samples, "gearman_workers", function="resize", server="10.0.0.1:4730") == 3
    assert value(samples, "gearman_jobs", function="resize", server="10.0.0.2:4730") == 1
    assert value(samples, "gearman_version_info", server="10.0.0.2:4730", version="1.1.19") == 1
    assert value(samples, "gearman_worker_connections", server="10.0.0.1:4730") == 3
    # The down server has up 0 and nothing else.
    down = [key for key in samples if ("server", "[::1]:4731") in key[1]]
    assert down == [("gearman_up", frozenset({("server", "[::1]:4731")}))]


def test_recorder_histogram_is_cumulative_and_a_bound_holds_its_value():
    rec = metrics.Recorder(buckets=(0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 2.0):
        rec.finished("resize", "complete", seconds)
    rec.finished("resize", "timeout", 1.0)
    s = parse(rec.text())
    bucket = "gearman_client_job_duration_seconds_bucket"
    assert value(s, bucket, function="resize", le="0.1") == 2
    assert value(s, bucket, function="resize", le="1.0") == 4
    assert value(s, bucket, function="resize", le="+Inf") == 5
    assert value(s, "gearman_client_job_duration_seconds_count", function="resize") == 5
    assert value(s, "gearman_client_job_duration_seconds_sum", function="resize") == \
        pytest.approx(3.65)
    assert value(s, "gearman_client_jobs_finished_total", function="resize",
                 outcome="complete") == 4
    assert value(s, "gearman_client_jobs_finished_total", function="resize",
                 outcome="timeout") == 1
    assert value(s, "gearman_client_jobs_finished_total", function="resize",
                 outcome="error") == 0   # every outcome is written, 0 too
    assert value(s, "gearman_client_jobs_submitted_total", function="resize") == 0
    assert not series(s, "gearman_worker_jobs_total")   # that side recorded nothing


def test_recorder_refuses_unknown_outcomes_and_names():
    rec = metrics.Recorder()
    with pytest.raises(ValueError, match="complete, fail, exception, timeout, error"):
        rec.finished("f", "done", 0.1)
    with pytest.raises(ValueError, match="complete, fail, exception"):
        rec.job_done("f", "timeout", 0.1)
    with pytest.raises(TypeError):
        rec.submitted(b"f")
    with pytest.raises(ValueError):
        metrics.Recorder(buckets=[])
    assert rec.text() == ""


def test_recorder_counts_exactly_from_many_threads():
    rec = metrics.Recorder()
    per_thread, threads = 20000, 4

    def hammer():
        for _ in range(per_thread):
            rec.submitted("f")
            rec.finished("f", "complete", 0.001)
            rec.job_done("f", "fail", 0.002)

    pool = [threading.Thread(target=hammer) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(30)
    s = parse(rec.text())
    total = per_thread * threads
    assert value(s, "gearman_client_jobs_submitted_total", function="f") == total
    assert value(s, "gearman_client_jobs_finished_total", function="f", outcome="complete") == total
    assert value(s, "gearman_client_job_duration_seconds_count", function="f") == total
    assert value(s, "gearman_worker_jobs_total", function="f", outcome="fail") == total
    assert value(s, "gearman_worker_job_duration_seconds_bucket", function="f",
                 le="0.0025") == total


def test_recorder_collector_gives_prometheus_client_the_same_samples():
    prometheus_client = pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families
    rec = metrics.Recorder()
    rec.submitted("resize")
    rec.finished("resize", "exception", 0.02)
    rec.job_done("resize", "complete", 0.01)
    registry = prometheus_client.CollectorRegistry()
    registry.register(rec.collector())

    def samples(text):
        return {(s.name, frozenset(s.labels.items()), s.value)
                for f in text_string_to_metric_families(text) for s in f.samples}

    theirs = prometheus_client.generate_latest(registry).decode()
    assert samples(theirs) == samples(rec.text())
    assert "# TYPE gearman_client_jobs_submitted_total counter" in theirs
    assert "# TYPE gearman_worker_job_duration_seconds histogram" in theirs
    # OpenMetrics: counters and histograms keep their types.
    from prometheus_client.openmetrics.exposition import generate_latest as om
    assert "# TYPE gearman_client_jobs_submitted counter" in om(registry).decode()


def test_collector_without_prometheus_client_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "prometheus_client.core", None)
    with pytest.raises(ImportError, match=r"pygear-ctypes\[metrics\]"):
        metrics.Recorder().collector()


def test_registering_a_server_collector_does_not_scrape(caplog):
    prometheus_client = pytest.importorskip("prometheus_client")
    dead = metrics.ServerMetrics("127.0.0.1:%d" % free_port(), timeout=1)
    registry = prometheus_client.CollectorRegistry()
    with caplog.at_level("WARNING", logger="pygear.metrics"):
        registry.register(dead.collector())
        assert not caplog.records   # describe() named the series; nobody was asked
        text = prometheus_client.generate_latest(registry).decode()
    assert 'gearman_up{server="127.0.0.1:%d"} 0.0' % dead.servers[0][1] in text
    assert "is down" in caplog.text


# --- live: private gearmands ------------------------------------------------------

@pytest.fixture
def two_gearmands():
    if find_gearmand() is None:
        pytest.skip("no gearmand binary (apt-get install gearman-job-server)")
    servers = []
    try:
        for _ in range(2):
            servers.append(GearmandProcess().start())
        yield servers
    finally:
        for server in servers:
            server.stop()


def _queue(server, function, count):
    """``count`` background jobs of ``function`` on ``server``, nobody serving them."""
    with pygear.Client() as client:
        client.add_server(server.host, server.port)
        client.set_timeout(5000)
        for i in range(count):
            client.do_background(function, i)


def test_two_servers_report_their_queues_under_their_own_label(two_gearmands):
    a, b = two_gearmands
    queued, served = unique_name("queued"), unique_name("served")
    _queue(a, queued, 3)
    _queue(b, queued, 1)
    procs = WorkerProcesses(GearmandServer(a.host, a.port))
    try:
        procs.start({served: workers.echo})
        scraper = metrics.ServerMetrics([a.address, b.address], timeout=3)
        s = parse(scraper.text())
        for server in (a, b):
            assert value(s, "gearman_up", server=server.address) == 1
            assert [l for l in series(s, "gearman_version_info")
                    if l["server"] == server.address][0]["version"].startswith("1.")
        assert value(s, "gearman_jobs", function=queued, server=a.address) == 3
        assert value(s, "gearman_jobs_waiting", function=queued, server=a.address) == 3
        assert value(s, "gearman_jobs", function=queued, server=b.address) == 1
        assert value(s, "gearman_workers", function=served, server=a.address) == 1
        assert value(s, "gearman_worker_connections", server=a.address) == 1
        assert value(s, "gearman_worker_connections", server=b.address) == 0

        b.kill()   # the other server goes away
        s = parse(scraper.text())
        assert value(s, "gearman_up", server=b.address) == 0
        assert [l for _, labels in s for l in [dict(labels)]
                if l.get("server") == b.address] == [{"server": b.address}]
        assert value(s, "gearman_up", server=a.address) == 1
        assert value(s, "gearman_jobs", function=queued, server=a.address) == 3
    finally:
        procs.stop_all()


def test_a_server_that_never_answers_is_down_after_the_timeout(gearmand):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)   # accepts connections (the kernel does) and never replies
    try:
        address = "127.0.0.1:%d" % silent.getsockname()[1]
        scraper = metrics.ServerMetrics([address, gearmand.address], timeout=0.5)
        start = time.monotonic()
        states = scraper.scrape()
        took = time.monotonic() - start
    finally:
        silent.close()
    assert [s.up for s in states] == [False, True]
    assert "timed out" in states[0].error
    assert 0.4 < took < 1.5   # in parallel: the live server did not wait for it


# --- live: a Recorder fed by real Clients and Workers --------------------------------

def test_client_records_every_kind_of_ending(gearman_client, gearman_worker_process):
    names = {k: unique_name(k) for k in ("reverse", "boom", "fail")}
    gearman_worker_process.start({names[k]: getattr(workers, k) for k in names})
    nobody = unique_name("nobody")
    rec = metrics.Recorder()
    gearman_client.set_metrics(rec)
    for word in ("abc", "de", "f"):
        assert gearman_client.do(names["reverse"], word) == word[::-1]
    with pytest.raises(pygear.WORK_EXCEPTION):
        gearman_client.do(names["boom"], 1)
    with pytest.raises(pygear.WORK_FAIL):
        gearman_client.do_high(names["fail"], 1)
    gearman_client.do_background(nobody, 1)   # counted as submitted, never finished here
    gearman_client.add_task(names["reverse"], "xy")
    gearman_client.add_task_low(names["boom"], 2)
    gearman_client.run_tasks()
    gearman_client.set_timeout(300)
    with pytest.raises(pygear.TIMEOUT):
        gearman_client.do(nobody, 2)

    s = parse(rec.text())
    finished = "gearman_client_jobs_finished_total"
    assert value(s, "gearman_client_jobs_submitted_total", function=names["reverse"]) == 4
    assert value(s, "gearman_client_jobs_submitted_total", function=names["boom"]) == 2
    assert value(s, "gearman_client_jobs_submitted_total", function=nobody) == 2
    assert value(s, finished, function=names["reverse"], outcome="complete") == 4
    assert value(s, finished, function=names["boom"], outcome="exception") == 2
    assert value(s, finished, function=names["fail"], outcome="fail") == 1
    assert value(s, finished, function=nobody, outcome="timeout") == 1
    assert value(s, finished, function=nobody, outcome="complete") == 0
    hist = "gearman_client_job_duration_seconds"
    assert value(s, hist + "_count", function=names["reverse"]) == 4
    assert value(s, hist + "_count", function=nobody) == 1
    assert value(s, hist + "_sum", function=nobody) >= 0.29   # it waited for its timeout
    assert 0 < value(s, hist + "_sum", function=names["reverse"]) < 10
    buckets = sorted((float(l["le"]), value(s, hist + "_bucket", **l))
                     for l in series(s, hist + "_bucket") if l["function"] == names["reverse"])
    counts = [c for _, c in buckets]
    assert counts == sorted(counts) and counts[-1] == 4   # cumulative, +Inf = count

    gearman_client.set_metrics(None)
    gearman_client.set_timeout(10000)
    gearman_client.do(names["reverse"], "no longer counted")
    assert value(parse(rec.text()), "gearman_client_jobs_submitted_total",
                 function=names["reverse"]) == 4


def test_worker_records_every_kind_of_ending(gearman_client, gearman_worker):
    kinds = ("reverse", "boom", "fail", "explicit_complete", "explicit_exception",
             "unserializable")
    names = {k: unique_name(k) for k in kinds}
    rec = metrics.Recorder()
    gearman_worker.set_metrics(rec)
    for kind, name in names.items():
        gearman_worker.add_function(name, 0, getattr(workers, kind))
        gearman_client.do_background(name, "abc")
    gearman_worker.set_timeout(2000)

    def ran():
        s = parse(rec.text())
        return sum(s.get(("gearman_worker_job_duration_seconds_count",
                          frozenset({("function", n)})), 0) for n in names.values())

    deadline = time.monotonic() + 20
    while ran() < len(kinds) and time.monotonic() < deadline:
        gearman_worker.work()
    s = parse(rec.text())
    jobs = "gearman_worker_jobs_total"
    expected = {"reverse": "complete", "boom": "exception", "fail": "fail",
                "explicit_complete": "complete", "explicit_exception": "exception",
                "unserializable": "exception"}
    for kind, outcome in expected.items():
        for other in metrics.WORKER_OUTCOMES:
            assert value(s, jobs, function=names[kind], outcome=other) == \
                (1 if other == outcome else 0), (kind, other)
        assert value(s, "gearman_worker_job_duration_seconds_count", function=names[kind]) == 1


def test_set_metrics_checks_the_recorder_and_clone_keeps_it(gearman_client, gearman_worker):
    with pytest.raises(TypeError, match="submitted"):
        gearman_client.set_metrics(object())
    with pytest.raises(TypeError, match="finished"):
        gearman_client.set_metrics(type("OnlySubmitted", (), {"submitted": print})())
    with pytest.raises(TypeError, match="job_done"):
        gearman_worker.set_metrics(object())
    rec = metrics.Recorder()
    gearman_client.set_metrics(rec)
    gearman_worker.set_metrics(rec)
    for original in (gearman_client, gearman_worker):
        with original.clone() as copy:
            assert copy._settings.metrics is rec


# --- the command line -----------------------------------------------------------------

def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("GEARMAN_SERVERS", None)
    return env


def test_cli_admin_metrics_several_servers_one_down(two_gearmands):
    a, b = two_gearmands
    name = unique_name("cli")
    _queue(a, name, 2)
    dead = "127.0.0.1:%d" % free_port()
    out = subprocess.run(CLI + ["admin", "metrics", "-s", a.address, "-s", b.address,
                                "--server", dead, "--timeout", "3"],
                         env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    s = parse(out.stdout.decode())
    assert value(s, "gearman_up", server=a.address) == 1
    assert value(s, "gearman_up", server=b.address) == 1
    assert value(s, "gearman_up", server=dead) == 0
    assert value(s, "gearman_jobs", function=name, server=a.address) == 2
    assert ("gearman_jobs", frozenset({("function", name), ("server", b.address)})) not in s


@needs_promtool
def test_promtool_accepts_the_servers_and_the_recorders_text(gearman_client, gearman_worker,
                                                             two_gearmands):
    a, _ = two_gearmands
    with pygear.Admin(a.host, a.port, timeout=5) as admin:
        admin.create_function('we"ird\\name')   # needs escaping in a label
    _queue(a, unique_name("lint"), 1)
    out = subprocess.run(CLI + ["admin", "metrics", "-s", a.address, "-s",
                                "127.0.0.1:%d" % free_port()],
                         env=_env(), cwd=ROOT, stdout=subprocess.PIPE, timeout=30)
    assert b'function="we\\"ird\\\\name"' in out.stdout

    rec = metrics.Recorder()
    gearman_client.set_metrics(rec)
    gearman_worker.set_metrics(rec)
    name = unique_name("rev")
    gearman_worker.add_function(name, 0, workers.reverse)
    gearman_client.do_background(name, "abc")
    gearman_worker.work()
    with pytest.raises(pygear.TIMEOUT):
        gearman_client.set_timeout(100)
        gearman_client.do(unique_name("nobody"), 1)
    pages = {"admin metrics": out.stdout, "recorder": rec.text().encode()}
    for backend, cli in (("exporter", CLI), ("exporter, standard library",
                                             CLI_WITHOUT_PROMETHEUS_CLIENT)):
        with exporter([a.address], cli=cli) as (proc, base):
            pages[backend] = http_get(base + "/metrics")[2]
    for what, text in pages.items():
        lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        assert lint.returncode == 0 and not lint.stdout.strip(), (what, lint.stdout.decode())


@contextlib.contextmanager
def exporter(servers, cli=CLI, timeout="2"):
    """`pygear exporter` on a free port, until the block ends (SIGTERM)."""
    port = free_port()
    args = cli + ["exporter", "--listen", "127.0.0.1:%d" % port, "--timeout", timeout]
    for server in servers:
        args += ["--server", server]
    proc = subprocess.Popen(args, env=_env(), cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = "http://127.0.0.1:%d" % port

    def healthy():
        assert proc.poll() is None, proc.communicate(timeout=5)
        try:
            return http_get(base + "/healthz", timeout=2)[0] == 200
        except OSError:
            return False

    try:
        wait_until(healthy, 15, "the exporter to answer /healthz")
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize("backend", ["prometheus_client", "standard library"])
def test_exporter_serves_metrics_and_healthz_and_exits_0_on_sigterm(two_gearmands, backend):
    if backend == "prometheus_client":
        pytest.importorskip("prometheus_client")
    cli = CLI if backend == "prometheus_client" else CLI_WITHOUT_PROMETHEUS_CLIENT
    a, b = two_gearmands
    name = unique_name("exp")
    _queue(b, name, 4)
    with exporter([a.address, b.address], cli=cli) as (proc, base):
        status, headers, body = http_get(base + "/healthz")
        assert (status, body) == (200, b"ok\n")
        status, headers, body = http_get(base + "/metrics")
        assert status == 200
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        s = parse(body.decode())
        assert value(s, "gearman_up", server=a.address) == 1
        assert value(s, "gearman_jobs", function=name, server=b.address) == 4
        assert (backend == "prometheus_client") == bool(series(s, "process_cpu_seconds_total"))

        b.kill()   # scraped at each request: the next page knows
        status, headers, body = http_get(base + "/metrics", {"Accept-Encoding": "gzip"})
        assert headers.get("Content-Encoding") == "gzip"
        s = parse(gzip.decompress(body).decode())
        assert value(s, "gearman_up", server=b.address) == 0
        assert value(s, "gearman_up", server=a.address) == 1
        assert http_get(base + "/nope")[0] == 404

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        err = proc.stderr.read().decode()
    assert "serving http://127.0.0.1:" in err
    assert ("prometheus_client" in err) == (backend == "prometheus_client")
    assert "%s is down" % b.address in err   # logged once, on the change


def test_exporter_ctrl_c_exits_130(gearmand):
    with exporter([gearmand.address]) as (proc, base):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130


def test_exporter_refuses_a_bad_or_busy_listen_address(gearmand):
    bad = subprocess.run(CLI + ["exporter", "--listen", "nowhere", "-s", gearmand.address],
                         env=_env(), cwd=ROOT, stderr=subprocess.PIPE, timeout=30)
    assert bad.returncode == 2 and b"HOST:PORT" in bad.stderr
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        taken = subprocess.run(CLI + ["exporter", "--listen", "127.0.0.1:%d"
                                      % busy.getsockname()[1], "-s", gearmand.address],
                               env=_env(), cwd=ROOT, stderr=subprocess.PIPE, timeout=30)
    finally:
        busy.close()
    assert taken.returncode == 1 and b"cannot listen" in taken.stderr


# --- a real Prometheus ------------------------------------------------------------------

@pytest.fixture
def prometheus(tmp_path):
    """Start Prometheus on a free loopback port with ``start(targets)``; it
    scrapes every second and is stopped (by pid) after the test."""
    procs = []

    def start(targets):
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: gearman\n    static_configs:\n"
            "      - targets: [%s]\n" % ", ".join('"%s"' % t for t in targets))
        log = open(tmp_path / "prometheus.log", "wb")
        proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=%s" % config,
             "--storage.tsdb.path=%s" % (tmp_path / "data"),
             "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(tmp_path))
        procs.append((proc, log))
        base = "http://127.0.0.1:%d" % port

        def ready():
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                return http_get(base + "/-/ready", timeout=2)[0] == 200
            except OSError:
                return False

        wait_until(ready, 15, "Prometheus to be ready")
        return base

    try:
        yield start
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            log.close()


def _query(base, query):
    status, _, body = http_get(base + "/api/v1/query?" + urllib.parse.urlencode(
        {"query": query}), timeout=5)
    assert status == 200, body
    reply = json.loads(body)
    assert reply["status"] == "success", reply
    return {tuple(sorted(r["metric"].items())): float(r["value"][1])
            for r in reply["data"]["result"]}


@needs_prometheus
def test_prometheus_scrapes_the_exporter(two_gearmands, prometheus):
    # ~6 s, most of it Prometheus' own: its discovery manager hands new
    # targets to the scrapers at most every 5 s, and no flag shortens that.
    a, b = two_gearmands
    name = unique_name("prom")
    _queue(a, name, 2)
    b.kill()   # one server down from the start
    with exporter([a.address, b.address], timeout="0.5") as (proc, base):
        target = base[len("http://"):]
        prom = prometheus([target])

        def both_servers():
            found = _query(prom, "gearman_up")
            return found if len(found) == 2 else None

        up = wait_until(both_servers, 15, "Prometheus to scrape gearman_up")
        labels = {dict(k)["server"]: (dict(k), v) for k, v in up.items()}
        assert labels[a.address][1] == 1 and labels[b.address][1] == 0
        assert labels[a.address][0]["job"] == "gearman"
        assert labels[a.address][0]["instance"] == target
        jobs = _query(prom, 'gearman_jobs{function="%s"}' % name)
        assert [(dict(k)["server"], v) for k, v in jobs.items()] == [(a.address, 2)]
        # Prometheus itself found the exposition well formed.
        targets = json.loads(http_get(prom + "/api/v1/targets")[2])
        health = [t["health"] for t in targets["data"]["activeTargets"]]
        assert health == ["up"], targets

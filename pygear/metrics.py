"""Prometheus metrics: gearmand's queues, and the jobs a Client or Worker ran.

Two sources, one shape:

- ``ServerMetrics(servers)`` asks one or several gearmands over the admin
  protocol (``version``, ``status``, ``workers``), every server in its own
  thread, each bounded by ``timeout``.  A server that refuses, drops or
  does not answer in time is reported as ``gearman_up 0`` and nothing else;
  it never raises.
- ``Recorder()`` counts the jobs a Client submitted and how they ended, and
  the jobs a Worker ran, with latency histograms, per function.  Client and
  Worker call it through three methods (``submitted``, ``finished``,
  ``job_done``): a dict lookup and a few adds under a lock.

Each has ``families()`` (``MetricFamily`` objects), ``text()`` (the
Prometheus text exposition format 0.0.4, built here with the standard
library alone) and ``collector()`` (a ``prometheus_client`` collector, for
a registry of your own; only that method needs ``prometheus_client``, the
``pygear-ctypes[metrics]`` extra).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_left
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ._args import parse_servers
from .admin import Admin
from .errors import TIMEOUT

__all__ = ["CONTENT_TYPE", "DEFAULT_BUCKETS", "DEFAULT_TIMEOUT", "CLIENT_OUTCOMES",
           "WORKER_OUTCOMES", "MetricFamily", "ServerState", "ServerMetrics", "Recorder",
           "render", "escape_label_value", "format_value", "server_families",
           "outcome_of"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_TIMEOUT = 5.0     # seconds per server and scrape
# Seconds.  A loopback round trip is ~0.1 ms; jobs may run for minutes.
DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
CLIENT_OUTCOMES = ("complete", "fail", "exception", "timeout", "error")
WORKER_OUTCOMES = ("complete", "fail", "exception")

log = logging.getLogger("pygear.metrics")
log.addHandler(logging.NullHandler())   # silent unless the application configures logging

Labels = Tuple[Tuple[str, str], ...]
Server = Union[str, Tuple[str, int]]


# --- the text format ----------------------------------------------------------

class MetricFamily:
    """One metric: its name, type (``gauge``, ``counter``, ``histogram``),
    help text and samples ``(sample name, labels, value)``, where labels is a
    tuple of ``(name, value)`` pairs.  A counter's name ends in ``_total``;
    a histogram's samples are named ``<name>_bucket``, ``_sum``, ``_count``."""

    __slots__ = ("name", "type", "help", "samples")

    def __init__(self, name: str, type: str, help: str) -> None:
        self.name = name
        self.type = type
        self.help = help
        self.samples: List[Tuple[str, Labels, float]] = []

    def add(self, labels: Labels, value: float, suffix: str = "") -> None:
        self.samples.append((self.name + suffix, labels, value))

    def __repr__(self) -> str:
        return "<MetricFamily %s %s, %d samples>" % (self.name, self.type, len(self.samples))


def _label_text(value: str) -> str:
    """``value`` as text that encodes to UTF-8.  A function name that is not
    UTF-8 reaches us surrogate-escaped (see admin._decode); its bytes are
    written as ``\\xNN``, so two such names stay two label values."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("ascii")
        return raw.decode("utf-8", "backslashreplace")


def escape_label_value(value: str) -> str:
    """A label value as written between the quotes: backslash, double quote
    and line feed escaped, as the format requires."""
    return (_label_text(value).replace("\\", "\\\\").replace('"', '\\"')
            .replace("\n", "\\n"))


def _escape_help(text: str) -> str:
    return _label_text(text).replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if type(value) is int:
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def render(families: Iterable[MetricFamily]) -> str:
    """The families in the text exposition format 0.0.4 (``CONTENT_TYPE``)."""
    out: List[str] = []
    for family in families:
        out.append("# HELP %s %s\n# TYPE %s %s\n"
                   % (family.name, _escape_help(family.help), family.name, family.type))
        for name, labels, value in family.samples:
            if labels:
                out.append("%s{%s} %s\n" % (name, ",".join(
                    '%s="%s"' % (k, escape_label_value(v)) for k, v in labels),
                    format_value(value)))
            else:
                out.append("%s %s\n" % (name, format_value(value)))
    return "".join(out)


# --- prometheus_client ---------------------------------------------------------

def _prometheus_metric(family: MetricFamily, metric_class: Any, samples: bool = True) -> Any:
    """``family`` as a prometheus_client ``Metric``.  prometheus_client names
    a counter without its ``_total`` and an info metric without its
    ``_info`` (it adds them back when it writes), so that OpenMetrics
    scrapes see the right types."""
    name, kind = family.name, family.type
    if kind == "counter" and name.endswith("_total"):
        name = name[:-len("_total")]
    elif kind == "gauge" and name.endswith("_info"):
        name, kind = name[:-len("_info")], "info"
    metric = metric_class(name, family.help, kind)
    if samples:
        for sample_name, labels, value in family.samples:
            metric.add_sample(sample_name, {k: _label_text(v) for k, v in labels}, value)
    return metric


class _Collector:
    """What ``collector()`` returns: registers in a prometheus_client
    registry (``registry.register(c)``); each ``collect()`` reads its
    source afresh (ServerMetrics: scrapes the servers)."""

    def __init__(self, source: Any) -> None:
        from prometheus_client.core import Metric   # the optional extra
        self._source = source
        self._metric = Metric

    def describe(self) -> List[Any]:
        # The names alone: a registry calls this when the collector is
        # registered, and must not scrape servers then.
        return [_prometheus_metric(f, self._metric, samples=False)
                for f in self._source._declared()]

    def collect(self) -> List[Any]:
        return [_prometheus_metric(f, self._metric) for f in self._source.families()]


def _collector(source: Any) -> _Collector:
    try:
        return _Collector(source)
    except ImportError as exc:
        raise ImportError("collector() needs prometheus_client: pip install "
                          "'pygear-ctypes[metrics]' (or prometheus_client)") from exc


# --- the servers -----------------------------------------------------------------

class ServerState:
    """What one scrape of one gearmand found.  ``up`` False means it did not
    answer in time (``error`` says why) and nothing else is known."""

    __slots__ = ("server", "up", "version", "functions", "connections",
                 "worker_connections", "duration", "error")

    def __init__(self, server: str, up: bool, version: str = "",
                 functions: Sequence[Dict[str, Any]] = (), connections: int = 0,
                 worker_connections: int = 0, duration: float = 0.0,
                 error: Optional[str] = None) -> None:
        self.server = server
        self.up = up
        self.version = version
        self.functions = list(functions)   # Admin.status() rows
        self.connections = connections
        self.worker_connections = worker_connections
        self.duration = duration
        self.error = error

    def __repr__(self) -> str:
        return "<ServerState %s %s>" % (self.server, "up" if self.up else "down: %s" % self.error)


# (name, type, help) of every server-side family, in the order written.
# gearman_jobs, _jobs_running, _jobs_waiting, _workers, _up and
# _version_info are the names bakins/gearman-exporter uses (its dashboards
# work), with a server label added to each.
_SERVER_FAMILIES = (
    ("gearman_up", "gauge",
     "1 if the server answered the admin protocol in this scrape, else 0 "
     "(then no other series of that server is written)"),
    ("gearman_version_info", "gauge", "The server's version, in the version label; always 1"),
    ("gearman_scrape_duration_seconds", "gauge",
     "How long asking the server for version, status and workers took"),
    ("gearman_connections", "gauge",
     "Connections to the server (clients and workers), not counting the scrape's own"),
    ("gearman_worker_connections", "gauge",
     "Connections that registered at least one function"),
    ("gearman_jobs", "gauge", "Jobs of the function queued or running (status: total)"),
    ("gearman_jobs_running", "gauge", "Jobs of the function a worker is running"),
    ("gearman_jobs_waiting", "gauge",
     "Jobs of the function waiting for a worker (total minus running)"),
    ("gearman_workers", "gauge", "Workers that registered the function (status: available workers)"),
)


def _declared_server_families() -> List[MetricFamily]:
    return [MetricFamily(*spec) for spec in _SERVER_FAMILIES]


def server_families(states: Iterable[ServerState]) -> List[MetricFamily]:
    """The families for these scrape results, servers in the order given,
    functions by name."""
    (up, version, duration, connections, worker_connections,
     jobs, running, waiting, workers) = families = _declared_server_families()
    for state in states:
        server = (("server", state.server),)
        up.add(server, 1 if state.up else 0)
        if not state.up:
            continue
        version.add((("server", state.server), ("version", state.version)), 1)
        duration.add(server, state.duration)
        connections.add(server, state.connections)
        worker_connections.add(server, state.worker_connections)
        for row in sorted(state.functions, key=lambda r: r["function"]):
            labels = (("function", row["function"]), ("server", state.server))
            total, busy = row["total"], row["running"]
            jobs.add(labels, total)
            running.add(labels, busy)
            waiting.add(labels, max(total - busy, 0))
            workers.add(labels, row["available_workers"])
    return families


def _server_label(host: str, port: int) -> str:
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def _server_list(servers: Union[str, Server, Iterable[Server]]) -> List[Tuple[str, int]]:
    """"h1:4730,h2", ("h", 4730), or a list of either."""
    if isinstance(servers, tuple) and len(servers) == 2 and isinstance(servers[1], int):
        servers = [servers]
    if isinstance(servers, str):
        return parse_servers(servers)
    result: List[Tuple[str, int]] = []
    for item in servers:
        for server in ([item] if isinstance(item, tuple) else parse_servers(item)):
            host, port = server
            if server not in result:
                result.append((host, port))
    if not result:
        raise ValueError("no servers given")
    return result


def scrape_server(host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> ServerState:
    """Ask one gearmand; ``timeout`` bounds the three requests together.
    Never raises for a server that is down, slow or answers nonsense."""
    label = _server_label(host, port)
    start = time.monotonic()
    deadline = start + timeout
    admin = Admin(host, port, timeout=timeout)
    try:
        version = admin.version()
        admin.timeout = _left(deadline)
        status = admin.status()
        admin.timeout = _left(deadline)
        connections = admin.workers()
    except Exception as exc:   # TIMEOUT, refused, dropped, ERR, malformed, or worse
        # Whatever went wrong, it is this server's "down", not the scrape's end.
        return ServerState(label, False, duration=time.monotonic() - start,
                           error=str(exc) or type(exc).__name__)
    finally:
        admin.close()
    return ServerState(label, True, version=version, functions=status,
                       # the list holds this scrape's own connection too
                       connections=max(len(connections) - 1, 0),
                       worker_connections=sum(1 for c in connections if c["functions"]),
                       duration=time.monotonic() - start)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TIMEOUT("the scrape ran out of time")
    return left


class ServerMetrics:
    """gearmand's state, scraped afresh at every ``families()``/``text()``
    (and every ``collect()`` of its collector).

    ``servers``: "h1:4730,h2:4730", a list of "host[:port]" or
    ``(host, port)``.  ``timeout``: seconds each server has to answer;
    servers are asked in parallel, so one scrape takes about the slowest
    server's time, at most ``timeout``.  A server that goes down or comes
    back is logged (``pygear.metrics``, WARNING and INFO) once per change.
    """

    def __init__(self, servers: Union[str, Server, Iterable[Server]],
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError("timeout must be a number of seconds")
        if not timeout > 0:
            raise ValueError("timeout must be positive, not %r" % timeout)
        self.servers = _server_list(servers)
        self.timeout = float(timeout)
        self._was_up: Dict[str, bool] = {}
        self._lock = threading.Lock()

    def scrape(self) -> List[ServerState]:
        """One ServerState per server, in the order given."""
        if len(self.servers) == 1:
            states = [scrape_server(*self.servers[0], timeout=self.timeout)]
        else:
            states = self._scrape_in_parallel()
        self._log_changes(states)
        return states

    def _scrape_in_parallel(self) -> List[ServerState]:
        results: List[Optional[ServerState]] = [None] * len(self.servers)

        def one(i: int, host: str, port: int) -> None:
            results[i] = scrape_server(host, port, self.timeout)

        threads = [threading.Thread(target=one, args=(i, host, port), daemon=True,
                                    name="pygear-scrape-%s" % _server_label(host, port))
                   for i, (host, port) in enumerate(self.servers)]
        for thread in threads:
            thread.start()
        # The Admin timeout bounds each thread, except a name lookup that
        # hangs (getaddrinfo has no timeout): such a server counts as down.
        deadline = time.monotonic() + self.timeout + 1.0
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))
        return [state if state is not None else
                ServerState(_server_label(host, port), False, duration=self.timeout,
                            error="no answer within %gs" % self.timeout)
                for state, (host, port) in zip(results, self.servers)]

    def _log_changes(self, states: List[ServerState]) -> None:
        with self._lock:
            for state in states:
                was = self._was_up.get(state.server)
                if not state.up and was is not False:
                    log.warning("gearmand %s is down: %s", state.server, state.error)
                elif state.up and was is False:
                    log.info("gearmand %s is up again", state.server)
                self._was_up[state.server] = state.up

    def families(self) -> List[MetricFamily]:
        return server_families(self.scrape())

    def text(self) -> str:
        return render(self.families())

    def collector(self) -> Any:
        """A prometheus_client collector that scrapes at every collect()."""
        return _collector(self)

    def _declared(self) -> List[MetricFamily]:
        return _declared_server_families()

    def __repr__(self) -> str:
        return "<pygear.metrics.ServerMetrics %s>" % ",".join(
            _server_label(h, p) for h, p in self.servers)


# --- client and worker side --------------------------------------------------------

def outcome_of(exc: BaseException) -> str:
    """How a client's job ended, from the exception do* raised."""
    name = getattr(exc, "name", None)
    if name == "WORK_FAIL":
        return "fail"
    if name == "WORK_EXCEPTION":
        return "exception"
    if name == "TIMEOUT" or isinstance(exc, TimeoutError):
        return "timeout"
    return "error"


def _bad_outcome(outcomes: Sequence[str], outcome: object) -> ValueError:
    return ValueError("outcome must be one of %s, not %r" % (", ".join(outcomes), outcome))


class _Stats:
    """One function's numbers on one side.  ``buckets[i]`` counts the
    observations in bucket i alone (cumulated when written); the last one
    those above the highest bound."""

    __slots__ = ("submitted", "outcomes", "buckets", "sum")

    def __init__(self, outcomes: int, buckets: int) -> None:
        self.submitted = 0
        self.outcomes = [0] * outcomes
        self.buckets = [0] * (buckets + 1)
        self.sum = 0.0

    def copy(self) -> "_Stats":
        other = _Stats(0, 0)
        other.submitted, other.sum = self.submitted, self.sum
        other.outcomes, other.buckets = list(self.outcomes), list(self.buckets)
        return other


_CLIENT_FAMILIES = (
    ("gearman_client_jobs_submitted_total", "counter",
     "Jobs this process submitted (do*, do*_background, add_task*)"),
    ("gearman_client_jobs_finished_total", "counter",
     "Foreground jobs that ended for this process's clients, by outcome; also "
     "background submissions that failed (error, timeout)"),
    ("gearman_client_job_duration_seconds", "histogram",
     "From submitting a foreground job to its result (or failure), any outcome"),
)
_WORKER_FAMILIES = (
    ("gearman_worker_jobs_total", "counter",
     "Jobs this process's workers ran, by outcome"),
    ("gearman_worker_job_duration_seconds", "histogram",
     "From a job's arrival at the worker to its reply: the job function's run"),
)


class Recorder:
    """Counters and latency histograms of the jobs a Client submitted and a
    Worker ran, by function: ``client.set_metrics(rec)``,
    ``worker.set_metrics(rec)`` (one Recorder may serve many of both, in
    any threads), then ``rec.text()`` or ``rec.collector()``.

    ``buckets``: the histograms' upper bounds in seconds (``+Inf`` is
    always added).  Only the sides that recorded something are written.
    """

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        bounds = sorted({float(b) for b in buckets if not math.isinf(float(b))})
        if not bounds or any(math.isnan(b) for b in bounds):
            raise ValueError("buckets must hold at least one finite bound")
        self._bounds = tuple(bounds)
        self._lock = threading.Lock()
        # acquire/release in try/finally: half the cost of "with" (~90 against
        # ~165 ns here), on a path every job takes.
        self._acquire, self._release = self._lock.acquire, self._lock.release
        self._client: Dict[str, _Stats] = {}
        self._worker: Dict[str, _Stats] = {}
        self._client_outcome = {name: i for i, name in enumerate(CLIENT_OUTCOMES)}
        self._worker_outcome = {name: i for i, name in enumerate(WORKER_OUTCOMES)}

    @property
    def buckets(self) -> Tuple[float, ...]:
        return self._bounds

    # The calls Client and Worker make: a dict lookup and a few adds under
    # the lock.  finished() and job_done() are twins, not one helper: a
    # Python call less per job.
    def submitted(self, function: str) -> None:
        """A client submitted a job of ``function``."""
        self._acquire()
        try:
            stats = self._client.get(function)
            if stats is None:
                stats = self._new(self._client, function, CLIENT_OUTCOMES)
            stats.submitted += 1
        finally:
            self._release()

    def finished(self, function: str, outcome: str, seconds: float) -> None:
        """A client's job ended: ``outcome`` is one of CLIENT_OUTCOMES."""
        i = self._client_outcome.get(outcome)
        if i is None:
            raise _bad_outcome(CLIENT_OUTCOMES, outcome)
        bucket = bisect_left(self._bounds, seconds)   # le: a bound holds its own value
        self._acquire()
        try:
            stats = self._client.get(function)
            if stats is None:
                stats = self._new(self._client, function, CLIENT_OUTCOMES)
            stats.outcomes[i] += 1
            stats.buckets[bucket] += 1
            stats.sum += seconds
        finally:
            self._release()

    def job_done(self, function: str, outcome: str, seconds: float) -> None:
        """A worker ran a job: ``outcome`` is one of WORKER_OUTCOMES."""
        i = self._worker_outcome.get(outcome)
        if i is None:
            raise _bad_outcome(WORKER_OUTCOMES, outcome)
        bucket = bisect_left(self._bounds, seconds)
        self._acquire()
        try:
            stats = self._worker.get(function)
            if stats is None:
                stats = self._new(self._worker, function, WORKER_OUTCOMES)
            stats.outcomes[i] += 1
            stats.buckets[bucket] += 1
            stats.sum += seconds
        finally:
            self._release()

    def _new(self, side: Dict[str, _Stats], function: str, outcomes: Sequence[str]) -> _Stats:
        if not isinstance(function, str):
            raise TypeError("function must be a str, not %s" % type(function).__name__)
        stats = side[function] = _Stats(len(outcomes), len(self._bounds))
        return stats

    def reset(self) -> None:
        """Forget everything recorded (counters restart from 0)."""
        with self._lock:
            self._client.clear()
            self._worker.clear()

    # --- reading ---------------------------------------------------------------
    def families(self) -> List[MetricFamily]:
        with self._lock:
            client = {f: s.copy() for f, s in self._client.items()}
            worker = {f: s.copy() for f, s in self._worker.items()}
        out: List[MetricFamily] = []
        if client:
            submitted, finished, duration = [MetricFamily(*spec) for spec in _CLIENT_FAMILIES]
            for function in sorted(client):
                stats = client[function]
                submitted.add((("function", function),), stats.submitted)
                self._outcomes(finished, function, CLIENT_OUTCOMES, stats)
                self._histogram(duration, function, stats)
            out += [submitted, finished, duration]
        if worker:
            jobs, duration = [MetricFamily(*spec) for spec in _WORKER_FAMILIES]
            for function in sorted(worker):
                stats = worker[function]
                self._outcomes(jobs, function, WORKER_OUTCOMES, stats)
                self._histogram(duration, function, stats)
            out += [jobs, duration]
        return out

    @staticmethod
    def _outcomes(family: MetricFamily, function: str, names: Sequence[str],
                  stats: _Stats) -> None:
        # Every outcome, 0 included, so that rate() works from the first job.
        for name, count in zip(names, stats.outcomes):
            family.add((("function", function), ("outcome", name)), count)

    def _histogram(self, family: MetricFamily, function: str, stats: _Stats) -> None:
        cumulative = 0
        for bound, count in zip(self._bounds, stats.buckets):
            cumulative += count
            family.add((("function", function), ("le", format_value(bound))),
                       cumulative, "_bucket")
        count = cumulative + stats.buckets[-1]
        family.add((("function", function), ("le", "+Inf")), count, "_bucket")
        family.add((("function", function),), stats.sum, "_sum")
        family.add((("function", function),), count, "_count")

    def text(self) -> str:
        return render(self.families())

    def collector(self) -> Any:
        """A prometheus_client collector of this recorder's numbers."""
        return _collector(self)

    def _declared(self) -> List[MetricFamily]:
        return [MetricFamily(*spec) for spec in _CLIENT_FAMILIES + _WORKER_FAMILIES]

    def __repr__(self) -> str:
        return "<pygear.metrics.Recorder %d client, %d worker functions>" % (
            len(self._client), len(self._worker))

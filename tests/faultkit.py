"""Helpers for the robustness tests (signals, threads, lifetimes, bad input,
fuzzing, faults, memory, several servers): worker processes that can be
SIGKILLed, child Python scripts whose crash shows as a negative return code,
a listening socket that never answers and one that is not Gearman, workers
in threads that record which server ran each job, and RSS measurement.

Run as a module, it is a worker process:

    python -m tests.faultkit serve HOST:PORT[,HOST:PORT] NAME=FUNC ... \
        [--serializer json|raw|failing_loads] [--lenient]

It prints READY once its functions are registered with libgearman, then
calls work() until SIGTERM/SIGKILL.  Strict by default: any exception but
TIMEOUT from work() ends the process with status 3, so a test sees a worker
that did not keep serving.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- job functions served by `serve` -----------------------------------------

def echo(job):
    return job.workload()


def raw_echo(job):
    return job.raw_workload()


def pid(job):
    return os.getpid()


def sleep_mark(job):
    """Workload {"dir": d, "sleep": s}: drop a file named after our pid in d
    (so a test knows which worker holds the job), sleep, return our pid."""
    spec = job.workload()
    with open(os.path.join(spec["dir"], "%d" % os.getpid()), "w") as fh:
        fh.write(job.handle())
    time.sleep(float(spec["sleep"]))
    return os.getpid()


def decode_workload(job):
    """Calls job.workload(), which raises with the failing_loads serializer."""
    return {"got": job.workload()}


def size(job):
    return job.workload_size()


def chatty(job):
    """Every event a client can see before the result: status, data, warning."""
    job.send_status(1, 2)
    job.send_data("chunk")
    job.send_warning("careful")
    job.send_status(2, 2)
    return job.workload()


def boom(job):
    raise ValueError("boom", job.workload())


def fail(job):
    job.send_fail()


def slow_echo(job):
    time.sleep(0.001)
    return job.workload()


def sleepy(job):
    time.sleep(float(job.workload()))
    return job.workload()


def tally(job):
    """Workload {"dir": d, "key": k[, "sleep": s]}: sleep, then append a line
    to d/k, so that a test counts how often each job ran (tally_counts);
    returns k."""
    spec = job.workload()
    if spec.get("sleep"):
        time.sleep(float(spec["sleep"]))
    with open(os.path.join(spec["dir"], spec["key"]), "a") as fh:
        fh.write("%d\n" % os.getpid())
    return spec["key"]


def tally_counts(directory: str) -> Dict[str, int]:
    """How often each key's job ran (tally)."""
    counts = {}
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as fh:
            counts[name] = len(fh.read().split())
    return counts


FUNCTIONS = {"echo": echo, "raw_echo": raw_echo, "pid": pid, "sleep_mark": sleep_mark,
             "decode_workload": decode_workload, "size": size, "chatty": chatty,
             "boom": boom, "fail": fail, "tally": tally, "sleepy": sleepy,
             "slow_echo": slow_echo}


class FailingLoads:
    """A serializer whose loads() always raises (dumps is JSON)."""

    @staticmethod
    def dumps(obj):
        return json.dumps(obj)

    @staticmethod
    def loads(data):
        raise ValueError("failing_loads cannot decode %d bytes" % len(data))


class FailingDumps:
    """A serializer whose dumps() always raises (loads is JSON)."""

    @staticmethod
    def dumps(obj):
        raise RuntimeError("failing_dumps refuses %r" % (obj,))

    @staticmethod
    def loads(data):
        return json.loads(data) if data else None


def _serializer(name: str):
    import pygear
    return {"json": pygear.JSON, "raw": pygear.RAW,
            "failing_loads": FailingLoads()}[name]


def serve(argv: Sequence[str]) -> int:
    import pygear
    servers = argv[0]
    serializer = "json"
    lenient = False
    names: Dict[str, str] = {}
    rest = list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg == "--serializer":
            serializer = rest.pop(0)
        elif arg == "--lenient":
            lenient = True
        else:
            name, _, func = arg.partition("=")
            names[name] = func
    worker = pygear.Worker()
    worker.add_servers(servers)
    worker.set_serializer(_serializer(serializer))
    for name, func in names.items():
        worker.add_function(name, 0, FUNCTIONS[func])
    worker.set_timeout(200)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print("READY", flush=True)
    while True:
        try:
            worker.work()
        except pygear.TIMEOUT:
            continue
        except pygear.GearmanError as exc:
            if not lenient:
                print("work() raised %r" % (exc,), file=sys.stderr, flush=True)
                return 3
            time.sleep(0.05)


# --- starting and stopping processes -------------------------------------------

def child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("GEARMAN_SERVERS", None)
    return env


class WorkerProc:
    """A `serve` child process; stop() always reaps it."""

    def __init__(self, servers: str, functions: Dict[str, str], serializer: str = "json",
                 lenient: bool = False, timeout: float = 20.0) -> None:
        args = [sys.executable, "-m", "tests.faultkit", "serve", servers]
        args += ["%s=%s" % item for item in functions.items()]
        args += ["--serializer", serializer] + (["--lenient"] if lenient else [])
        self.proc = subprocess.Popen(args, cwd=ROOT, env=child_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = _readline(self.proc, timeout)
        if line.strip() != b"READY":
            self.stop()
            raise RuntimeError("worker process did not start: %r %r" % (line, self.stderr()))
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        try:
            return self.proc.stderr.read().decode("utf-8", "replace")
        except Exception:
            return ""


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


def _readline(proc: subprocess.Popen, timeout: float) -> bytes:
    """One line of proc's stdout, or b"" after ``timeout`` seconds."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return b""
        return proc.stdout.readline()
    finally:
        sel.close()


def wait_workers(host: str, port: int, function: str, count: int = 1,
                 timeout: float = 20.0) -> None:
    """Until gearmand lists at least ``count`` workers able to do ``function``."""
    import pygear
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with pygear.Admin(host, port, timeout=2.0) as admin:
                for row in admin.status():
                    if row["function"] == function:
                        last = row["available_workers"]
                        if last >= count:
                            return
        except (OSError, pygear.GearmanError):
            pass
        time.sleep(0.02)
    raise AssertionError("gearmand %s:%d never had %d workers for %s (last %r)"
                         % (host, port, count, function, last))


def run_python(code: str, args: Iterable[str] = (), timeout: float = 60.0,
               input: Optional[bytes] = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (tests importable); a crash shows
    as a negative returncode."""
    return subprocess.run([sys.executable, "-c", code] + list(args), cwd=ROOT,
                          env=child_env(), input=input, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


class Child:
    """A child interpreter running ``code`` (tests importable) whose stdout
    the test reads line by line while it runs; ``finish`` always reaps it,
    and a crash shows as a negative returncode."""

    # a hung child prints where each of its threads is before it is killed
    DUMP = ("import faulthandler as _fh, signal as _sig; "
            "_fh.register(_sig.SIGUSR1, all_threads=True)\n")

    def __init__(self, code: str, args: Iterable[str] = ()) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", self.DUMP + code] +
                                     [str(a) for a in args],
                                     cwd=ROOT, env=child_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self._buffer = b""
        self._seen = b""

    def line(self, timeout: float) -> bytes:
        """The next line of stdout, or b"" at EOF or after ``timeout`` s."""
        import selectors
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return b""
                chunk = os.read(fd, 65536)
                if not chunk:
                    return b""
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        self._seen += line + b"\n"
        return line

    def wait_for(self, prefix: bytes, timeout: float = 20.0) -> bytes:
        """Lines until one starts with ``prefix``; fails the test if none does."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(max(0.0, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line
            if not line and (time.monotonic() >= deadline or self.proc.poll() is not None):
                done = self.finish(5)
                raise AssertionError("the child never printed %r\n%s" % (prefix, describe(done)))

    def signal(self, sig: int = signal.SIGINT) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def finish(self, timeout: float) -> subprocess.CompletedProcess:
        """Wait for the child to exit (killing it after ``timeout`` s: then
        the returncode is -SIGKILL and stderr says it hung)."""
        hung = False
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            hung = True
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
            self.proc.kill()
            out, err = self.proc.communicate(timeout=10)
        if hung:
            err += b"\n[test: the child hung for %.0f s and was killed]" % timeout
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode,
                                           self._seen + self._buffer + out, err)


def calling(target: str) -> str:
    """Child code that runs ``"module:function"`` with the child's argv."""
    module, _, function = target.partition(":")
    return "import sys; from %s import %s as f; sys.exit(f(*sys.argv[1:]))" % (module, function)


def run_child(code: str, args: Iterable[str] = (), timeout: float = 60.0) -> list:
    """Run ``code`` to the end; assert it exited cleanly (status 0, nothing
    printed by a dropped exception) and return its JSON lines."""
    done = Child(code, args).finish(timeout)
    return assert_clean(done)


def assert_clean(done: subprocess.CompletedProcess) -> list:
    assert done.returncode == 0, describe(done)
    assert b"Exception ignored" not in done.stderr, describe(done)
    return json_lines(done.stdout)


def json_lines(stdout: bytes) -> list:
    return [json.loads(line) for line in stdout.decode("utf-8", "replace").splitlines()
            if line.startswith(("{", "["))]


def emit(**fields) -> None:
    """In a child: report ``fields`` as one JSON line, at once (one write,
    so that lines from several threads never mix)."""
    data = (json.dumps(fields, default=repr) + "\n").encode("utf-8")
    while data:
        data = data[os.write(sys.stdout.fileno(), data):]


def outcome_of(call) -> Tuple[str, float]:
    """In a child: run ``call()``; "ok", "refused" (pygear.ERROR) or the
    exception's class name, and how long it took."""
    import pygear
    start = time.monotonic()
    try:
        call()
        what = "ok"
    except pygear.ERROR:
        what = "refused"
    except Exception as exc:
        what = type(exc).__name__
    return what, round(time.monotonic() - start, 3)


class Interrupts:
    """In a child: SIGINT raises KeyboardInterrupt only inside ``guarded``
    calls, so that a storm of them interrupts pygear's calls, not the
    test's own bookkeeping; outside, each is only counted."""

    def __init__(self) -> None:
        self.armed = False
        self.outside = 0
        signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame) -> None:
        if self.armed:
            raise KeyboardInterrupt
        self.outside += 1

    def guarded(self, call) -> Tuple[str, object]:
        """("ok", value), ("KeyboardInterrupt", None) or ("error", repr)."""
        self.armed = True
        try:
            value = call()
            self.armed = False
            return "ok", value
        except KeyboardInterrupt:
            self.armed = False
            return "KeyboardInterrupt", None
        except BaseException as exc:
            self.armed = False
            return "error", repr(exc)
        finally:
            self.armed = False


def sigint_storm(pid: int, seconds: float, gap=(0.002, 0.005)) -> int:
    """SIGINT ``pid`` every 2 to 5 ms for ``seconds``; returns how many were
    sent (fewer when the process ended early)."""
    import random
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            break
        sent += 1
        time.sleep(random.uniform(*gap))
    return sent


def last_json(stdout: bytes):
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        if line.startswith(("{", "[")):
            return json.loads(line)
    raise AssertionError("no JSON line in child output: %r" % stdout[-2000:])


def describe(proc: subprocess.CompletedProcess) -> str:
    rc = proc.returncode
    what = ("killed by %s" % signal.Signals(-rc).name) if rc < 0 else "exit %d" % rc
    return "child %s\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
        what, proc.stdout.decode("utf-8", "replace")[-3000:],
        proc.stderr.decode("utf-8", "replace")[-6000:])


class BlackHole:
    """A TCP port that accepts connections (the kernel does, into the
    backlog) but never reads or answers: every request waits forever."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.host, self.port = self.sock.getsockname()

    @property
    def address(self) -> str:
        return "%s:%d" % (self.host, self.port)

    def close(self) -> None:
        self.sock.close()


class NotGearman:
    """A TCP port where something else listens (memcached, say): it accepts,
    and answers every chunk it reads with ``reply``."""

    def __init__(self, reply: bytes = b"ERROR\r\n", host: str = "127.0.0.1") -> None:
        import threading
        self.reply = reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.host, self.port = self.sock.getsockname()
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="not-gearman")
        self._thread.start()

    @property
    def address(self) -> str:
        return "%s:%d" % (self.host, self.port)

    def _run(self) -> None:
        import select
        peers = []
        while not self._stop.is_set():
            try:
                peer, _ = self.sock.accept()
                peers.append(peer)
                self.connections += 1
            except (socket.timeout, OSError):
                pass
            readable = select.select(peers, [], [], 0.05)[0] if peers else []
            for peer in readable:
                try:
                    chunk = peer.recv(65536)
                    if chunk:
                        peer.sendall(self.reply)
                        continue
                except OSError:
                    pass
                peers.remove(peer)
                peer.close()
        for peer in peers:
            peer.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def dead_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- several servers: workers in threads that say where each job ran -------------

class ServingThread:
    """A pygear Worker over ``servers`` ("h1:p1,h2:p2"), serving
    ``functions`` in a thread of this process until ``stop()``.  Every
    GearmanError but TIMEOUT that escapes work() is kept in ``errors``."""

    def __init__(self, servers: str, functions: Dict[str, Callable],
                 connect_timeout_ms: Optional[int] = None) -> None:
        import threading
        import pygear
        self.servers = servers
        self.worker = pygear.Worker(servers)
        self.worker.set_timeout(100)
        if connect_timeout_ms is not None:
            self.worker.set_connect_timeout(connect_timeout_ms)
        for name, fn in functions.items():
            self.worker.add_function(name, 0, fn)
        self.errors: List[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="serving %s" % servers)

    def start(self) -> "ServingThread":
        self._thread.start()
        return self

    def _run(self) -> None:
        import pygear
        while not self._stop.is_set():
            try:
                self.worker.work()
            except pygear.TIMEOUT:
                pass
            except pygear.GearmanError as exc:
                self.errors.append(exc)
                time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "worker thread on %s did not stop" % self.servers
        self.worker.close()


class ClusterWorkers:
    """One ServingThread per server, each on that server alone, serving
    ``name``: the job returns ``[its server's address, the workload]`` after
    ``delay`` seconds, and every run is recorded as (address, workload)."""

    def __init__(self, addresses: Sequence[str], name: str, delay: float = 0.0) -> None:
        import threading
        self.addresses = list(addresses)
        self.name = name
        self.delay = delay
        self._lock = threading.Lock()
        self.runs: List[tuple] = []
        self.threads = [ServingThread(a, {name: self._job_for(a)}) for a in self.addresses]

    def _job_for(self, address: str) -> Callable:
        def job(job):
            workload = job.workload()
            with self._lock:
                self.runs.append((address, json.dumps(workload)))
            if self.delay:
                time.sleep(self.delay)
            return [address, workload]
        return job

    def start(self) -> "ClusterWorkers":
        for thread in self.threads:
            thread.start()
        for address in self.addresses:
            host, port = split_address(address)
            wait_workers(host, port, self.name)
        return self

    def stop(self) -> None:
        for thread in self.threads:
            thread.stop()

    def per_server(self):
        from collections import Counter
        with self._lock:
            return Counter(address for address, _ in self.runs)

    def executions(self):
        """How many times each workload ran (keyed by its JSON text)."""
        from collections import Counter
        with self._lock:
            return Counter(workload for _, workload in self.runs)


class HeldJob:
    """A worker on one server that takes ``function``'s job and holds it,
    running, at ``numerator``/``denominator`` until close()."""

    def __init__(self, address: str, function: str, numerator: int, denominator: int) -> None:
        import pygear
        self.worker = pygear.Worker(address)
        self.worker.set_timeout(10000)
        self.worker.register(function)
        self.job = self.worker.grab_job()
        self.job.send_status(numerator, denominator)
        self.expected = {"is_known": True, "is_running": True,
                         "numerator": numerator, "denominator": denominator}
        with pygear.Client(address) as c:      # until the server has read the status
            c.set_timeout(5000)
            deadline = time.monotonic() + 5
            while c.job_status(self.job.handle()) != self.expected:
                assert time.monotonic() < deadline, "the status never reached %s" % address
                time.sleep(0.02)

    def close(self) -> None:
        self.job.send_complete(None)
        self.worker.close()


def split_address(address: str):
    host, _, port = address.rpartition(":")
    return host, int(port)


def queued_on(address: str, function: str) -> int:
    """gearmand's count of jobs (queued or running) for ``function`` there."""
    import pygear
    with pygear.Admin(address, timeout=5) as admin:
        for row in admin.status():
            if row["function"] == function:
                return row["total"]
    return 0


def handles_on(address: str) -> Dict[str, dict]:
    """The jobs a gearmand holds (admin show jobs), by handle."""
    import pygear
    with pygear.Admin(address, timeout=5) as admin:
        return {j["handle"]: j for j in admin.show_jobs()}


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        sys.exit(serve(sys.argv[2:]))
    sys.exit("usage: python -m tests.faultkit serve HOST:PORT NAME=FUNC ...")


def serve_echo(gearmand, prefix: str, count: int = 1, lenient: bool = False):
    """Body of a module fixture: ``count`` worker processes serving echo
    under a fresh name, which it yields; they stop after the module."""
    yield from serve_function(gearmand, prefix, "echo", count, lenient)


def serve_function(gearmand, prefix: str, func: str, count: int = 1, lenient: bool = False,
                   serializer: str = "json"):
    """The same for any of FUNCTIONS (``func``)."""
    from pygear.testing import unique_name
    name = unique_name(prefix)
    procs = [WorkerProc(gearmand.address, {name: func}, serializer=serializer,
                        lenient=lenient) for _ in range(count)]
    try:
        wait_workers(gearmand.host, gearmand.port, name, count)
        yield name
    finally:
        for proc in procs:
            proc.stop()


class ServeInThread:
    """``with ServeInThread(worker):`` the worker's work() runs in a thread
    (idle timeouts ignored) until the block ends."""

    def __init__(self, worker) -> None:
        import threading
        self.worker = worker
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        import pygear
        while not self.stop.is_set():
            try:
                self.worker.work()
            except pygear.TIMEOUT:
                pass

    def __enter__(self) -> "ServeInThread":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


def connected_client(gearmand, timeout: int):
    import pygear
    c = pygear.Client()
    c.add_server(gearmand.host, gearmand.port)
    c.set_timeout(timeout)
    return c

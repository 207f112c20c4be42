"""Run the benchmark suite: ``python -m bench [--quick] [--rounds N]
[--scenarios NAME ...] [--python INTERPRETER ...] [--json FILE]``.

Every scenario runs its contenders in alternating rounds against one
private gearmand; each contender is a separate process (so a Python client
and a Python worker never share a GIL) that prints the seconds its timed
part took.  The report gives median operations per second per contender and
the median of the per-round ratios contender/C.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(HERE, ".build")
sys.path.insert(0, ROOT)

from pygear._server import GearmandProcess  # noqa: E402

KIB = 1024
MIB = 1024 * KIB


@dataclass
class Scenario:
    name: str
    kind: str          # "client": contenders are clients; "worker": contenders are workers
    mode: str          # the client's mode: do | tasks | background
    size: int
    count: int
    quick_count: int
    title: str
    json_row: bool = False


SCENARIOS = [
    Scenario("do", "client", "do", 100, 5000, 1500, "sequential do, 100 B", json_row=True),
    Scenario("tasks", "client", "tasks", 100, 20000, 5000, "add_task x N + run_tasks, 100 B"),
    Scenario("background", "client", "background", 100, 10000, 3000,
             "sequential do_background, 100 B"),
    Scenario("worker", "worker", "tasks", 100, 20000, 5000,
             "worker: C client's batch, 100 B"),
    Scenario("do_64k", "client", "do", 64 * KIB, 1000, 300, "sequential do, 64 KiB"),
    Scenario("do_1m", "client", "do", MIB, 10, 4, "sequential do, 1 MiB"),
    Scenario("worker_1m", "worker", "tasks", MIB, 10, 4, "worker: C client's batch, 1 MiB"),
]
# Rows that bench/aio.py runs (its own contenders and reference): named
# with --scenarios like the others, and part of a full run.
AIO_ROWS = ["aio_client", "aio_worker"]
BACKGROUND_FN = "bench_background"   # no worker: the jobs stay queued
FLOOR = "libgearman's own call via ctypes"


@dataclass
class Contender:
    label: str
    argv_for: object            # (scenario, count, gearmand port) -> argv
    results: Dict[str, List[float]] = field(default_factory=dict)
    pythonpath: str = ROOT      # where its pygear comes from (--baseline: another checkout)
    worker_pid: Optional[int] = None   # worker scenarios: the process whose CPU is counted


# ----------------------------------------------------------------- set-up


def build_c(quiet: bool = False) -> Optional[str]:
    """Build bench/c/*.c into bench/.build; None (with the reason printed)
    when there is no compiler or no libgearman headers."""
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if cc is None:
        print("C reference: no C compiler; reporting Python rows only")
        return None
    os.makedirs(BUILD, exist_ok=True)
    for name in ("client", "worker"):
        src = os.path.join(HERE, "c", name + ".c")
        out = os.path.join(BUILD, name)
        if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(src):
            continue
        proc = subprocess.run([cc, "-O2", "-Wall", "-o", out, src, "-lgearman"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print("C reference: cannot build %s (libgearman headers missing?):\n%s"
                  % (name, proc.stderr.strip()))
            return None
    return BUILD


def machine_info(pythons: List[str]) -> Dict[str, str]:
    info = {"nproc": str(os.cpu_count()), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for py in pythons:
        out = subprocess.run([py, "-c", "import sys,platform;print(platform.python_implementation(),"
                              "platform.python_version())"], capture_output=True, text=True)
        info["python " + py] = out.stdout.strip()
    import pygear
    info["libgearman"] = pygear.libgearman_version()
    try:
        import gear  # noqa: F401
        from importlib.metadata import version
        info["gear"] = version("gear")
    except Exception:
        info["gear"] = "not installed"
    return info


def wait_registered(host: str, port: int, function: str, timeout: float = 20.0) -> None:
    from pygear import Admin
    deadline = time.monotonic() + timeout
    with Admin(host, port) as admin:
        while True:
            for row in admin.status():
                if row["function"] == function and row["available_workers"] > 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("no worker registered %r within %.0fs" % (function, timeout))
            time.sleep(0.05)


def python_env(pythonpath: str = ROOT) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


PEERS = os.path.join(HERE, "peers.py")   # run as a script: its pygear is PYTHONPATH's


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def short_name(py: str) -> str:
    out = subprocess.run([py, "-c", "import platform;print(platform.python_implementation())"],
                         capture_output=True, text=True).stdout.strip()
    return "PyPy" if out == "PyPy" else "CPython"


def has_gear(py: str) -> bool:
    return subprocess.run([py, "-c", "import gear"], capture_output=True).returncode == 0


# ----------------------------------------------------------------- running


def run_timed(argv: List[str], timeout: float, pythonpath: str = ROOT):
    """(elapsed seconds, CPU seconds of that process or None)."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=python_env(pythonpath), cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), proc.returncode,
                                                   (proc.stderr or proc.stdout).strip()[-2000:]))
    fields = proc.stdout.strip().splitlines()[-1].split()
    return float(fields[0]), (float(fields[1]) if len(fields) > 1 else None)


def run_contender(c: Contender, s: Scenario, count: int, timeout: float, port: int):
    """(elapsed, CPU seconds of the process under test or None)."""
    if c.worker_pid is not None:
        before = cpu_seconds(c.worker_pid)
        elapsed, _ = run_timed(c.argv_for(s, count, port), timeout)
        return elapsed, cpu_seconds(c.worker_pid) - before
    return _run_client(c, s, count, timeout, port)


def _run_client(c: Contender, s: Scenario, count: int, timeout: float, port: int):
    """One timed run.  A background run gets a gearmand of its own: the jobs
    stay queued, and each submission gets slower as gearmand's queue grows
    (its job hash tables have 991 buckets by default), which would favour
    whichever contender ran first."""
    if s.mode != "background":
        return run_timed(c.argv_for(s, count, port), timeout, c.pythonpath)
    server = GearmandProcess().start()
    try:
        return run_timed(c.argv_for(s, count, server.port), timeout, c.pythonpath)
    finally:
        server.stop()


def run_suite(args) -> int:
    pythons = args.python or [sys.executable] + ([p] if (p := shutil.which("pypy3")) else [])
    cdir = build_c()
    scenarios = [s for s in SCENARIOS if not args.scenarios or s.name in args.scenarios]
    rounds = args.rounds or (3 if args.quick else 5)
    info = machine_info(pythons)
    server = GearmandProcess().start()
    host, port = server.host, server.port
    workers: List[subprocess.Popen] = []
    env = python_env()
    try:
        info["gearmand"] = _gearmand_version(host, port)
        # --- the fixed peers and the workers under test
        worker_fns: Dict[str, str] = {}    # contender label -> function it serves
        worker_pids: Dict[str, int] = {}   # contender label -> its worker process
        if cdir:
            worker_fns["C (libgearman)"] = "echo_c"
            workers.append(subprocess.Popen([os.path.join(cdir, "worker"), "echo_c", host, str(port)]))
        gear_py = next((py for py in pythons if has_gear(py)), None)
        labels = {}
        for i, py in enumerate(pythons):
            label = "pygear" if i == 0 else "pygear (%s)" % short_name(py)
            if label in labels.values():
                label = "pygear (%s)" % py
            labels[py] = label
            fn = "echo_py%d" % i
            worker_fns[label] = fn
            workers.append(subprocess.Popen([py, PEERS, "worker", "pygear", "raw",
                                             fn, host, str(port)], env=env, cwd=ROOT))
            worker_pids[label] = workers[-1].pid
        if args.baseline:
            worker_fns[BASELINE] = "echo_baseline"
            workers.append(subprocess.Popen([pythons[0], PEERS, "worker", "pygear", "raw",
                                             "echo_baseline", host, str(port)],
                                            env=python_env(args.baseline), cwd=ROOT))
            worker_pids[BASELINE] = workers[-1].pid
        if gear_py:
            worker_fns["gear"] = "echo_gear"
            workers.append(subprocess.Popen([gear_py, "-m", "bench.peers", "worker", "gear", "raw",
                                             "echo_gear", host, str(port)], env=env, cwd=ROOT))
        for fn in worker_fns.values():
            wait_registered(host, port, fn)
        peer_fn = "echo_c" if cdir else worker_fns[labels[pythons[0]]]
        # The client every worker scenario uses: C's, else pygear's.
        if cdir:
            def batch_client(s, n, fn, port=port):
                return [os.path.join(cdir, "client"), s.mode, fn, str(s.size), str(n), host, str(port)]
        else:
            def batch_client(s, n, fn, port=port):
                return [pythons[0], "-m", "bench.peers", "client", "pygear", "raw", s.mode, fn,
                        str(s.size), str(n), host, str(port)]

        def client_fn(s):
            return BACKGROUND_FN if s.mode == "background" else peer_fn

        results = []
        started = time.monotonic()
        for s in scenarios:
            count = s.quick_count if args.quick else s.count
            contenders: List[Contender] = []
            if s.kind == "client":
                if cdir:
                    contenders.append(Contender("C (libgearman)", lambda s, n, port=port: [
                        os.path.join(cdir, "client"), s.mode, client_fn(s), str(s.size), str(n),
                        host, str(port)]))
                for py in pythons:
                    contenders.append(Contender(labels[py], lambda s, n, port=port, py=py: [
                        py, PEERS, "client", "pygear", "raw", s.mode, client_fn(s),
                        str(s.size), str(n), host, str(port)]))
                    if args.baseline and py == pythons[0]:
                        contenders.append(Contender(BASELINE, lambda s, n, port=port, py=py: [
                            py, PEERS, "client", "pygear", "raw", s.mode, client_fn(s),
                            str(s.size), str(n), host, str(port)], pythonpath=args.baseline))
                    if s.json_row and py == pythons[0]:
                        contenders.append(Contender(labels[py] + " JSON", lambda s, n, port=port, py=py: [
                            py, "-m", "bench.peers", "client", "pygear", "json", s.mode,
                            client_fn(s), str(s.size), str(n), host, str(port)]))
                if s.mode in ("do", "background") and s.size < KIB:
                    # No library at all: the floor for any ctypes binding.
                    contenders.append(Contender(FLOOR, lambda s, n, port=port: [
                        pythons[0], "-m", "bench.peers", "client", "floor", "raw", s.mode,
                        client_fn(s), str(s.size), str(n), host, str(port)]))
                if s.size >= 64 * KIB:
                    # Both ends pygear: no libgearman-sized socket buffer on
                    # either side (see pygear/_sockets.py).
                    py = pythons[0]
                    contenders.append(Contender(labels[py] + " <-> pygear worker", lambda s, n, port=port, py=py: [
                        py, "-m", "bench.peers", "client", "pygear", "raw", s.mode,
                        worker_fns[labels[py]], str(s.size), str(n), host, str(port)]))
                if gear_py:
                    contenders.append(Contender("gear", lambda s, n, port=port: [
                        gear_py, "-m", "bench.peers", "client", "gear", "raw", s.mode,
                        client_fn(s), str(s.size), str(n), host, str(port)]))
            else:
                for label, fn in worker_fns.items():
                    contenders.append(Contender(label, lambda s, n, port=port, fn=fn: batch_client(s, n, fn, port),
                                                worker_pid=worker_pids.get(label)))
            print("\n== %s (%d ops x %d rounds)" % (s.title, count, rounds), flush=True)
            per_round: List[Dict[str, float]] = []
            cpu_round: List[Dict[str, float]] = []
            for r in range(rounds):
                row, cpu_row = {}, {}
                order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
                for c in order:
                    try:
                        elapsed, cpu = run_contender(c, s, count, args.timeout, port)
                        row[c.label] = count / elapsed
                        if cpu is not None:
                            cpu_row[c.label] = cpu / count * 1e6
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        print("  %s: %s" % (c.label, str(exc).splitlines()[0][:300]), flush=True)
                        row[c.label] = None
                per_round.append(row)
                cpu_round.append(cpu_row)
                print("  round %d: %s" % (r + 1, "  ".join(
                    "%s=%s" % (k, "fail" if v is None else "%.0f" % v) for k, v in row.items())),
                    flush=True)
            results.append(summarize(s, count, rounds, contenders, per_round, cpu_round))
        info["elapsed"] = "%.0f s" % (time.monotonic() - started)
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        server.stop()
    report = render(info, results, args)
    print("\n" + report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": results}, f, indent=1)
    return 0


def _gearmand_version(host: str, port: int) -> str:
    from pygear import Admin
    with Admin(host, port) as admin:
        return admin.version()


REFERENCE = "C (libgearman)"
BASELINE = "pygear (baseline)"


def summarize(s: Scenario, count: int, rounds: int, contenders, per_round, cpu_round) -> dict:
    rows = []
    for c in contenders:
        ops = [r[c.label] for r in per_round if r.get(c.label)]
        ratios = [r[c.label] / r[REFERENCE] for r in per_round
                  if r.get(c.label) and r.get(REFERENCE)]
        cpus = [r[c.label] for r in cpu_round if r.get(c.label)]
        rows.append({"label": c.label,
                     "median_ops": statistics.median(ops) if ops else None,
                     "min_ops": min(ops) if ops else None,
                     "max_ops": max(ops) if ops else None,
                     "completed": len(ops),
                     "ratio": statistics.median(ratios) if ratios else None,
                     "cpu_us": statistics.median(cpus) if cpus else None})
    return {"scenario": s.name, "title": s.title, "count": count, "rounds": rounds, "rows": rows}


def render(info, results, args) -> str:
    lines = ["| scenario | contender | median ops/s | (min - max) | ratio vs C | CPU us/op |",
             "|---|---|---:|---:|---:|---:|"]
    for res in results:
        for row in res["rows"]:
            if row["median_ops"] is None:
                lines.append("| %s | %s | did not complete | | |" % (res["title"], row["label"]))
                continue
            ratio = "" if row["label"] == REFERENCE or row["ratio"] is None else "%.2f" % row["ratio"]
            cpu = "" if row.get("cpu_us") is None else "%.1f" % row["cpu_us"]
            lines.append("| %s | %s | %.0f | %.0f - %.0f | %s | %s |" % (
                res["title"], row["label"], row["median_ops"], row["min_ops"], row["max_ops"],
                ratio, cpu))
    head = ["Machine: " + ", ".join("%s: %s" % kv for kv in info.items()),
            "Command: python -m bench " + " ".join(sys.argv[1:]), ""]
    return "\n".join(head + lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0],
        epilog="Also: python -m bench.cluster (one client over three gearmands against one "
        "over one, the spread, failover after a SIGKILL); python -m bench.aio (the aio rows "
        "alone); python -m bench.inprocess "
        "(pygear against libgearman's own calls, one process).  See BENCHMARKS.md.")
    parser.add_argument("--quick", action="store_true", help="fewer operations and rounds (~2 min)")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 5, quick 3)")
    parser.add_argument("--scenarios", nargs="+", choices=[s.name for s in SCENARIOS] + AIO_ROWS,
                        help="run only these scenarios (aio_client, aio_worker: bench/aio.py)")
    parser.add_argument("--python", nargs="+",
                        help="interpreters for the pygear side (default: this one, and pypy3)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run before giving up")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also run the pygear of another checkout (e.g. a git worktree of "
                             "an older commit) as \"%s\", in the same rounds" % BASELINE)
    args = parser.parse_args(argv)
    wanted = args.scenarios or [s.name for s in SCENARIOS] + AIO_ROWS
    aio_rows = [name for name in wanted if name in AIO_ROWS]
    rc = 0
    if len(aio_rows) < len(wanted):
        if args.scenarios:
            args.scenarios = [name for name in wanted if name not in AIO_ROWS]
        rc = run_suite(args)
    if aio_rows:
        from bench import aio
        extra = ["--quick"] if args.quick else []
        extra += ["--rounds", str(args.rounds)] if args.rounds else []
        if args.json and len(aio_rows) == len(wanted):
            extra += ["--json", args.json]
        rc = aio.main(["--rows"] + aio_rows + ["--timeout", str(args.timeout)] + extra,
                      command="python -m bench " + " ".join(sys.argv[1:])) or rc
    return rc


if __name__ == "__main__":
    sys.exit(main())

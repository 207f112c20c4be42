"""pygear.aio against the blocking API, C and aiogear.

    python -m bench.aio [--quick] [--rounds N] [--rows aio_client aio_worker] [--json FILE]

Two rows, each run in alternating (rotating) rounds against one private
gearmand, every contender a process of its own, as in ``python -m bench``:

- **aio_client**: 2,000 jobs of 100 B in flight at once against a C echo
  worker (bench/c/worker.c): ``asyncio.gather`` of 2,000 ``aio.Client.do()``
  against the blocking Client's ``add_task`` x 2,000 + ``run_tasks()`` on
  the same work, libgearman's own batch in C (the reference: ratios are
  against it), and aiogear (PyPI) when it is installed, else the reason is
  printed.  ops/s and the client process's CPU per op.
- **aio_worker**: jobs that sleep 10 ms (``asyncio.sleep``), submitted as
  one batch by the C client (or pygear's when there is no compiler), served
  by ``aio.Worker.serve(concurrency=1)`` and ``concurrency=50``; a blocking
  pygear.Worker (``time.sleep``) is the reference.  ops/s and the worker
  process's CPU per op.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from bench.__main__ import build_c, cpu_seconds, python_env, run_timed, wait_registered  # noqa: E402
from bench.peers import make_payload  # noqa: E402
from pygear._server import GearmandProcess  # noqa: E402

SIZE = 100
IN_FLIGHT = 2000
SLEEP = 0.01


# ---------------------------------------------------------------- the processes

def client_main(lib: str, fn: str, count: int, host: str, port: int) -> None:
    """``count`` do() at once through ``lib`` (aio or aiogear); prints "elapsed cpu"."""
    payload = make_payload(SIZE, "raw")
    run = {"aio": _aio_client, "aiogear": _aiogear_client}[lib]
    cpu = time.process_time()
    elapsed = asyncio.run(run(fn, payload, count, host, port))
    print("%.6f %.6f" % (elapsed, time.process_time() - cpu), flush=True)


async def _aio_client(fn: str, payload: bytes, count: int, host: str, port: int) -> float:
    import pygear
    from pygear import aio
    async with aio.Client("%s:%d" % (host, port)) as c:
        c.set_serializer(pygear.RAW)
        c.set_timeout(120000)
        await c.do(fn, payload)                    # connected before timing
        start = time.perf_counter()
        results = await asyncio.gather(*(c.do(fn, payload) for _ in range(count)))
        elapsed = time.perf_counter() - start
    if any(r != payload for r in results):
        raise SystemExit("aio: a wrong result")
    return elapsed


async def _aiogear_client(fn: str, payload: bytes, count: int, host: str, port: int) -> float:
    from aiogear import Client
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(Client, host, port)

    async def do() -> object:
        created = await client.submit_job(fn, payload)
        return await client.wait_job(created.handle)   # no await in between: still there

    await do()
    start = time.perf_counter()
    results = await asyncio.gather(*(do() for _ in range(count)))
    elapsed = time.perf_counter() - start
    transport.close()
    # aiogear hands each WORK_COMPLETE to the oldest waiter, whoever's job it
    # was: the count is checked, not which result went where.
    if len(results) != count:
        raise SystemExit("aiogear: %d of %d results" % (len(results), count))
    return elapsed


def worker_main(kind: str, concurrency: int, fn: str, host: str, port: int) -> None:
    """Serve ``fn`` (sleep 10 ms, return the workload) until killed."""
    import pygear
    if kind == "blocking":
        w = pygear.Worker("%s:%d" % (host, port))
        w.set_serializer(pygear.RAW)

        def nap(job):
            time.sleep(SLEEP)
            return job.raw_workload()
        w.add_function(fn, nap)
        w.serve()
        return
    from pygear import aio
    aw = aio.Worker("%s:%d" % (host, port))
    aw.set_serializer(pygear.RAW)

    @aw.function(fn)
    async def anap(job):
        await asyncio.sleep(SLEEP)
        return job.raw_workload()
    asyncio.run(aw.serve(concurrency=concurrency))


def aiogear_missing(py: str) -> Optional[str]:
    """Why aiogear cannot run here (None when it can)."""
    out = subprocess.run([py, "-c", "import aiogear"], capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["import failed"])[-1]
        return "aiogear is not importable (pip install aiogear): %s" % last
    return None


# ---------------------------------------------------------------- the driver

def _me(*args: str) -> List[str]:
    return [sys.executable, "-m", "bench.aio"] + [str(a) for a in args]


def rounds_of(title: str, contenders: Dict[str, tuple], rounds: int, timeout: float) -> dict:
    """contenders: label -> (argv, count, pid whose CPU counts or None).
    Rotating order each round; ops/s and CPU us/op per contender."""
    labels = list(contenders)
    ops: Dict[str, List[float]] = {label: [] for label in labels}
    cpus: Dict[str, List[float]] = {label: [] for label in labels}
    per_round: List[Dict[str, float]] = []
    print("\n== %s (%d rounds)" % (title, rounds), flush=True)
    for r in range(rounds):
        order = labels[r % len(labels):] + labels[:r % len(labels)]
        row: Dict[str, float] = {}
        for label in order:
            argv, count, pid = contenders[label]
            try:
                before = cpu_seconds(pid) if pid else None
                elapsed, cpu = run_timed(argv, timeout)
                if pid:
                    cpu = cpu_seconds(pid) - before
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print("  %s: %s" % (label, str(exc).splitlines()[0][:300]), flush=True)
                continue
            row[label] = count / elapsed
            ops[label].append(count / elapsed)
            if cpu is not None:
                cpus[label].append(cpu / count * 1e6)
        per_round.append(row)
        print("  round %d: %s" % (r + 1, "  ".join("%s=%.0f" % kv for kv in row.items())),
              flush=True)
    reference = labels[0]
    result = []
    for label in labels:
        ratios = [row[label] / row[reference] for row in per_round
                  if label in row and reference in row]
        result.append({"label": label,
                       "median_ops": statistics.median(ops[label]) if ops[label] else None,
                       "min_ops": min(ops[label]) if ops[label] else None,
                       "max_ops": max(ops[label]) if ops[label] else None,
                       "ratio": statistics.median(ratios) if ratios else None,
                       "cpu_us": statistics.median(cpus[label]) if cpus[label] else None})
    return {"title": title, "reference": reference, "rows": result}


def render(results: List[dict], command: str) -> str:
    lines = ["| row | contender | median ops/s | (min - max) | ratio vs reference | CPU us/op |",
             "|---|---|---:|---:|---:|---:|"]
    for res in results:
        for row in res["rows"]:
            if row["median_ops"] is None:
                lines.append("| %s | %s | did not complete | | | |" % (res["title"], row["label"]))
                continue
            ratio = "(reference)" if row["label"] == res["reference"] else "%.2f" % row["ratio"]
            cpu = "" if row["cpu_us"] is None else "%.1f" % row["cpu_us"]
            lines.append("| %s | %s | %.0f | %.0f - %.0f | %s | %s |" % (
                res["title"], row["label"], row["median_ops"], row["min_ops"], row["max_ops"],
                ratio, cpu))
    return "\n".join(["Command: " + command, ""] + lines)


def run_suite(args) -> int:
    cdir = build_c()
    rounds = args.rounds or (3 if args.quick else 5)
    server = GearmandProcess().start()
    host, port = server.host, server.port
    procs: List[subprocess.Popen] = []
    env = python_env()
    results = []
    try:
        if "aio_client" in args.rows:
            if cdir:
                procs.append(subprocess.Popen([os.path.join(cdir, "worker"), "echo_c",
                                               host, str(port)]))
                echo = "echo_c"
            else:
                procs.append(subprocess.Popen([sys.executable, "-m", "bench.peers", "worker",
                                               "pygear", "raw", "echo_py", host, str(port)],
                                              env=env, cwd=ROOT))
                echo = "echo_py"
            wait_registered(host, port, echo)
            n = IN_FLIGHT
            contenders = {}
            if cdir:
                contenders["C (libgearman) run_tasks"] = (
                    [os.path.join(cdir, "client"), "tasks", echo, str(SIZE), str(n), host,
                     str(port)], n, None)
            contenders["pygear Client run_tasks"] = (
                [sys.executable, "-m", "bench.peers", "client", "pygear", "raw", "tasks", echo,
                 str(SIZE), str(n), host, str(port)], n, None)
            contenders["pygear.aio gather(do)"] = (_me("client", "aio", echo, n, host, port),
                                                   n, None)
            why = aiogear_missing(sys.executable)
            if why is None:
                contenders["aiogear gather(submit_job)"] = (
                    _me("client", "aiogear", echo, n, host, port), n, None)
            else:
                print("aiogear column skipped: %s" % why, flush=True)
            results.append(rounds_of("%d do() in flight, 100 B" % n, contenders, rounds,
                                     args.timeout))
        if "aio_worker" in args.rows:
            workers = {"blocking pygear.Worker": ("blocking", 1, "nap_blocking"),
                       "aio.Worker concurrency=1": ("aio", 1, "nap_aio1"),
                       "aio.Worker concurrency=50": ("aio", 50, "nap_aio50")}
            counts = {1: 100 if args.quick else 200, 50: 1000 if args.quick else 2000}
            contenders = {}
            for label, (kind, conc, fn) in workers.items():
                procs.append(subprocess.Popen(_me("worker", kind, conc, fn, host, port),
                                              env=env, cwd=ROOT))
                n = counts[conc]
                if cdir:
                    argv = [os.path.join(cdir, "client"), "tasks", fn, str(SIZE), str(n), host,
                            str(port)]
                else:
                    argv = [sys.executable, "-m", "bench.peers", "client", "pygear", "raw",
                            "tasks", fn, str(SIZE), str(n), host, str(port)]
                contenders[label] = (argv, n, procs[-1].pid)
            for kind, conc, fn in workers.values():
                wait_registered(host, port, fn)
            results.append(rounds_of("jobs sleeping 10 ms, served by", contenders, rounds,
                                     args.timeout))
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(10)
        server.stop()
    report = render(results, args.command or "python -m bench.aio " + " ".join(sys.argv[1:]))
    print("\n" + report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def main(argv=None, command: Optional[str] = None) -> int:
    """``command``: what the report says was run (python -m bench passes its own)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:
        lib, fn, count, host, port = argv[1:6]
        client_main(lib, fn, int(count), host, int(port))
        return 0
    if argv[:1] == ["worker"]:
        kind, concurrency, fn, host, port = argv[1:6]
        worker_main(kind, int(concurrency), fn, host, int(port))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.aio",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs and rounds")
    parser.add_argument("--rounds", type=int, help="rounds per row (default 5, quick 3)")
    parser.add_argument("--rows", nargs="+", choices=["aio_client", "aio_worker"],
                        default=["aio_client", "aio_worker"], help="run only these rows")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    args.command = command
    return run_suite(args)


if __name__ == "__main__":
    sys.exit(main())

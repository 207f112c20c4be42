"""One pygear client over three gearmands against one client over one.

    python -m bench.cluster [--quick] [--rounds N] [--json FILE]

Starts three private gearmands, each served by a C echo worker
(bench/c/worker.c, built as the main suite builds it), and measures:

- **throughput**: sequential ``do()`` of 100 B, and one ``run_tasks()``
  over a batch of N tasks, by a client over one server and by a client
  over all three (and, for do(), over all three with one unique key, so
  that every job goes to one server: what the placement itself costs), in
  alternating rounds, each client a process of its own (ops/s, and the CPU
  the client process used per op);
- **spread**: how many jobs each server got, from gearmand's own count
  (``do_background`` without a worker: the jobs stay queued, and admin
  ``status`` counts them) and from ``Task.server()`` for the batch; the
  report gives the max/min ratio;
- **in one process**: the same do() loop, clients over 1 and 3 servers in
  alternating blocks (steadier than separate processes on a busy machine);
- **failover**: a client calls ``do()`` in a loop, one server is
  SIGKILLed: the time until pygear noticed, until the first job answered
  by another server, and the stall (from the last answer before the kill
  to that one).  With a
  unique key whose server is the victim, every call was going there, so
  this is the time to notice the death and re-send; without keys
  (round-robin) the next call may go elsewhere anyway.

Both sides of every comparison run in the same rounds on the same
servers; the machine's noise (BENCHMARKS.md) applies.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from bench.__main__ import build_c, python_env, wait_registered  # noqa: E402
from bench.peers import make_payload  # noqa: E402
from pygear._server import GearmandCluster  # noqa: E402

ECHO = "echo_c"
SIZE = 100


# ---------------------------------------------------------------- the client processes

def client_main(mode: str, servers: str, count: int, fn: str, key: str = "") -> None:
    """Time ``count`` operations (``key``: every do() with that unique key);
    print the spread as JSON, then "elapsed cpu" (the last line)."""
    import pygear
    client = pygear.Client(servers)
    client.set_serializer(pygear.RAW)
    client.set_timeout(120000)
    client.echo(b"ping")
    payload = make_payload(SIZE, "raw")
    spread: Counter = Counter()
    cpu = time.process_time()
    start = time.perf_counter()
    if mode == "do":
        do, unique = client.do, key or None
        for _ in range(count):
            result = do(fn, payload, unique)
        elapsed = time.perf_counter() - start
        if result != payload:
            raise SystemExit("do: wrong result")
    elif mode == "tasks":
        tasks = [client.add_task(fn, payload) for _ in range(count)]
        client.run_tasks()
        elapsed = time.perf_counter() - start
        if any(t.data_size() != SIZE for t in tasks):
            raise SystemExit("tasks: a task has no result")
        spread.update(t.server() for t in tasks)
    elif mode == "background":
        bg = client.do_background
        for _ in range(count):
            bg(fn, payload)
        elapsed = time.perf_counter() - start
    else:
        raise SystemExit("unknown mode %s" % mode)
    cpu = time.process_time() - cpu
    client.close()
    print(json.dumps(dict(spread)))
    print("%.6f %.6f" % (elapsed, cpu), flush=True)


def failover_main(servers: str, key: str, seconds: float) -> None:
    """do() in a loop for ``seconds``; print READY first, then, at the end,
    JSON {"answers": [monotonic time of each answer], "downs": [when pygear
    logged a server down], "errors": [...]}."""
    import logging
    import pygear
    downs: List[float] = []

    class Downs(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if " is down: " in record.getMessage():
                downs.append(time.monotonic())

    logging.getLogger("pygear").addHandler(Downs(logging.WARNING))
    client = pygear.Client(servers)
    client.set_serializer(pygear.RAW)
    client.set_timeout(10000)
    client.echo(b"ping")
    payload = make_payload(SIZE, "raw")
    unique = key or None
    answers: List[float] = []
    errors: List[str] = []
    print("READY", flush=True)
    end = time.monotonic() + seconds
    now = time.monotonic
    while now() < end:
        try:
            client.do(ECHO, payload, unique)
            answers.append(now())
        except pygear.GearmanError as exc:
            errors.append("%.6f %s" % (now(), exc))
    client.close()
    print(json.dumps({"answers": answers, "downs": downs, "errors": errors}), flush=True)


# ---------------------------------------------------------------- the driver

def _python(*args: str) -> List[str]:
    return [sys.executable, "-m", "bench.cluster"] + list(args)


def run_client(mode: str, servers: List[str], count: int, fn: str, timeout: float,
               key: str = ""):
    proc = subprocess.run(_python("client", mode, ",".join(servers), str(count), fn, key),
                          capture_output=True, text=True, timeout=timeout,
                          env=python_env(), cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError("client failed (%d): %s" % (proc.returncode, proc.stderr[-2000:]))
    lines = proc.stdout.strip().splitlines()
    elapsed, cpu = (float(x) for x in lines[-1].split())
    return elapsed, cpu, json.loads(lines[-2])


def queued(address: str, fn: str) -> int:
    from pygear import Admin
    with Admin(address, timeout=10) as admin:
        return next((r["total"] for r in admin.status() if r["function"] == fn), 0)


def victim_key(addresses: List[str], victim: str) -> str:
    """A unique key whose rendezvous server among ``addresses`` is ``victim``."""
    from pygear._placement import weight
    for i in range(100000):
        key = "bench-%d" % i
        if max(addresses, key=lambda a: weight(key.encode(), a)) == victim:
            return key
    raise RuntimeError("no key found")


def spread_ratio(counts: Dict[str, int], addresses: List[str]) -> float:
    values = [counts.get(a, 0) for a in addresses]
    return max(values) / max(min(values), 1)


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.cluster = GearmandCluster(3)
        self.workers: Dict[int, subprocess.Popen] = {}
        self.cdir: Optional[str] = None

    def start_worker(self, i: int) -> None:
        server = self.cluster.servers[i]
        self.workers[i] = subprocess.Popen(
            [os.path.join(self.cdir, "worker"), ECHO, server.host, str(server.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_registered(server.host, server.port, ECHO)

    def stop_worker(self, i: int) -> None:
        proc = self.workers.pop(i)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def run(self) -> dict:
        self.cdir = build_c()
        if self.cdir is None:
            raise SystemExit("bench.cluster needs the C worker (a compiler and libgearman headers)")
        self.cluster.start()
        try:
            for i in range(len(self.cluster)):
                self.start_worker(i)
            # the spread's jobs stay queued: it runs last
            return {"throughput": self.throughput(), "inprocess": self.inprocess(),
                    "failover": self.failover(), "spread": self.spread()}
        finally:
            for i in list(self.workers):
                self.stop_worker(i)
            self.cluster.stop()

    def throughput(self) -> List[dict]:
        args, addresses = self.args, self.cluster.addresses
        rounds = args.rounds or (3 if args.quick else 5)
        rows = []
        for mode, count in (("do", 1500 if args.quick else 5000),
                            ("tasks", 5000 if args.quick else 20000)):
            contenders = {"1 server": (addresses[:1], ""), "3 servers": (addresses, "")}
            if mode == "do":
                # every job to one server by its key: the placement's cost alone
                contenders["3 servers, one key"] = (addresses, "bench-one-key")
            ops: Dict[str, List[float]] = {k: [] for k in contenders}
            cpu: Dict[str, List[float]] = {k: [] for k in contenders}
            ratios: Dict[str, List[float]] = {}
            spreads: List[float] = []
            print("\n== %s, %d ops x %d rounds" % (mode, count, rounds), flush=True)
            for r in range(rounds):
                labels = list(contenders)
                order = labels[r % len(labels):] + labels[:r % len(labels)]
                row = {}
                for label in order:
                    servers, key = contenders[label]
                    elapsed, cpu_s, spread = run_client(mode, servers, count, ECHO,
                                                        args.timeout, key)
                    row[label] = count / elapsed
                    ops[label].append(count / elapsed)
                    cpu[label].append(cpu_s / count * 1e6)
                    if spread and label == "3 servers":
                        spreads.append(spread_ratio(spread, addresses))
                for label in labels[1:]:
                    ratios.setdefault(label, []).append(row[label] / row["1 server"])
                print("  round %d: %s" % (r + 1, "  ".join("%s=%.0f" % kv for kv in row.items())),
                      flush=True)
            for label in contenders:
                rows.append({"mode": mode, "count": count, "label": label,
                             "median_ops": statistics.median(ops[label]),
                             "min_ops": min(ops[label]), "max_ops": max(ops[label]),
                             "cpu_us": statistics.median(cpu[label]),
                             "ratio": (statistics.median(ratios[label]) if label in ratios
                                       else None),
                             "spread": (max(spreads) if spreads and label == "3 servers"
                                        else None)})
        return rows

    def inprocess(self) -> List[dict]:
        """Clients over 1 and 3 servers (with and without one key) in this
        process, in alternating blocks: steadier than separate processes."""
        import pygear
        addresses = self.cluster.addresses
        blocks = 20 if self.args.quick else 60
        contenders = {"1 server": (addresses[:1], None), "3 servers": (addresses, None),
                      "1 server, one key": (addresses[:1], "bench-one-key"),
                      "3 servers, one key": (addresses, "bench-one-key")}
        clients = {}
        for label, (servers, key) in contenders.items():
            c = pygear.Client(",".join(servers))
            c.set_serializer(pygear.RAW)
            c.set_timeout(60000)
            for _ in range(50):
                c.do(ECHO, b"x" * SIZE, key)
            clients[label] = (c, key)
        took: Dict[str, List[float]] = {k: [] for k in clients}
        cpu: Dict[str, List[float]] = {k: [] for k in clients}
        payload, n = b"x" * SIZE, 200
        print("\n== in one process: %d blocks of %d do() each" % (blocks, n), flush=True)
        for _ in range(blocks):
            for label, (c, key) in clients.items():
                started, cpu_started = time.perf_counter(), time.process_time()
                for _ in range(n):
                    c.do(ECHO, payload, key)
                took[label].append((time.perf_counter() - started) / n * 1e6)
                cpu[label].append((time.process_time() - cpu_started) / n * 1e6)
        for c, _ in clients.values():
            c.close()
        return [{"label": k, "us": statistics.median(took[k]), "cpu_us": statistics.median(cpu[k])}
                for k in clients]

    def spread(self) -> dict:
        """do_background x N over the three servers, no worker: gearmand counts."""
        addresses = self.cluster.addresses
        count = 3000 if self.args.quick else 9000
        fn = "bench_spread_%d" % os.getpid()
        elapsed, cpu_s, _ = run_client("background", addresses, count, fn, self.args.timeout)
        counts = {a: queued(a, fn) for a in addresses}
        return {"count": count, "per_server": counts, "max_min": spread_ratio(counts, addresses),
                "ops": count / elapsed, "cpu_us": cpu_s / count * 1e6}

    def failover(self) -> List[dict]:
        rounds = self.args.failover_rounds or (3 if self.args.quick else 7)
        addresses = self.cluster.addresses
        results = []
        for keyed in (True, False):
            seen: Dict[str, List[float]] = {}
            errors = 0
            print("\n== failover, %s, %d rounds" % ("keyed (the victim's key)" if keyed
                                                   else "round-robin", rounds), flush=True)
            for r in range(rounds):
                victim = r % len(addresses)
                key = victim_key(addresses, addresses[victim]) if keyed else ""
                one = self._failover_round(victim, key)
                errors += one.pop("errors")
                for name, value in one.items():
                    seen.setdefault(name, []).append(value * 1e3)
                print("  round %d: %s" % (r + 1, ", ".join("%s %.1f ms" % (k, v * 1e3)
                                                           for k, v in one.items())), flush=True)
            row = {"mode": "keyed" if keyed else "round-robin", "rounds": rounds,
                   "errors": errors}
            for name, values in seen.items():
                row[name] = (statistics.median(values), max(values))
            results.append(row)
        return results

    def _failover_round(self, victim: int, key: str):
        addresses = self.cluster.addresses
        # the client runs for 2 s by itself; the kill comes 0.7 s into it
        with subprocess.Popen(_python("failover", ",".join(addresses), key, "2.0"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=python_env(), cwd=ROOT) as proc:
            ready = proc.stdout.readline().strip() == "READY"
            if ready:
                time.sleep(0.7)
                killed_at = time.monotonic()
                os.kill(self.cluster.servers[victim].pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=60)
        if not ready or proc.returncode != 0:
            raise RuntimeError("failover client failed: %s" % err[-2000:])
        data = json.loads(out.strip().splitlines()[-1])
        after = [t for t in data["answers"] if t > killed_at]
        noticed = [t for t in data["downs"] if t > killed_at]
        if not after or not noticed:
            raise RuntimeError("no answer, or no failure noticed, after the kill: %s"
                               % data["errors"][:3])
        # once the death is noticed, no call goes to the dead server
        by_another = next(t for t in after if t > noticed[0])
        last = max([t for t in data["answers"] if t <= killed_at] or [killed_at])
        # back for the next round: the server, then its worker
        self.stop_worker(victim)
        self.cluster.restart(victim)
        self.start_worker(victim)
        return {"noticed": noticed[0] - killed_at, "first": after[0] - killed_at,
                "by_another": by_another - killed_at, "stall": by_another - last,
                "errors": len(data["errors"])}


def render(results: dict, command: str) -> str:
    lines = ["Command: %s" % command, "",
             "| scenario | client over | median ops/s | (min - max) | 3 vs 1 | CPU us/op "
             "| spread max/min |", "|---|---|---:|---:|---:|---:|---:|"]
    for row in results["throughput"]:
        title = ("sequential do, 100 B" if row["mode"] == "do"
                 else "add_task x %d + run_tasks, 100 B" % row["count"])
        lines.append("| %s | %s | %.0f | %.0f - %.0f | %s | %.1f | %s |" % (
            title, row["label"], row["median_ops"], row["min_ops"], row["max_ops"],
            "" if row["ratio"] is None else "%.2f" % row["ratio"], row["cpu_us"],
            "" if row["spread"] is None else "%.3f" % row["spread"]))
    lines += ["", "| in one process, sequential do, 100 B | us per job | CPU us per job |",
              "|---|---:|---:|"]
    for row in results["inprocess"]:
        lines.append("| %s | %.1f | %.1f |" % (row["label"], row["us"], row["cpu_us"]))
    sp = results["spread"]
    lines += ["", "do_background x %d over 3 servers (gearmand's count): %s; max/min %.3f; "
              "%.0f ops/s, CPU %.1f us/op" % (sp["count"], ", ".join(
                  "%d" % n for n in sp["per_server"].values()), sp["max_min"], sp["ops"],
                  sp["cpu_us"]),
              "", "| failover: SIGKILL, do() in a loop | kills | noticed | first answer "
              "| first answer by another | stall | errors |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for f in results["failover"]:
        lines.append("| %s | %d | %s | %s | %s | %s | %d |" % (
            f["mode"], f["rounds"], *("%.1f ms (%.1f)" % f[k] for k in
                                      ("noticed", "first", "by_another", "stall")), f["errors"]))
    lines.append("(ms after the kill, median (max) over the kills; stall: from the last answer "
                 "before the kill to the first one by another server)")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:
        client_main(argv[1], argv[2], int(argv[3]), argv[4], *argv[5:6])
        return 0
    if argv[:1] == ["failover"]:
        failover_main(argv[1], argv[2], float(argv[3]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.cluster",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations and rounds")
    parser.add_argument("--rounds", type=int, help="throughput rounds (default 5, quick 3)")
    parser.add_argument("--failover-rounds", type=int, help="kills (default 7, quick 3)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per client run")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    results = Bench(args).run()
    report = render(results, "python -m bench.cluster " + " ".join(argv))
    print("\n" + report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

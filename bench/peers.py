"""The Python side of each benchmark, run in its own process.

    python -m bench.peers client LIB SERIALIZER MODE FUNCTION SIZE COUNT HOST PORT
    python -m bench.peers worker LIB SERIALIZER FUNCTION HOST PORT

LIB is ``pygear``, ``gear`` or (client only) ``floor``: libgearman's own
blocking calls through ctypes, no library; SERIALIZER is ``raw`` or
``json`` (pygear only).  MODE is ``do``, ``tasks`` or ``background``, as for the C client
(``bench/c/client.c``): the client connects first (an echo), then times
COUNT operations and prints the elapsed seconds.  The worker serves
FUNCTION as an echo until it is killed.  A client prints the elapsed
seconds and the CPU seconds this process used.  Run as a script
(``python bench/peers.py``), it imports whichever pygear PYTHONPATH names:
that is how ``--baseline`` runs another checkout.
"""
from __future__ import annotations

import sys
import threading
import time

# ---------------------------------------------------------------- payloads


def make_payload(size: int, serializer: str):
    data = bytes(ord("a") + i % 26 for i in range(min(size, 26))) * (size // 26 + 1)
    data = data[:size]
    return data.decode("ascii") if serializer == "json" else data


def expected_size(size: int, serializer: str) -> int:
    return size + 2 if serializer == "json" else size   # JSON adds the quotes


# ---------------------------------------------------------------- pygear


def pygear_client(serializer, mode, fn, size, count, host, port) -> float:
    import pygear
    client = pygear.Client()
    client.add_server(host, port)
    client.set_serializer(pygear.RAW if serializer == "raw" else pygear.JSON)
    client.echo(b"ping")
    payload = make_payload(size, serializer)
    do, bg = client.do, client.do_background
    start = time.perf_counter()
    if mode == "do":
        for _ in range(count):
            result = do(fn, payload)
        elapsed = time.perf_counter() - start
        if len(result) != len(payload):
            raise SystemExit("do: got %d bytes back, sent %d" % (len(result), len(payload)))
    elif mode == "background":
        for _ in range(count):
            bg(fn, payload)
        elapsed = time.perf_counter() - start
    elif mode == "tasks":
        done = [0, 0]
        want = expected_size(size, serializer)

        def on_complete(task):   # what the C client's callback does
            done[task.data_size() != want] += 1

        client.set_complete_fn(on_complete)
        add = client.add_task
        tasks = [add(fn, payload) for _ in range(count)]
        client.run_tasks()
        elapsed = time.perf_counter() - start
        if done[0] != count:
            raise SystemExit("tasks: %d of %d completed, %d bad" % (done[0], count, done[1]))
        del tasks
    else:
        raise SystemExit("unknown mode %s" % mode)
    client.close()
    return elapsed


def pygear_worker(serializer, fn, host, port) -> None:
    import pygear
    worker = pygear.Worker()
    worker.add_server(host, port)
    worker.set_serializer(pygear.RAW if serializer == "raw" else pygear.JSON)
    if serializer == "raw":
        worker.add_function(fn, 0, lambda job: job.raw_workload())
    else:
        worker.add_function(fn, 0, lambda job: job.workload())
    work = worker.work
    while True:
        try:
            work()
        except pygear.TIMEOUT:
            pass


# ---------------------------------------------------------------- the floor


def floor_client(serializer, mode, fn, size, count, host, port) -> float:
    """No pygear: one ctypes call per job into libgearman's own blocking
    gearman_client_do / do_background, from this Python process.  What a
    Python process costs around the same C calls, with no library logic."""
    import ctypes
    from bench.inprocess import c_client
    if mode not in ("do", "background"):
        raise SystemExit("the floor client runs do and background only")
    do, background = c_client(port, host.encode(), make_payload(size, "raw"))
    run, name = (do if mode == "do" else background), fn.encode()
    run(name)   # connected before the clock, as the C client's echo does
    start = time.perf_counter()
    for _ in range(count):
        run(name)
    return time.perf_counter() - start


# ---------------------------------------------------------------- gear


def gear_client(serializer, mode, fn, size, count, host, port) -> float:
    import gear

    class Client(gear.Client):
        def __init__(self):
            super().__init__("bench")
            self.finished = 0
            self.cond = threading.Condition()

        def _finish(self, job):
            with self.cond:
                self.finished += 1
                self.cond.notify_all()
            return job

        def handleWorkComplete(self, packet):
            return self._finish(super().handleWorkComplete(packet))

        def handleWorkFail(self, packet):
            return self._finish(super().handleWorkFail(packet))

        def handleWorkException(self, packet):
            return self._finish(super().handleWorkException(packet))

        def wait_for(self, n):
            with self.cond:
                while self.finished < n:
                    if not self.cond.wait(60):
                        raise SystemExit("gear: timed out waiting for results")

    client = Client()
    client.addServer(host, port)
    client.waitForServer()
    payload = make_payload(size, "raw")
    start = time.perf_counter()
    if mode == "do":
        for i in range(count):
            job = gear.Job(fn, payload)
            client.submitJob(job)
            client.wait_for(i + 1)
        elapsed = time.perf_counter() - start
        if job.failure or len(b"".join(job.data)) != size:
            raise SystemExit("gear do: bad result")
    elif mode == "background":
        for _ in range(count):
            client.submitJob(gear.Job(fn, payload), background=True)
        elapsed = time.perf_counter() - start
    elif mode == "tasks":
        jobs = [gear.Job(fn, payload) for _ in range(count)]
        for job in jobs:
            client.submitJob(job)   # gear waits for JOB_CREATED on each
        client.wait_for(count)
        elapsed = time.perf_counter() - start
        if any(j.failure for j in jobs):
            raise SystemExit("gear tasks: a job failed")
    else:
        raise SystemExit("unknown mode %s" % mode)
    client.shutdown()
    return elapsed


def gear_worker(serializer, fn, host, port, nodelay=True) -> None:
    import gear
    worker = gear.Worker("bench")
    worker.addServer(host, port)
    worker.waitForServer()
    if nodelay:
        # gear leaves Nagle on: WORK_COMPLETE and the next GRAB_JOB are two
        # small writes, and the second waits for gearmand's delayed ACK (40 ms).
        import socket
        for conn in worker.active_connections:
            conn.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    worker.registerFunction(fn)
    while True:
        job = worker.getJob()
        job.sendWorkComplete(job.arguments)


# ---------------------------------------------------------------- main


def main(argv) -> int:
    role, lib, serializer = argv[0], argv[1], argv[2]
    if role == "client":
        mode, fn, size, count, host, port = argv[3:9]
        run = {"pygear": pygear_client, "gear": gear_client, "floor": floor_client}[lib]
        cpu = time.process_time()
        elapsed = run(serializer, mode, fn, int(size), int(count), host, int(port))
        cpu = time.process_time() - cpu   # connecting included: a few ms at most
        print("%.6f %.6f" % (elapsed, cpu), flush=True)
        return 0
    if role == "worker":
        fn, host, port = argv[3:6]
        run = pygear_worker if lib == "pygear" else gear_worker
        try:
            run(serializer, fn, host, int(port))
        except KeyboardInterrupt:
            pass
        return 0
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""pygear against libgearman's own do/do_background in the same process.

    python -m bench.inprocess [--ops N] [--rounds R]

The main suite compares separate processes, so its ratios also carry
whatever makes a Python process slower than a C one around the same
syscalls.  Here both sides run in one CPython process against one
gearmand (and, for ``do``, one C worker): "C" is one ctypes call into
``gearman_client_do``/``gearman_client_do_background`` per job, so what is
left between the two rows is pygear's own overhead.  Blocks of N jobs
alternate; the report gives medians per job and the median of per-round
throughput ratios.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import pygear  # noqa: E402
from pygear import _lib  # noqa: E402
from pygear._server import GearmandProcess  # noqa: E402

PAYLOAD = b"x" * 100


def c_client(port: int, host: bytes = b"127.0.0.1", payload: bytes = PAYLOAD):
    """libgearman's own blocking client calls, bound by hand: do(fn) and
    background(fn), each one foreign call sending ``payload``."""
    _lib.load()
    lib = ctypes.CDLL(_lib.dll_file)
    vp, cp, size = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
    lib.gearman_client_create.restype = vp
    lib.gearman_client_create.argtypes = [vp]
    lib.gearman_client_add_server.argtypes = [vp, cp, ctypes.c_int]
    lib.gearman_client_do.restype = vp
    lib.gearman_client_do.argtypes = [vp, cp, cp, cp, size, ctypes.POINTER(size),
                                      ctypes.POINTER(ctypes.c_int)]
    lib.gearman_client_do_background.argtypes = [vp, cp, cp, cp, size, cp]
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [vp]
    client = lib.gearman_client_create(None)
    lib.gearman_client_add_server(client, host, port)
    handle = ctypes.create_string_buffer(64)
    result_size, rc = size(), ctypes.c_int()

    def do(fn: bytes) -> None:
        result = lib.gearman_client_do(client, fn, None, payload, len(payload),
                                       ctypes.byref(result_size), ctypes.byref(rc))
        if rc.value != 0 or result_size.value != len(payload):
            raise SystemExit("gearman_client_do failed: %d" % rc.value)
        libc.free(result)

    def background(fn: bytes) -> None:
        code = lib.gearman_client_do_background(client, fn, None, payload, len(payload), handle)
        if code != 0:
            raise SystemExit("gearman_client_do_background failed: %d" % code)

    return do, background


def alternate(ops, n: int, rounds: int):
    times = {name: [] for name in ops}
    names = list(ops)
    for r in range(rounds):
        for name in (names if r % 2 else names[::-1]):
            op = ops[name]
            start = time.perf_counter()
            for _ in range(n):
                op()
            times[name].append(time.perf_counter() - start)
    return times


def report(title: str, times, n: int) -> None:
    ratios = [c / p for c, p in zip(times["C"], times["pygear"])]
    print("%-28s C %6.1f us/job  pygear %6.1f us/job  pygear/C %.3f" % (
        title, statistics.median(times["C"]) / n * 1e6,
        statistics.median(times["pygear"]) / n * 1e6, statistics.median(ratios)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=100, help="jobs per block")
    parser.add_argument("--rounds", type=int, default=60, help="blocks per contender")
    args = parser.parse_args(argv)
    worker_bin = os.path.join(HERE, ".build", "worker")
    if not os.path.exists(worker_bin):
        raise SystemExit("build the C reference first: python -m bench --scenarios do --rounds 1")
    server = GearmandProcess().start()
    worker = subprocess.Popen([worker_bin, "echo_c", server.host, str(server.port)])
    try:
        client = pygear.Client()
        client.add_server(server.host, server.port)
        client.set_serializer(pygear.RAW)
        client.set_timeout(20000)
        c_do, c_background = c_client(server.port)
        client.do("echo_c", PAYLOAD)          # connected, and the worker is up
        c_do(b"echo_c")
        report("sequential do, 100 B", alternate(
            {"C": lambda: c_do(b"echo_c"), "pygear": lambda: client.do(b"echo_c", PAYLOAD)},
            args.ops, args.rounds), args.ops)
        report("sequential do_background", alternate(
            {"C": lambda: c_background(b"bench_background"),
             "pygear": lambda: client.do_background(b"bench_background", PAYLOAD)},
            args.ops, args.rounds), args.ops)
        client.close()
    finally:
        worker.terminate()
        worker.wait(10)
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

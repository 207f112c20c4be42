"""pygear's main job, end to end: start a throwaway gearmand on a free port,
run every seed example against it, print what happened, then the server's
status table.  Run it with ``make demo`` (or ``python examples/demo.py``).

The examples are written for localhost:4730; the demo runs each one as
written, with only that port swapped for the throwaway server's.
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import pygear  # noqa: E402
from pygear._server import GearmandProcess  # noqa: E402


def source(name, port):
    with open(os.path.join(HERE, name)) as f:
        return f.read().replace("'localhost', 4730", "'127.0.0.1', %d" % port)


def start(name, port):
    return subprocess.Popen([sys.executable, "-c", source(name, port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run(name, port, timeout=30):
    proc = start(name, port)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out.strip()


def show(title, rc, out):
    print("== %s (exit %d)" % (title, rc))
    for line in out.splitlines() or ["(no output)"]:
        print("   " + line)


def wait_for_workers(admin, function, count=1, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = {r["function"]: r for r in admin.status()}
        if rows.get(function, {}).get("available_workers", 0) >= count:
            return
        time.sleep(0.05)
    raise SystemExit("no worker registered %r within %.0fs" % (function, timeout))


def main():
    print("pygear %s on libgearman %s" % (pygear.__version__, pygear.libgearman_version()))
    failures = 0
    with GearmandProcess() as server:
        print("gearmand listening on %s\n" % server.address)
        admin = pygear.Admin(server.host, server.port, timeout=5)
        worker = start("reverse_worker.py", server.port)
        try:
            wait_for_workers(admin, "reverse")
            checks = [
                ("blocking client", "blocking_client.py", "!raegyp olleH"),
                ("non-blocking client: background job + status", "background_client.py",
                 "'is_known'"),
                ("asynchronous client: tasks + complete callback", "async_client.py",
                 "!1 ksat raegyp olleH"),
            ]
            for title, name, expect in checks:
                rc, out = run(name, server.port)
                show(title, rc, out)
                failures += rc != 0 or expect not in out
        finally:
            worker.terminate()
            worker.communicate(timeout=10)
        # Failure handling: a worker whose function raises, one job.
        deadline = time.monotonic() + 10
        while any(r["function"] == "reverse" and r["available_workers"]
                  for r in admin.status()) and time.monotonic() < deadline:
            time.sleep(0.05)
        failing = start("failing_worker.py", server.port)
        wait_for_workers(admin, "reverse")
        rc, out = run("failing_client.py", server.port)
        show("failure handling: client exception callback", rc, out)
        failures += rc != 0 or "I can't spell backwards!" not in out
        wout, _ = failing.communicate(timeout=30)
        show("failure handling: the raising worker", failing.returncode, wout.strip())
        failures += failing.returncode != 0

        print("\n== server status (pygear.Admin)")
        print("   %-24s %7s %8s %8s" % ("function", "queued", "running", "workers"))
        for row in admin.status():
            print("   %-24s %7d %8d %8d" % (row["function"], row["total"],
                                           row["running"], row["available_workers"]))
        admin.close()
    print("\n%s" % ("all examples ran as expected" if not failures
                    else "%d example(s) did not do what was expected" % failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

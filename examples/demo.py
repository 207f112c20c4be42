"""pygear's main job, end to end: start a throwaway gearmand on a free port,
run every seed example against it, print what each sent and what it got
back, then the server's status table.  Run it with ``make demo`` (or ``python examples/demo.py``).

The examples are written for localhost:4730; the demo runs each one as
written, with only that port swapped for the throwaway server's.
"""
import os
import re
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


# pygear, as libgearman, adds $GEARMAN_SERVERS to every Client and Worker:
# the examples must see only the demo's own server.
ENV = {k: v for k, v in os.environ.items() if k != "GEARMAN_SERVERS"}


def start(name, port):
    return subprocess.Popen([sys.executable, "-c", source(name, port)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run(name, port, timeout=30):
    proc = start(name, port)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out.strip()


def requests(name):
    """The lines of an example that send something: do*, add_task*."""
    with open(os.path.join(HERE, name)) as f:
        return [line.strip() for line in f
                if re.search(r"\bc\.(do|add_task)\w*\(", line) and not line.lstrip().startswith("#")]


def show(title, rc, out, name=None, sent=None):
    print("== %s%s (exit %d)" % (title, ": examples/" + name if name else "", rc))
    for line in sent if sent is not None else requests(name) if name else []:
        print("   sent:    " + line)
    for i, line in enumerate(out.splitlines() or ["(no output)"]):
        print("   %s %s" % ("printed:" if i == 0 else "        ", line))


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
        print("examples/reverse_worker.py serves 'reverse' (JSON in, JSON out): "
              "returns job.workload()[::-1]\n")
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
                show(title, rc, out, name)
                failures += rc != 0 or expect not in out
            # The examples speak JSON (pygear's default); the command line
            # sends raw bytes unless told --json.
            cmd = [sys.executable, "-m", "pygear", "--server", server.address,
                   "submit", "--json", "reverse", '"Hello from the CLI!"']
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV,
                                  text=True, timeout=30, cwd=os.path.dirname(HERE))
            show("the command line, speaking JSON to the same worker", done.returncode,
                 done.stdout.strip(), sent=["pygear submit --json reverse "
                                            "'\"Hello from the CLI!\"'"])
            failures += done.returncode != 0 or "!ILC eht morf olleH" not in done.stdout
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
        show("failure handling: client exception callback", rc, out, "failing_client.py")
        failures += rc != 0 or "I can't spell backwards!" not in out
        wout, _ = failing.communicate(timeout=30)
        show("failure handling: the raising worker", failing.returncode, wout.strip(),
             "failing_worker.py")
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

"""Strings and bytes that lie about themselves (issue 10, item 18; SPEC "No
input from Python may crash the interpreter"): a ``str`` subclass whose
``encode()`` returns bytes that lie about their length, and a ``bytes``
subclass overriding ``__len__`` and ``__bytes__``, through every place a
caller's text or bytes reach C: namespaces, function names, unique keys,
identifiers, job handles, echo data, workloads, a serializer's ``dumps()``
and a job's replies.  Each either works with the true bytes (what the
characters are in UTF-8, what the buffer holds) or raises a clear
TypeError/ValueError; nothing crashes.  Each case runs in a child.
"""
import pytest

import pygear
from pygear.testing import unique_name

from .faultkit import ServeInThread, calling, emit, run_child

pytestmark = pytest.mark.timeout(60)

LIE = 1 << 26          # 64 MiB: C trusting this reads far past the buffer


class LyingBytes(bytes):
    def __len__(self):
        return LIE

    def __bytes__(self):
        return LyingBytes(b"other")


class LyingStr(str):
    def encode(self, *args, **kwargs):
        return LyingBytes(b"encoded")


class LyingSerializer:
    """JSON, except that dumps() hands back a liar."""

    def __init__(self, kind):
        self.kind = kind

    def dumps(self, obj):
        import json
        text = json.dumps(obj)
        return LyingStr(text) if self.kind == "str" else LyingBytes(text.encode())

    def loads(self, data):
        import json
        return json.loads(data) if data else None


def _reply(job):
    """The worker's functions: what the job looked like, or a lying reply."""
    how = job.function_name().rsplit("_", 1)[-1]
    if how == "result":
        return LyingBytes(b"result")
    if how == "data":
        job.send_data(LyingBytes(b"chunk"))
        return b"done"
    if how == "unique":
        return job.unique().encode()
    return job.raw_workload()


def exact_bytes_child(case, host, port, fn):
    port = int(port)
    w = pygear.Worker()
    w.add_server(host, port)
    w.set_timeout(200)
    w.set_serializer(pygear.RAW)
    c = pygear.Client()
    c.add_server(host, port)
    c.set_timeout(5000)
    c.set_serializer(pygear.RAW)
    names = {how: "%s_%s" % (fn, how) for how in ("raw", "result", "data", "unique")}

    def admin(what):
        with pygear.Admin(host, port, timeout=5) as a:
            return a.status() if what == "status" else a.workers()

    def run():
        if case == "namespace":
            w.set_namespace(LyingStr("ns_"))
            w.add_function(names["raw"], 0, _reply)
            try:
                w.work()
            except pygear.TIMEOUT:
                pass
            return sorted(row["function"] for row in admin("status")
                          if row["function"].endswith(names["raw"]) and row["available_workers"])
        for how, name in names.items():
            w.add_function(LyingStr(name) if case == "function name" else name, 0, _reply)
        with ServeInThread(w):
            if case == "function name":
                return c.do(LyingStr(names["raw"]), b"payload")
            if case == "unique key":
                return c.do(names["unique"], b"x", unique=LyingStr("unique-1"))
            if case == "identifier":
                c.set_identifier(LyingStr("ident-1"))
                c.echo(b"x")
                return sorted(row["client_id"] for row in admin("workers")
                              if row["client_id"] in ("ident-1", "encoded", "other"))
            if case == "job handle":
                return c.job_status(LyingStr("H:nowhere:1"))
            if case == "echo data":
                return c.echo(LyingBytes(b"ping"))
            if case == "str workload":
                return c.do(names["raw"], LyingStr("payload"))
            if case == "bytes workload":
                return c.do(names["raw"], LyingBytes(b"payload"))
            if case == "bytes task workload":
                task = c.add_task(names["raw"], LyingBytes(b"payload"))
                c.run_tasks()
                return task.result()
            if case in ("str dumps", "bytes dumps"):
                c.set_serializer(LyingSerializer(case.split()[0]))
                return c.do(names["raw"], "hello")
            if case == "job result":
                return c.do(names["result"], b"x")
            if case == "job data":
                chunks = []
                c.set_data_fn(lambda task: chunks.append(task.data()))
                task = c.add_task(names["data"], b"x")
                c.run_tasks()
                return [chunks, task.result()]
            raise AssertionError("no case %r" % case)

    try:
        got = run()
        outcome = "ok"
    except (TypeError, ValueError) as exc:
        got, outcome = str(exc), "refused"
    except pygear.WORK_EXCEPTION as exc:
        got, outcome = exc.payload, "WORK_EXCEPTION"
    emit(case=case, outcome=outcome, got=plain(got))


def plain(value):
    """JSON-able: bytes as latin-1 text, inside lists too."""
    if isinstance(value, bytes):
        return bytes(memoryview(value)).decode("latin-1")
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# What "works with the true bytes" gives in each case.
TRUE = {
    "namespace": lambda fn: ["ns_%s_raw" % fn],
    "function name": lambda fn: "payload",
    "unique key": lambda fn: "unique-1",
    "identifier": lambda fn: ["ident-1"],
    "job handle": lambda fn: {"is_known": False, "is_running": False, "numerator": 0,
                              "denominator": 0},
    "echo data": lambda fn: None,
    "str workload": lambda fn: "payload",
    "bytes workload": lambda fn: "payload",
    "bytes task workload": lambda fn: "payload",
    "str dumps": lambda fn: "hello",
    "bytes dumps": lambda fn: "hello",
    "job result": lambda fn: "result",
    "job data": lambda fn: [["chunk"], "done"],
}


CASES = list(TRUE)


@pytest.mark.parametrize("case", CASES)
def test_lying_str_and_bytes_never_reach_c(gearmand, case):
    fn = unique_name("liar")
    lines = run_child(calling("tests.test_exact_bytes:exact_bytes_child"),
                      [case, gearmand.host, gearmand.port, fn], timeout=40)
    report = lines[-1]
    if report["outcome"] == "refused":      # a clear TypeError/ValueError
        assert report["got"], report
        return
    if case in ("job result", "job data") and report["outcome"] == "WORK_EXCEPTION":
        # the worker refused the liar (a TypeError in the job function's reply)
        assert report["got"]["type"] in ("TypeError", "ValueError"), report
        return
    assert report["outcome"] == "ok", report
    assert report["got"] == TRUE[case](fn), report

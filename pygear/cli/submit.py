"""``pygear submit``: one job, a job's status, or one job per line of a file."""
from __future__ import annotations

import json
import os
import shlex
import sys
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

from . import _common as cli
from ..client import Client
from ..errors import ERROR, GearmanError


def add_parser(sub, common: Callable) -> None:
    p = sub.add_parser(
        "submit", help="submit a job and print its result",
        description="Submit a job to FUNCTION with DATA (or standard input) and "
        "print its result.  With --each FILE, submit one job per line.",
        epilog="exit codes: 3 worker failure, 4 worker exception, 5 timeout, "
        "6 could not connect (see pygear --help)")
    common(p)
    p.add_argument("function", nargs="?", metavar="FUNCTION")
    p.add_argument("data", nargs="?", metavar="DATA",
                   help="the workload (default: read standard input)")
    p.add_argument("-b", "--background", action="store_true",
                   help="queue the job and print its handle instead of waiting")
    prio = p.add_mutually_exclusive_group()
    prio.add_argument("--high", action="store_const", dest="priority", const="high",
                      default="normal", help="high priority")
    prio.add_argument("--low", action="store_const", dest="priority", const="low",
                      help="low priority")
    p.add_argument("-u", "--unique", metavar="KEY", help="the job's unique key")
    p.add_argument("--status", metavar="HANDLE",
                   help="print the status of a (background) job instead; handles are "
                        "unique per server only, so with several servers add --server "
                        "HOST:PORT to ask the one that holds it")
    p.add_argument("--each", metavar="FILE",
                   help="submit one job per line of FILE ('-' for standard input)")
    p.add_argument("-j", "--jobs", type=cli.positive_int, metavar="N",
                   help="with --each: run N jobs at a time (default 1)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="with --each: no progress and no summary")
    p.set_defaults(run=run, late_positionals=("function", "data"))


def _client(args, servers) -> Client:
    client = Client()
    for host, port in servers:
        client.add_server(host, port)
    client.set_serializer(cli.serializer_of(args))
    client.set_timeout(cli.timeout_ms(args))
    return client


def _method(args, client: Client) -> Callable:
    name = {"normal": "do", "high": "do_high", "low": "do_low"}[args.priority]
    if args.background:
        name += "_background"
    return getattr(client, name)


def _workload(args, raw: bytes, where: str = "DATA") -> Any:
    if not args.json:
        return raw
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise cli.CliError("%s is not valid JSON (%s); drop --json to send it as is"
                           % (where, exc))


def _result_bytes(args, result: Any) -> bytes:
    if args.json:
        return cli.to_json_text(result).encode("utf-8")
    return result if isinstance(result, bytes) else str(result).encode("utf-8")


def run(args) -> int:
    if args.status:
        return _status(args)
    if not args.function:
        raise cli.CliError("submit needs a FUNCTION (or --status HANDLE)", cli.EXIT_USAGE)
    if args.jobs is not None and not args.each:
        raise cli.CliError("--jobs N runs N jobs of --each FILE at a time; without "
                           "--each there is one job (add --each FILE, or drop --jobs)",
                           cli.EXIT_USAGE)
    if args.each:
        if args.data is not None:
            raise cli.CliError("give DATA or --each FILE, not both", cli.EXIT_USAGE)
        if args.unique:
            raise cli.CliError("--unique cannot be used with --each: every job "
                               "would get the same key", cli.EXIT_USAGE)
        return _each(args)
    if args.data is not None:
        raw = os.fsencode(args.data)
    else:
        raw = sys.stdin.buffer.read()
    workload = _workload(args, raw)
    servers = cli.reachable_servers(args)
    cli.log.info("submitting %d bytes%s to %s on %s", len(raw), " of JSON" if args.json else "",
                 args.function, ", ".join(cli.format_server(s) for s in servers))
    with _client(args, servers) as client:
        try:
            result = _method(args, client)(args.function, workload, args.unique)
        except GearmanError as exc:
            _report_failure(args, raw, exc)
            return cli.exit_code_for(exc)
        except KeyboardInterrupt as exc:
            sys.stderr.write("\n")
            _say_abandoned(args, exc)
            return cli.EXIT_INTERRUPTED
    if args.background:
        cli.write_out(result["job_handle"].encode("utf-8") + b"\n")
        if len(servers) > 1:
            # the handle alone names no job: two servers may both have issued it
            sys.stderr.write("%s: queued on %s (pygear submit --status %s --server %s)\n"
                             % (cli.PROG, result["server"], result["job_handle"],
                                result["server"]))
            sys.stderr.flush()
        return cli.EXIT_OK
    data = _result_bytes(args, result)
    if args.json or (sys.stdout.isatty() and data and not data.endswith(b"\n")):
        data += b"\n"
    cli.write_out(data)
    return cli.EXIT_OK


def _report_failure(args, raw: bytes, exc: GearmanError) -> None:
    name = getattr(exc, "name", "")
    function = args.function
    if name == "WORK_FAIL":
        cli.error("%s: the worker failed the job" % function)
    elif name == "WORK_EXCEPTION" and cli.wanted_json(args, exc.payload, raw):
        cli.error("%s: the worker reads its workload as JSON, and raw bytes were sent; "
                  "send JSON with --json (e.g. %s), or have the worker take raw bytes "
                  "(worker.set_serializer(pygear.RAW))" % (function, _json_example(args, raw)))
    elif name == "WORK_EXCEPTION":
        cli.error("%s: the worker raised an exception:\n%s"
                  % (function, cli.describe_exception_report(exc.payload)))
    else:
        cli.error(str(exc))
        if cli.exit_code_for(exc) == cli.EXIT_TIMEOUT:
            _say_abandoned(args, exc)


def _say_abandoned(args, exc: BaseException) -> None:
    """A foreground job we stopped waiting for is not withdrawn: say what
    gearmand does with it (and its handle, when the exception carries one)."""
    if args.background:
        return
    handle, server = getattr(exc, "job_handle", None), getattr(exc, "server", None)
    which = "the job"
    if handle:
        which += " %s%s" % (handle, " on %s" % server if server else "")
    cli.error("%s stays queued until a worker asks for it, and is then dropped unrun "
              "(one a worker already took runs to its end); `pygear admin jobs` "
              "shows it as IGNORED" % which)


def _json_example(args, raw: bytes) -> str:
    """``pygear submit --json FN '"DATA"'``: DATA as the JSON string it
    would be (a placeholder when it is long or not text)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    data = shlex.quote(json.dumps(text)) if text is not None and len(text) <= 40 \
        else "'\"...\"'"
    return "pygear submit --json %s %s" % (shlex.quote(args.function), data)


def _status(args) -> int:
    if args.function or args.each:
        raise cli.CliError("--status HANDLE takes no FUNCTION or --each", cli.EXIT_USAGE)
    servers, unreachable = cli.split_reachable(args)
    for server, exc in unreachable:
        cli.error("%s; a job there is not seen" % cli.unreachable(server, exc))
    with _client(args, servers) as client:
        # one server: that one is asked; several: every one, and the one that knows it answers
        only = cli.format_server(servers[0]) if len(servers) == 1 else None
        try:
            status = client.job_status(args.status, server=only)
        except ERROR as exc:
            # pygear.ERROR with several servers: more than one of them knows the handle
            text = str(exc)
            cut = text.find("; pass server=")
            raise cli.CliError("%s; ask one of them: --status %s --server HOST:PORT"
                               % (text[:cut] if cut >= 0 else text, args.status))
    if args.json:
        cli.write_out((cli.to_json_text(dict(handle=args.status, **status)) + "\n")
                      .encode("utf-8"))
        return cli.EXIT_OK
    yes = lambda flag: "yes" if flag else "no"  # noqa: E731
    rows = [("handle", args.status), ("known", yes(status["is_known"])),
            ("running", yes(status["is_running"])),
            ("progress", "%d/%d" % (status["numerator"], status["denominator"]))]
    cli.write_out("".join("%-9s %s\n" % row for row in rows).encode("utf-8"))
    return cli.EXIT_OK


# --- --each -------------------------------------------------------------------------

class _Outcome:
    __slots__ = ("ok", "value", "exc")

    def __init__(self, ok: bool, value: Any = None, exc: Optional[BaseException] = None):
        self.ok, self.value, self.exc = ok, value, exc


def _read_lines(path: str) -> List[bytes]:
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise cli.CliError("cannot read %s: %s" % (path, exc.strerror or exc))
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()   # the newline that ends the last line starts no new one
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


class _Progress:
    """A bar on a terminal; otherwise a count line at every tenth."""

    def __init__(self, total: int, stream, enabled: bool) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled
        self.tty = enabled and stream.isatty()
        self.started = time.monotonic()
        self.drawn_at = 0.0
        self.tenth = 0

    def clear(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def update(self, done: int, failed: int, force: bool = False) -> None:
        if not self.enabled or not self.total:
            return
        if self.tty:
            now = time.monotonic()
            if not force and now - self.drawn_at < 0.1:
                return
            self.drawn_at = now
            width = 30
            filled = width * done // self.total
            rate = done / max(now - self.started, 1e-6)
            self.stream.write("\r\x1b[K[%s%s] %d/%d  %d failed  %.1f jobs/s"
                              % ("#" * filled, "-" * (width - filled), done,
                                 self.total, failed, rate))
            self.stream.flush()
            return
        tenth = 10 * done // self.total
        if tenth > self.tenth:
            self.tenth = tenth
            self.stream.write("%s: %d/%d done, %d failed\n"
                              % (cli.PROG, done, self.total, failed))
            self.stream.flush()


def _each(args) -> int:
    lines = _read_lines(args.each)
    workloads = [_workload(args, line, "line %d" % (i + 1)) for i, line in enumerate(lines)]
    total = len(workloads)
    servers = cli.reachable_servers(args)
    outcomes: List[Optional[_Outcome]] = [None] * total
    cond = threading.Condition()
    state = {"next": 0, "stop": False}

    def take() -> Optional[int]:
        with cond:
            if state["stop"] or state["next"] >= total:
                return None
            index = state["next"]
            state["next"] += 1
            return index

    def runner() -> None:
        try:
            client = _client(args, servers)
        except BaseException as exc:   # e.g. libgearman missing: fail every job
            client, setup_error = None, exc
        try:
            while True:
                index = take()
                if index is None:
                    return
                if client is None:
                    outcome = _Outcome(False, exc=setup_error)
                else:
                    try:
                        outcome = _Outcome(True, _method(args, client)(
                            args.function, workloads[index]))
                    except Exception as exc:
                        outcome = _Outcome(False, exc=exc)
                with cond:
                    outcomes[index] = outcome
                    cond.notify_all()
        finally:
            if client is not None:
                client.close()

    threads = [threading.Thread(target=runner, daemon=True, name="pygear-submit-%d" % i)
               for i in range(min(args.jobs or 1, total))]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    progress = _Progress(total, sys.stderr, enabled=not args.quiet)
    printed = failed = 0
    try:
        while printed < total:
            with cond:
                cond.wait_for(lambda: outcomes[printed] is not None, timeout=0.1)
                done = sum(1 for o in outcomes if o is not None)
                failed = sum(1 for o in outcomes if o is not None and not o.ok)
                ready = []
                while printed < total and outcomes[printed] is not None:
                    ready.append(outcomes[printed])
                    printed += 1
            if ready:
                progress.clear()
                cli.write_out(b"".join(_each_line(args, o) for o in ready if o is not None))
            progress.update(done, failed, force=bool(ready))
    except KeyboardInterrupt:
        with cond:
            state["stop"] = True
        progress.clear()
        _summary(args, lines, outcomes, time.monotonic() - started, interrupted=True)
        return cli.EXIT_INTERRUPTED
    progress.clear()
    return _summary(args, lines, outcomes, time.monotonic() - started)


def _each_line(args, outcome: _Outcome) -> bytes:
    """One output line per input line: the result, the job handle with
    --background, an empty line for a job that failed."""
    if not outcome.ok:
        return b"\n"
    if args.background:
        return outcome.value["job_handle"].encode("utf-8") + b"\n"
    data = _result_bytes(args, outcome.value)
    return (data[:-1] if data.endswith(b"\n") else data) + b"\n"


def _kind(exc: BaseException) -> str:
    code = cli.exit_code_for(exc)
    return {cli.EXIT_WORK_FAIL: "worker failure", cli.EXIT_WORK_EXCEPTION: "exception",
            cli.EXIT_TIMEOUT: "timeout", cli.EXIT_CONNECT: "connection"}.get(code, "error")


def _describe(args, exc: BaseException, line: bytes) -> str:
    name = getattr(exc, "name", type(exc).__name__)
    if name == "WORK_FAIL":
        return "WORK_FAIL: the worker failed the job"
    if name == "WORK_EXCEPTION" and cli.wanted_json(args, getattr(exc, "payload", None), line):
        return "WORK_EXCEPTION: the worker reads JSON and this line is not JSON (use --json)"
    if name == "WORK_EXCEPTION":
        text = cli.describe_exception_report(getattr(exc, "payload", None))
        return "WORK_EXCEPTION: %s" % text.rstrip("\n").rpartition("\n")[2]
    return "%s: %s" % (name, exc)


def _summary(args, lines: List[bytes], outcomes: List[Optional[_Outcome]],
             elapsed: float, interrupted: bool = False) -> int:
    failures: List[Tuple[int, BaseException]] = [
        (i, o.exc) for i, o in enumerate(outcomes)
        if o is not None and not o.ok and o.exc is not None]
    done = sum(1 for o in outcomes if o is not None)
    if not args.quiet:
        kinds: dict = {}
        for _, exc in failures:
            kinds[_kind(exc)] = kinds.get(_kind(exc), 0) + 1
        detail = ", ".join("%d %s%s" % (n, k, "s" if n != 1 and k != "error" else "")
                           for k, n in sorted(kinds.items()))
        out = ["%s: %s %d of %d jobs to %s in %.1fs: %d ok, %d failed%s%s\n"
               % (cli.PROG, "queued" if args.background else "ran", done, len(lines),
                  args.function, elapsed, done - len(failures), len(failures),
                  " (%s)" % detail if detail else "",
                  " (interrupted)" if interrupted else "")]
        for index, exc in failures:
            preview = lines[index][:40].decode("utf-8", "replace")
            if len(lines[index]) > 40:
                preview += "..."
            out.append("  line %d %r: %s\n" % (index + 1, preview,
                                                 _describe(args, exc, lines[index])))
        sys.stderr.write("".join(out))
        sys.stderr.flush()
    if interrupted:
        return cli.EXIT_INTERRUPTED
    if failures:
        return cli.exit_code_for(failures[0][1])
    return cli.EXIT_OK

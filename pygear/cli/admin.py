"""``pygear admin``: gearmand's admin protocol as aligned tables or JSON."""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import _common as cli
from ..admin import Admin
from ..errors import COULD_NOT_CONNECT, GETADDRINFO, GearmanError
from ..metrics import ServerMetrics

DEFAULT_TIMEOUT = 10.0

# name -> (columns: (header, key, right-aligned), Admin method)
_TABLES: Dict[str, Tuple[Sequence[Tuple[str, str, bool]], str]] = {
    "status": ((("FUNCTION", "function", False), ("TOTAL", "total", True),
                ("RUNNING", "running", True), ("WORKERS", "available_workers", True)),
               "status"),
    "workers": ((("FD", "fd", True), ("IP", "ip_address", False),
                 ("CLIENT-ID", "client_id", False), ("FUNCTIONS", "functions", False)),
                "workers"),
    "jobs": ((("HANDLE", "handle", False), ("RETRIES", "retries", True),
              ("IGNORED", "ignore_job", True), ("QUEUED", "job_queued", True)),
             "show_jobs"),
    "unique-jobs": ((("UNIQUE", "unique", False),), "show_unique_jobs"),
}

# action -> (Admin method, the arguments it takes from the command line)
_COMMANDS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "cancel": ("cancel_job", ("handle",)), "maxqueue": ("maxqueue", ("function", "size")),
    "create": ("create_function", ("function",)), "drop": ("drop_function", ("function",)),
}


def add_parser(sub, common: Callable) -> None:
    p = sub.add_parser(
        "admin", help="ask job servers for status, workers, jobs, ...",
        description="Talk to gearmand's admin protocol.  Tables are aligned for "
        "reading; --json prints JSON for scripts.  With several --server, each "
        "row names its server.")
    common(p)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    def action(name: str, help: str):
        a = actions.add_parser(name, help=help, description=help)
        common(a)
        return a

    status = action("status", "functions with their queued, running jobs and workers")
    status.add_argument("-w", "--watch", type=cli.positive_float, metavar="SECS",
                        help="redraw every SECS seconds until Ctrl-C")
    action("workers", "connected workers and the functions they serve")
    action("metrics", "every server's state in the Prometheus text format "
           "(a server that does not answer shows as gearman_up 0; "
           "`pygear exporter` serves the same over HTTP)")
    action("version", "the server's version")
    action("getpid", "the server's process id")
    action("jobs", "the jobs the server holds (show jobs)")
    action("unique-jobs", "the unique keys of the jobs the server holds")
    a = action("cancel", "cancel a queued job")
    a.add_argument("handle", metavar="HANDLE")
    a = action("maxqueue", "cap the queue of FUNCTION at N jobs (0: no cap)")
    a.add_argument("function", metavar="FUNCTION")
    a.add_argument("size", type=int, metavar="N")
    a = action("create", "make the server know FUNCTION (e.g. before maxqueue)")
    a.add_argument("function", metavar="FUNCTION")
    a = action("drop", "forget an idle FUNCTION")
    a.add_argument("function", metavar="FUNCTION")
    p.set_defaults(run=run)


def format_table(columns: Sequence[Tuple[str, str, bool]], rows: List[Dict[str, Any]]) -> str:
    """Rows as text under headers, each column as wide as its widest cell."""
    def cell(row, key):
        value = row.get(key, "")
        return " ".join(value) if isinstance(value, list) else str(value)

    cells = [[h for h, _, _ in columns]] + [[cell(r, k) for _, k, _ in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    out = []
    for line in cells:
        parts = []
        for i, (text, (_, _, right)) in enumerate(zip(line, columns)):
            last = i == len(columns) - 1
            if right:
                parts.append(text.rjust(widths[i]))
            else:
                parts.append(text if last else text.ljust(widths[i]))
        out.append("  ".join(parts).rstrip() + "\n")
    return "".join(out)


def _admins(args) -> List[Tuple[str, Admin]]:
    """One Admin per server.  Every server must answer, except with --watch,
    which shows what it could not reach on each round."""
    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT
    servers = cli.servers_of(args)
    if not (args.action == "status" and args.watch):
        failures = cli.probe_all(servers, min(timeout, 3.0))
        if failures:
            raise cli.CliError(cli.cannot_connect(failures, len(servers), args.server_source),
                               cli.EXIT_CONNECT)
    return [(cli.format_server(s), Admin(s[0], s[1], timeout=timeout)) for s in servers]


def _rows(args, admins, name: str, failures: Optional[List[str]] = None
          ) -> List[Dict[str, Any]]:
    """The rows of every server; with ``failures``, a server that fails adds
    its message there instead of raising."""
    columns, method = _TABLES[name]
    rows: List[Dict[str, Any]] = []
    for server, admin in admins:
        try:
            answer = _ask(server, admin, method)
        except GearmanError as exc:
            if failures is None:
                raise
            failures.append(_failure(server, admin, exc))
            continue
        for row in answer:
            if name == "unique-jobs":
                row = {"unique": row}
            if len(admins) > 1:
                row = dict(row, server=server)
            rows.append(row)
    return rows


def _ask(server: str, admin: Admin, method: str, *arguments: Any) -> Any:
    """One Admin call, said with -v."""
    cli.log.info("asking %s: %s", server, " ".join([method.replace("_", " ")]
                                                   + [str(a) for a in arguments]))
    return getattr(admin, method)(*arguments)


def _columns(admins, name: str):
    columns = _TABLES[name][0]
    if len(admins) > 1:
        columns = (("SERVER", "server", False),) + tuple(columns)
    return columns


def _print_rows(args, admins, name: str, rows) -> None:
    if args.json:
        if name == "unique-jobs" and len(admins) == 1:
            rows = [r["unique"] for r in rows]
        text = cli.to_json_text(rows) + "\n"
    else:
        text = format_table(_columns(admins, name), rows)
    sys.stdout.write(text)
    sys.stdout.flush()


def run(args) -> int:
    if args.action == "metrics":
        return _metrics(args)
    admins = _admins(args)
    try:
        if args.action == "status" and args.watch:
            return _watch(args, admins)
        if args.action in _TABLES:
            _print_rows(args, admins, args.action, _rows(args, admins, args.action))
            return cli.EXIT_OK
        if args.action in ("version", "getpid"):
            values = [(server, _ask(server, admin, args.action)) for server, admin in admins]
            if args.json:
                data = {s: v for s, v in values} if len(values) > 1 else values[0][1]
                sys.stdout.write(cli.to_json_text(data) + "\n")
            elif len(values) == 1:
                sys.stdout.write("%s\n" % values[0][1])
            else:
                width = max(len(s) for s, _ in values)
                sys.stdout.write("".join("%s  %s\n" % (s.ljust(width), v) for s, v in values))
            return cli.EXIT_OK
        method, names = _COMMANDS[args.action]
        for server, admin in admins:
            _ask(server, admin, method, *(getattr(args, name) for name in names))
        sys.stdout.write(cli.to_json_text({"ok": True}) + "\n" if args.json else "OK\n")
        return cli.EXIT_OK
    except (TypeError, ValueError) as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE)
    finally:
        for _, admin in admins:
            admin.close()


def _metrics(args) -> int:
    """Exit 0 even when servers are down: the text says so (gearman_up 0),
    and that is what a script collecting it wants to keep."""
    if args.json:
        raise cli.CliError("metrics prints the Prometheus text format; --json does not apply",
                           cli.EXIT_USAGE)
    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT
    sys.stdout.write(ServerMetrics(cli.servers_of(args), timeout=timeout).text())
    sys.stdout.flush()
    return cli.EXIT_OK


def _watch(args, admins) -> int:
    """Redraw the status table every --watch seconds until Ctrl-C.  On a
    terminal the screen is cleared; otherwise (and with --json) each round is
    printed after the last one."""
    tty = sys.stdout.isatty() and not args.json
    servers = ", ".join(server for server, _ in admins)
    try:
        while True:
            failures: List[str] = []
            rows = _rows(args, admins, "status", failures)
            if args.json:
                record = {"time": time.time(), "status": rows}
                if failures:
                    record["error"] = "; ".join(failures)
                sys.stdout.write(cli.to_json_text(record) + "\n")
            else:
                head = "Every %gs: status of %s    %s\n\n" % (
                    args.watch, servers, time.strftime("%Y-%m-%d %H:%M:%S"))
                body = "".join("%s: %s\n" % (cli.PROG, f) for f in failures)
                if rows or not failures:
                    body += format_table(_columns(admins, "status"), rows)
                sys.stdout.write(("\x1b[H\x1b[2J" if tty else "") + head + body
                                 + ("" if tty else "\n"))
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:
        if tty:
            sys.stdout.write("\n")
        return cli.EXIT_INTERRUPTED


def _failure(server: str, admin: Admin, exc: GearmanError) -> str:
    """A server that failed a --watch round, in the words the other commands
    use when the failure was reaching it."""
    cause = exc.__cause__
    if isinstance(exc, (COULD_NOT_CONNECT, GETADDRINFO)) and isinstance(cause, OSError):
        return cli.unreachable((admin.host, admin.port), cause)
    return "%s: %s" % (server, exc)

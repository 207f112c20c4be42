"""What the ``pygear`` subcommands share: exit codes, servers, payload
helpers and the options every subcommand takes."""
from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from typing import Any, List, Optional, Sequence, Tuple

from ..admin import describe_connect_error, parse_address
from .. import _report
from ..serializers import JSON, RAW

# Exit codes (also in ``pygear --help``).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_WORK_FAIL = 3
EXIT_WORK_EXCEPTION = 4
EXIT_TIMEOUT = 5
EXIT_CONNECT = 6
EXIT_INTERRUPTED = 130

ENV_SERVERS = "GEARMAN_SERVERS"
DEFAULT_SERVER = "localhost:4730"
PROG = "pygear"
# The command's own -v messages; the library logs under "pygear" too.
log = logging.getLogger("pygear.cli")

EPILOG = """\
servers:
  --server host:port may be given several times (or as "h1:4730,h2:4730");
  without it, $%(env)s is used, else %(default)s.

payloads:
  Workloads and results are raw bytes by default, so pygear works with any
  other Gearman client or worker (the C `gearman` tool, PHP, ...).  --json
  sends DATA as JSON and prints results as JSON.

exit codes:
  0  success
  1  error (bad input, server refused a command, ...)
  2  usage error
  3  the worker failed the job (WORK_FAIL)
  4  the worker raised an exception (WORK_EXCEPTION)
  5  timeout (--timeout)
  6  could not connect to any job server
  130 interrupted (Ctrl-C)
  With --each, the code of the first job that failed, in input order.

examples:
  pygear work reverse -- rev                 # serve "reverse" with a command
  pygear submit reverse "hello world"        # prints "dlrow olleh"
  pygear submit reverse --each lines.txt --jobs 8
  pygear admin status --watch 2
  pygear admin metrics                       # Prometheus text format
  pygear exporter --listen 127.0.0.1:9418    # /metrics for Prometheus
""" % {"env": ENV_SERVERS, "default": DEFAULT_SERVER}


class CliError(Exception):
    """A message for stderr and the exit code to leave with."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# --- shared helpers -------------------------------------------------------------

def exit_code_for(exc: BaseException) -> int:
    """The exit code that stands for ``exc``."""
    name = getattr(exc, "name", None)
    if name == "WORK_FAIL":
        return EXIT_WORK_FAIL
    if name == "WORK_EXCEPTION":
        return EXIT_WORK_EXCEPTION
    if isinstance(exc, TimeoutError) or name == "TIMEOUT":
        return EXIT_TIMEOUT
    if isinstance(exc, ConnectionError) or name in (
            "COULD_NOT_CONNECT", "LOST_CONNECTION", "NO_SERVERS", "GETADDRINFO",
            "NOT_CONNECTED", "NO_ACTIVE_FDS"):
        return EXIT_CONNECT
    if isinstance(exc, CliError):
        return exc.code
    return EXIT_ERROR


def servers_of(args: argparse.Namespace) -> List[Tuple[str, int]]:
    """--server (repeatable, comma lists allowed), else $GEARMAN_SERVERS,
    else localhost:4730.  A bad address is a usage error, in words."""
    given = getattr(args, "server", None)
    source: Optional[str] = "--server"
    if not given:
        env = os.environ.get(ENV_SERVERS)
        given, source = ([env], "$" + ENV_SERVERS) if env else ([DEFAULT_SERVER], None)
    args.server_source = source
    # libgearman adds $GEARMAN_SERVERS to every client and worker it creates
    # (behind our back): read here, it must not reach libgearman too, or a
    # --server would not replace it.
    os.environ.pop(ENV_SERVERS, None)
    result: List[Tuple[str, int]] = []
    for item in given:
        for piece in item.split(","):
            try:
                server = parse_address(piece)
            except ValueError as exc:
                where = source if piece == item else "%s %r" % (source, item)
                raise CliError("bad %s: %s" % (where, exc), EXIT_USAGE)
            if server not in result:
                result.append(server)
    return result


def format_server(server: Tuple[str, int]) -> str:
    host, port = server
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def probe(server: Tuple[str, int], timeout: float = 3.0) -> Optional[OSError]:
    """None when ``server`` accepts a TCP connection, else why not."""
    try:
        with socket.create_connection(server, timeout=timeout):
            return None
    except OSError as exc:
        return exc


def unreachable(server: Tuple[str, int], exc: BaseException) -> str:
    """``could not connect to HOST:PORT: <why, and what to check>``: the one
    wording submit, admin and work use for a server they cannot reach."""
    return "could not connect to %s: %s" % (format_server(server),
                                            describe_connect_error(exc, server[0]))


def cannot_connect(failures: Sequence[Tuple[Tuple[str, int], BaseException]],
                   total: int, source: Optional[str]) -> str:
    """The message for servers that could not be reached (all ``total`` of
    them when len(failures) == total); ``source`` is where the servers came
    from (servers_of), None for the default."""
    if len(failures) == 1:
        text = unreachable(*failures[0])
    else:
        text = "could not connect to any job server: %s" % "; ".join(
            unreachable(server, exc)[len("could not connect to "):]
            for server, exc in failures)
    if source is None and len(failures) == total:
        text += "; without --server or $%s, %s is tried" % (ENV_SERVERS, DEFAULT_SERVER)
    return text


def probe_all(servers: Sequence[Tuple[str, int]], timeout: float = 3.0
              ) -> List[Tuple[Tuple[str, int], BaseException]]:
    """(server, why) for each server that does not accept a TCP connection."""
    failures: List[Tuple[Tuple[str, int], BaseException]] = []
    for server in servers:
        exc = probe(server, timeout)
        if exc is not None:
            failures.append((server, exc))
    return failures


def reachable_servers(args: argparse.Namespace, timeout: float = 3.0) -> List[Tuple[str, int]]:
    """The servers of ``args`` that accept a TCP connection; CliError(6)
    when none does.

    Checked before a client submits, so that an unreachable server is
    reported at once instead of being retried until the timeout."""
    return split_reachable(args, timeout)[0]


def split_reachable(args: argparse.Namespace, timeout: float = 3.0
                    ) -> Tuple[List[Tuple[str, int]], List[Tuple[Tuple[str, int], BaseException]]]:
    """``reachable_servers``, and (server, why) for each one left out."""
    servers = servers_of(args)
    failures = probe_all(servers, timeout)
    if len(failures) == len(servers):
        raise CliError(cannot_connect(failures, len(servers), args.server_source), EXIT_CONNECT)
    down = {server for server, _ in failures}
    return [server for server in servers if server not in down], failures


def serializer_of(args: argparse.Namespace) -> Any:
    return JSON if getattr(args, "json", False) else RAW


def timeout_ms(args: argparse.Namespace) -> int:
    """--timeout in milliseconds, -1 when not given."""
    seconds = getattr(args, "timeout", None)
    return -1 if seconds is None else max(1, int(seconds * 1000))


def to_json_text(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8", "replace")
    raise TypeError("%s is not JSON serializable" % type(obj).__name__)


def write_out(data: bytes) -> None:
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


def verbosity(args: argparse.Namespace) -> int:
    return getattr(args, "verbose", 0) + getattr(args, "verbose_after", 0)


def setup_logging(level: int, prefix: str = PROG) -> None:
    """-v: the ``pygear`` logger (the library's and the command's messages)
    to stderr as ``prefix: message``, INFO and up; -vv: DEBUG and up."""
    logger = logging.getLogger("pygear")
    for handler in list(logger.handlers):
        if getattr(handler, "pygear_cli", False):
            logger.removeHandler(handler)
    if level < 1:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.pygear_cli = True   # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(prefix + ": %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if level == 1 else logging.DEBUG)


def error(message: str) -> None:
    sys.stderr.write("%s: %s\n" % (PROG, message))
    sys.stderr.flush()


# The exception report is pygear/_report.py's: the CLI only shows it.
exception_report = _report.as_report
describe_exception_report = _report.describe


def wanted_json(args: argparse.Namespace, payload: Any, workload: bytes) -> bool:
    """Did the worker raise because it reads JSON and was sent raw bytes?

    True when the job went out raw (no --json), the report names JSON
    (``JSONDecodeError``, or a message about JSON) and the workload is
    indeed not JSON text."""
    if getattr(args, "json", False) or not workload:
        return False
    report = exception_report(payload)
    if report is None:
        return False
    said = "%s %s" % (report.get("type", ""), report.get("message", ""))
    if "json" not in said.lower():
        return False
    try:
        json.loads(workload.decode("utf-8"))
    except ValueError:   # UnicodeDecodeError is one
        return True
    return False   # the workload was JSON: the worker's complaint is another


# --- arguments -----------------------------------------------------------------

def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number of seconds" % text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0, not %r" % text)
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1, not %r" % text)
    return value


def common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """--server, --timeout, --json, -v: accepted before and after the subcommand."""
    default = argparse.SUPPRESS if suppress else None
    # A subcommand parses into a namespace of its own, so its -v are counted
    # apart and added to the global ones (verbosity()).
    parser.add_argument("-v", "--verbose", action="count",
                        dest="verbose_after" if suppress else "verbose",
                        default=argparse.SUPPRESS if suppress else 0,
                        help="say on standard error what pygear does (what is sent "
                             "where, jobs, servers back); -vv: debug detail too")
    parser.add_argument("-s", "--server", action="append", metavar="HOST:PORT",
                        default=default,
                        help="job server (repeatable; default $%s or %s)"
                        % (ENV_SERVERS, DEFAULT_SERVER))
    parser.add_argument("-t", "--timeout", type=positive_float, metavar="SECS",
                        default=default,
                        help="give up after SECS (submit: per job; work: per "
                             "command run; admin: per request)")
    parser.add_argument("--json", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="JSON payloads and JSON output instead of raw bytes")

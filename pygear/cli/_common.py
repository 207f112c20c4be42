"""What the ``pygear`` subcommands share: exit codes, servers, payload
helpers and the options every subcommand takes."""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any, List, Sequence, Tuple

from .._args import parse_servers
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
    else localhost:4730."""
    given = getattr(args, "server", None) or [os.environ.get(ENV_SERVERS) or DEFAULT_SERVER]
    # libgearman adds $GEARMAN_SERVERS to every client and worker it creates
    # (behind our back): read here, it must not reach libgearman too, or a
    # --server would not replace it.
    os.environ.pop(ENV_SERVERS, None)
    result: List[Tuple[str, int]] = []
    for item in given:
        try:
            for server in parse_servers(item):
                if server not in result:
                    result.append(server)
        except (TypeError, ValueError) as exc:
            raise CliError("bad server %r: %s" % (item, exc), EXIT_USAGE)
    return result


def format_server(server: Tuple[str, int]) -> str:
    host, port = server
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def reachable_servers(servers: Sequence[Tuple[str, int]],
                      timeout: float = 3.0) -> List[Tuple[str, int]]:
    """The servers that accept a TCP connection; CliError(6) when none does.

    Checked before a client submits, so that an unreachable server is
    reported at once instead of being retried until the timeout."""
    alive, failures = [], []
    for host, port in servers:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                alive.append((host, port))
        except OSError as exc:
            failures.append("%s (%s)" % (format_server((host, port)),
                                         exc.strerror or exc))
    if not alive:
        raise CliError("could not connect to any job server: %s" % "; ".join(failures),
                       EXIT_CONNECT)
    return alive


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


def error(message: str) -> None:
    sys.stderr.write("%s: %s\n" % (PROG, message))
    sys.stderr.flush()


def describe_exception_report(payload: Any) -> str:
    """A worker's exception report (pygear's dict, or another worker's
    bytes/str) as text for stderr."""
    if isinstance(payload, (bytes, bytearray)):
        # A RAW client gets pygear's report as the JSON text it was sent as.
        try:
            decoded = json.loads(bytes(payload).decode("utf-8"))
        except ValueError:
            decoded = None
        if isinstance(decoded, dict) and "type" in decoded:
            payload = decoded
    if isinstance(payload, dict) and "type" in payload:
        trace = payload.get("traceback") or []
        if trace:
            return "".join(trace).rstrip("\n")
        return "%s: %s" % (payload.get("type"), payload.get("message", ""))
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload).decode("utf-8", "replace")
    if payload is None:
        return "(no details)"
    return str(payload)


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
    """--server, --timeout, --json: accepted before and after the subcommand."""
    default = argparse.SUPPRESS if suppress else None
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

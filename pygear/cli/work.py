"""``pygear work``: serve functions with a command (as ``gearman -w``) or a
Python callable, in one or several worker processes.

SIGTERM or Ctrl-C lets the jobs in hand finish, then the workers exit 0; a
second signal aborts them.  Commands run in their own session, so the
Ctrl-C meant for pygear does not kill the job they are doing.
"""
from __future__ import annotations

import importlib
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from . import _common as cli

# How often (ms) an idle worker looks at its stop flag.
POLL_MS = 200
# How often (s) a server that could not be reached is tried again, to say
# when it is back (-v).
RECHECK_S = 1.0
# What every line a worker process writes to stderr begins with.
LOG_PREFIX = "%s work[%%(process)d]" % cli.PROG


def add_parser(sub, common: Callable) -> None:
    p = sub.add_parser(
        "work", help="serve a function with a command or a Python callable",
        usage="%(prog)s [options] FUNCTION [FUNCTION ...] (-- COMMAND [ARG ...] "
              "| --call MODULE:CALLABLE)",
        description="Serve FUNCTION.  With -- COMMAND, each job runs COMMAND with "
        "the workload on its standard input and answers with its standard output; "
        "a non-zero exit fails the job (as `gearman -w` does).  With --call, each "
        "job calls CALLABLE(job) (a pygear.Job) and answers with its return value.  "
        "SIGTERM or Ctrl-C finishes the current jobs, then exits.",
        epilog="COMMAND also gets GEARMAN_FUNCTION, GEARMAN_HANDLE and GEARMAN_UNIQUE "
        "in its environment.  --timeout SECS fails a job whose command runs longer.")
    common(p)
    p.add_argument("functions", nargs="+", metavar="FUNCTION")
    p.add_argument("--call", metavar="MODULE:CALLABLE",
                   help="serve with this Python callable (called with the job)")
    p.add_argument("-c", "--concurrency", type=cli.positive_int, default=1, metavar="N",
                   help="run N worker processes (default 1)")
    # -v (a common option) also logs every job to standard error.
    p.set_defaults(run=run, log_prefix=LOG_PREFIX)


def load_callable(spec: str) -> Callable:
    """``package.module:name`` (or ``module:obj.attr``) -> the callable."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise cli.CliError("--call wants MODULE:CALLABLE, not %r" % spec, cli.EXIT_USAGE)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())   # as `python -m` would
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise cli.CliError("--call %s: cannot import %s: %s: %s"
                           % (spec, module_name, type(exc).__name__, exc))
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise cli.CliError("--call %s: %s has no attribute %r" % (spec, module_name, part))
    if not callable(obj):
        raise cli.CliError("--call %s: %r is not callable" % (spec, obj))
    return obj


def run(args) -> int:
    command: Optional[List[str]] = args.exec_command
    if command is not None and not command:
        raise cli.CliError("nothing after '--': give the COMMAND to run", cli.EXIT_USAGE)
    if bool(command) == bool(args.call):
        raise cli.CliError("work needs either -- COMMAND ... or --call MODULE:CALLABLE "
                           "(one of them)", cli.EXIT_USAGE)
    if command and shutil.which(command[0]) is None:
        raise cli.CliError("command not found: %s" % command[0])
    if args.call:
        load_callable(args.call)   # fail now, not in every worker process
    config = {
        "servers": cli.servers_of(args), "functions": list(args.functions),
        "command": command, "call": args.call, "json": bool(args.json),
        "timeout": args.timeout, "verbose": args.verbose,
        "server_source": args.server_source,
        "concurrency": args.concurrency,
    }
    _check_servers(config)
    if args.concurrency == 1:
        return serve(config)
    return _supervise(config)


# --- one worker process -----------------------------------------------------------

class _Stop:
    """The first SIGTERM/SIGINT asks to stop after the current job; the
    second aborts.  After SIGINT (Ctrl-C) the exit code is 130, as the help
    says; after SIGTERM, 0."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.requested = False
        self.say = say
        self.code = cli.EXIT_OK

    def __call__(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if signum == signal.SIGINT:
            self.code = cli.EXIT_INTERRUPTED
        self.say("%s: finishing the current job, then exiting "
                 "(signal again to abort)" % signal.Signals(signum).name)

    def install(self, sigint: bool = True) -> None:
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self if sigint else signal.SIG_IGN)


def _logger(config: Dict[str, Any]) -> Callable[[str], None]:
    """say(message): to stderr, with or without -v, prefixed as the -v
    log lines are."""
    prefix = LOG_PREFIX % {"process": os.getpid()}

    def say(message: str) -> None:
        try:
            sys.stderr.write("%s: %s\n" % (prefix, message))
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    return say


def _command_function(config: Dict[str, Any], say: Callable[[str], None]) -> Callable:
    command, timeout = config["command"], config["timeout"]

    def run_command(job):
        env = dict(os.environ, GEARMAN_FUNCTION=job.function_name(),
                   GEARMAN_HANDLE=job.handle(), GEARMAN_UNIQUE=job.unique() or "")
        try:
            proc = subprocess.run(command, input=job.raw_workload(),
                                  stdout=subprocess.PIPE, env=env, timeout=timeout,
                                  start_new_session=True)
        except subprocess.TimeoutExpired:
            say("job %s: %s ran longer than %gs; failing the job"
                % (job.handle(), command[0], timeout))
            job.send_fail()
            return None
        except OSError as exc:
            say("job %s: cannot run %s: %s; failing the job" % (job.handle(), command[0], exc))
            job.send_fail()
            return None
        if proc.returncode != 0:
            say("job %s: %s exited with status %d; failing the job"
                % (job.handle(), command[0], proc.returncode))
            job.send_fail()
            return None
        return proc.stdout
    return run_command


def _call_function(config: Dict[str, Any], say: Callable[[str], None]) -> Callable:
    fn = load_callable(config["call"])
    raw = not config["json"]

    def call(job):
        try:
            result = fn(job)
        except Exception as exc:
            say("job %s: %s raised %s: %s" % (job.handle(), config["call"],
                                                type(exc).__name__, exc))
            raise   # the worker sends the exception report
        if result is None and raw:
            return b""
        return result
    return call


def _check_servers(config: Dict[str, Any]) -> None:
    """Try each server once before serving.  A host that does not resolve
    ends the command (libgearman refuses to add it); a server that cannot be
    reached is noted in ``config["unreachable"]``, to be said at once
    (libgearman would retry it in silence)."""
    servers = config["servers"]
    failures = cli.probe_all(servers, timeout=3.0)
    source = config["server_source"]
    unknown = [(server, exc) for server, exc in failures if isinstance(exc, socket.gaierror)]
    if unknown:
        raise cli.CliError(cli.cannot_connect(unknown, len(servers), source), cli.EXIT_CONNECT)
    config["unreachable"] = [server for server, _ in failures]
    if failures:
        text = cli.cannot_connect(failures, len(servers), source)
        if len(failures) < len(servers):
            text += "; serving from the others, and will keep trying"
        else:
            text += "; will keep trying (Ctrl-C to stop)"
        config["unreachable_text"] = text


def _say_unreachable(config: Dict[str, Any], say: Callable[[str], None]) -> "_Recheck":
    """Say what _check_servers found, and watch for those servers' return."""
    if config.get("unreachable_text"):
        say(config["unreachable_text"])
    return _Recheck(config.get("unreachable", []))


class _Recheck(threading.Thread):
    """Tries the servers that could not be reached every RECHECK_S, in the
    background, and logs (-v) each one that answers again."""

    def __init__(self, down: List[Any]) -> None:
        super().__init__(name="pygear-work-recheck", daemon=True)
        self.down = list(down)
        if self.down:
            self.start()

    def run(self) -> None:
        while self.down:
            time.sleep(RECHECK_S)
            for server in list(self.down):
                if cli.probe(server, timeout=min(RECHECK_S, 1.0)) is None:
                    self.down.remove(server)
                    cli.log.info("%s is reachable now; the worker connects to it by itself",
                                 cli.format_server(server))


def serve(config: Dict[str, Any], supervised: bool = False) -> int:
    """Run one worker until a signal asks it to stop."""
    from ..serializers import JSON, RAW
    from ..worker import Worker

    say = _logger(config)
    stop = _Stop(say)
    stop.install(sigint=not supervised)   # a supervised worker hears its parent only
    if supervised:   # a fresh (spawned) process: set up -v again
        cli.setup_logging(config["verbose"], LOG_PREFIX)
    serializer: Any
    if config["command"]:
        fn, serializer = _command_function(config, say), RAW
    else:
        fn, serializer = _call_function(config, say), (JSON if config["json"] else RAW)
    if config["verbose"]:
        inner = fn

        def fn(job):   # noqa: F811
            cli.log.info("job %s: %s, %d bytes", job.handle(), job.function_name(),
                         job.workload_size())
            return inner(job)
    worker = Worker()
    try:
        for host, port in config["servers"]:
            worker.add_server(host, port)
        worker.set_serializer(serializer)
        worker.set_identifier("pygear-work-%d" % os.getpid())
        for name in config["functions"]:
            worker.add_function(name, 0, fn)
        worker.set_timeout(POLL_MS)
        if not supervised:
            say("serving %s on %s (Ctrl-C to stop)"
                % (", ".join(config["functions"]),
                   ", ".join(cli.format_server(s) for s in config["servers"])))
            _say_unreachable(config, say)
        worker.serve(until=lambda: stop.requested)
    except KeyboardInterrupt:
        return cli.EXIT_INTERRUPTED
    finally:
        worker.close()
    return stop.code


def _serve_child(config: Dict[str, Any]) -> None:
    sys.exit(serve(config, supervised=True))


def _supervise(config: Dict[str, Any]) -> int:
    """Start ``concurrency`` worker processes; pass SIGTERM/SIGINT on to them."""
    ctx = multiprocessing.get_context("spawn")
    say = _logger(config)
    children: List[Any] = []
    signals = {"count": 0, "code": cli.EXIT_OK}

    def forward(signum, frame) -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            if signum == signal.SIGINT:
                signals["code"] = cli.EXIT_INTERRUPTED
            say("%s: finishing the current jobs, then exiting (signal again to abort)"
                % signal.Signals(signum).name)
        for child in children:
            if child.pid is not None and child.exitcode is None:
                try:
                    os.kill(child.pid, signal.SIGTERM)
                except OSError:
                    pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for _ in range(config["concurrency"]):
        child = ctx.Process(target=_serve_child, args=(config,), daemon=False)
        child.start()
        children.append(child)
    say("serving %s on %s with %d worker processes (Ctrl-C to stop)"
        % (", ".join(config["functions"]),
           ", ".join(cli.format_server(s) for s in config["servers"]), len(children)))
    _say_unreachable(config, say)
    codes = []
    for child in children:
        while child.exitcode is None:
            child.join(0.2)
        codes.append(child.exitcode)
    bad = [c for c in codes if c not in (0, None)]
    if bad:
        say("worker processes exited with %s" % ", ".join(str(c) for c in codes))
        return bad[0] if bad[0] > 0 else cli.EXIT_ERROR
    return signals["code"]
